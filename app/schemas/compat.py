"""Breaking-change detection between two versions of the schema tree.

Inside one package (one entity version) a change must keep every old event decodable and
meaning the same: a field number may not disappear unless it is ``reserved``, change its type,
change its name (JSON events name fields), or be handed to another field. Adding fields and
adding whole new packages (``v3``) is fine; that is how breaking changes are shipped.
"""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from google.protobuf import descriptor_pb2

from app.schemas import options_pb2
from app.schemas.protoc import SCHEMA_SUBDIR, descriptor_set

FDP = descriptor_pb2.FieldDescriptorProto
_TYPE_NAMES = {v: k.removeprefix("TYPE_").lower() for k, v in FDP.Type.items()}


@dataclass(frozen=True)
class Violation:
    kind: str
    where: str
    detail: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.where}: {self.detail}"


def type_of(f: FDP) -> str:
    base = f.type_name.lstrip(".") if f.type_name else _TYPE_NAMES[f.type]
    return f"repeated {base}" if f.label == FDP.LABEL_REPEATED else base


def _reserved(msg: descriptor_pb2.DescriptorProto) -> tuple[set[int], set[str]]:
    numbers = {n for r in msg.reserved_range for n in range(r.start, r.end)}
    return numbers, set(msg.reserved_name)


def _messages(fds: descriptor_pb2.FileDescriptorSet) -> dict[str, descriptor_pb2.DescriptorProto]:
    out: dict[str, descriptor_pb2.DescriptorProto] = {}

    def walk(prefix: str, msgs: Iterable[descriptor_pb2.DescriptorProto]) -> None:
        for m in msgs:
            name = f"{prefix}.{m.name}"
            out[name] = m
            walk(name, m.nested_type)

    for f in fds.file:
        walk(f.package, f.message_type)
    return out


def _enums(fds: descriptor_pb2.FileDescriptorSet) -> dict[str, descriptor_pb2.EnumDescriptorProto]:
    return {f"{f.package}.{e.name}": e for f in fds.file for e in f.enum_type}


def _required(f: FDP) -> bool:
    return f.options.Extensions[options_pb2.required]


def _compare_message(
    where: str, old: descriptor_pb2.DescriptorProto, new: descriptor_pb2.DescriptorProto
) -> list[Violation]:
    found: list[Violation] = []
    old_by_num = {f.number: f for f in old.field}
    new_by_num = {f.number: f for f in new.field}
    new_reserved_nums, new_reserved_names = _reserved(new)
    old_reserved_nums, old_reserved_names = _reserved(old)
    for num, of in sorted(old_by_num.items()):
        nf = new_by_num.get(num)
        if nf is None:
            if num not in new_reserved_nums:
                found.append(
                    Violation(
                        "field removed without reserved",
                        where,
                        f"field {num} '{of.name}' is gone; add `reserved {num};`",
                    )
                )
            elif of.name not in new_reserved_names:
                found.append(
                    Violation(
                        "field removed without reserved",
                        where,
                        f"field {num} '{of.name}': its number is reserved but its name is not; "
                        f'add `reserved "{of.name}";`',
                    )
                )
            continue
        if type_of(of) != type_of(nf) and of.name != nf.name:
            found.append(
                Violation(
                    "field number reused",
                    where,
                    f"field {num} was '{of.name}' ({type_of(of)}), now '{nf.name}' ({type_of(nf)})",
                )
            )
            continue
        if type_of(of) != type_of(nf):
            found.append(Violation("field retyped", where, f"field {num} '{of.name}': {type_of(of)} -> {type_of(nf)}"))
        if of.name != nf.name:
            found.append(
                Violation("field renamed", where, f"field {num} '{of.name}' -> '{nf.name}' (JSON events name fields)")
            )
        if _required(nf) and not _required(of):
            found.append(
                Violation(
                    "field became required",
                    where,
                    f"field {num} '{nf.name}': events valid before would now be rejected",
                )
            )
    for num, nf in sorted(new_by_num.items()):
        if num in old_by_num:
            continue
        if num in old_reserved_nums:
            found.append(Violation("reserved number reused", where, f"field {num} '{nf.name}' takes a reserved number"))
        if nf.name in old_reserved_names:
            found.append(Violation("reserved name reused", where, f"field {num} '{nf.name}' takes a reserved name"))
        if _required(nf):
            found.append(
                Violation(
                    "field became required", where, f"new field {num} '{nf.name}' is required: old events lack it"
                )
            )
    return found


def _compare_enum(
    where: str, old: descriptor_pb2.EnumDescriptorProto, new: descriptor_pb2.EnumDescriptorProto
) -> list[Violation]:
    found: list[Violation] = []
    new_by_num = {v.number: v.name for v in new.value}
    reserved = {n for r in new.reserved_range for n in range(r.start, r.end + 1)}
    for v in old.value:
        if v.number not in new_by_num and v.number not in reserved:
            found.append(
                Violation("enum value removed without reserved", where, f"value {v.number} '{v.name}' is gone")
            )
        elif v.number in new_by_num and new_by_num[v.number] != v.name:
            found.append(
                Violation("enum value renamed", where, f"value {v.number} '{v.name}' -> '{new_by_num[v.number]}'")
            )
    return found


def compare(
    old: descriptor_pb2.FileDescriptorSet, new: descriptor_pb2.FileDescriptorSet
) -> tuple[list[Violation], list[str]]:
    """Breaking changes from ``old`` to ``new``, and notes on changes that are allowed but worth saying."""
    violations: list[Violation] = []
    notes: list[str] = []
    new_packages = {f.package for f in new.file}
    old_msgs, new_msgs = _messages(old), _messages(new)
    for name, om in sorted(old_msgs.items()):
        if name not in new_msgs:
            if any(name.startswith(p + ".") for p in new_packages):
                violations.append(Violation("message removed", name, "a version's message may not disappear"))
            else:
                notes.append(f"{name}: its version was retired")
            continue
        violations += _compare_message(name, om, new_msgs[name])
    old_enums, new_enums = _enums(old), _enums(new)
    for name, oe in sorted(old_enums.items()):
        if name in new_enums:
            violations += _compare_enum(name, oe, new_enums[name])
    notes += [f"{p}: new version" for p in sorted(new_packages - {f.package for f in old.file})]
    return violations, notes


def descriptor_set_at_ref(repo: Path, ref: str) -> descriptor_pb2.FileDescriptorSet:
    """Compile the schema tree as it was at git ``ref`` (files read with ``git show``)."""
    listing = subprocess.run(
        ["git", "-C", str(repo), "ls-tree", "-r", "--name-only", ref, "--", str(SCHEMA_SUBDIR)],
        capture_output=True,
        text=True,
    )
    if listing.returncode != 0:
        raise ValueError(f"cannot read git ref {ref!r}: {listing.stderr.strip() or 'unknown ref'}")
    with tempfile.TemporaryDirectory() as tmp:
        for path in (p for p in listing.stdout.splitlines() if p.endswith(".proto")):
            blob = subprocess.run(["git", "-C", str(repo), "show", f"{ref}:{path}"], capture_output=True, check=True)
            dest = Path(tmp) / path
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(blob.stdout)
        return descriptor_set(Path(tmp))


def check_against(repo: Path, ref: str) -> tuple[list[Violation], list[str]]:
    return compare(descriptor_set_at_ref(repo, ref), descriptor_set(repo))
