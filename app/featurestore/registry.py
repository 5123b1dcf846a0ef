"""The registry of entity specs, built from the generated protobuf modules and their options.

An ``EntitySpec`` is one (entity, version): its message class, key field, flattened columns
(what the offline store keeps), the numeric features served online (in vector order), and the
ingest transforms. Everything is read off the descriptors, so adding a field to a .proto and
regenerating is all it takes to store and serve it.
"""

from __future__ import annotations

import importlib
import math
import pkgutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

import app.schemas as schemas_pkg
from app.featurestore.transforms import TRANSFORMS, EntityTransforms
from app.schemas import options_pb2

FD = FieldDescriptor
_NUMERIC = {
    FD.TYPE_DOUBLE,
    FD.TYPE_FLOAT,
    FD.TYPE_INT32,
    FD.TYPE_INT64,
    FD.TYPE_UINT32,
    FD.TYPE_UINT64,
    FD.TYPE_SINT32,
    FD.TYPE_SINT64,
    FD.TYPE_FIXED32,
    FD.TYPE_FIXED64,
    FD.TYPE_SFIXED32,
    FD.TYPE_SFIXED64,
    FD.TYPE_BOOL,
    FD.TYPE_ENUM,
}
_TIMESTAMP = "google.protobuf.Timestamp"


class UnknownEntityError(KeyError):
    pass


class UnknownVersionError(KeyError):
    pass


@dataclass(frozen=True)
class ColumnSpec:
    """One flattened field: ``preferences.age_min`` becomes column ``preferences_age_min``."""

    name: str
    path: tuple[str, ...]
    kind: str  # "number" | "string" | "timestamp"
    proto_type: str
    unit: str
    min: float | None
    max: float | None
    required: bool
    online: bool

    def read(self, msg: Message) -> Any:
        value: Any = msg
        for part in self.path:
            value = getattr(value, part)
        if self.kind == "timestamp":
            return value.ToDatetime(tzinfo=UTC) if (value.seconds or value.nanos) else None
        if self.kind == "number":
            return float(value) if isinstance(value, float) else int(value)
        return value


@dataclass(frozen=True)
class EntitySpec:
    entity: str
    version: str
    message_cls: type[Message]
    key_field: str
    columns: tuple[ColumnSpec, ...]
    transforms: EntityTransforms

    @property
    def full_name(self) -> str:
        return self.message_cls.DESCRIPTOR.full_name

    @property
    def online_features(self) -> tuple[str, ...]:
        """Names of the numeric vector kept online, in storage order."""
        return tuple(c.name for c in self.columns if c.online) + tuple(d.name for d in self.transforms.derived)

    @property
    def offline_columns(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns) + tuple(d.name for d in self.transforms.derived)

    def problems(self, msg: Message, event_time: datetime) -> list[str]:
        """Every way ``msg`` breaks the schema's rules; empty when it is valid."""
        found: list[str] = []
        if not getattr(msg, self.key_field):
            found.append(f"{self.key_field} is missing")
        for col in self.columns:
            value = col.read(msg)
            if col.required and not value:
                found.append(f"{col.name} is required")
                continue
            if col.kind != "number" or (not value and not col.required):
                continue  # proto3 cannot tell an unset optional field from zero: only set values are checked
            if isinstance(value, float) and not math.isfinite(value):
                found.append(f"{col.name}={value} is not finite")
            elif col.min is not None and value < col.min:
                found.append(f"{col.name}={value:g} is below the minimum {col.min:g} {col.unit}".rstrip())
            elif col.max is not None and value > col.max:
                found.append(f"{col.name}={value:g} is above the maximum {col.max:g} {col.unit}".rstrip())
        if not found:
            found += [p for c in self.transforms.checks if (p := c.problem(msg, event_time))]
        return found

    def values(self, msg: Message, event_time: datetime) -> dict[str, Any]:
        """Offline columns: flattened fields then derived features (valid messages only)."""
        row = {c.name: c.read(msg) for c in self.columns}
        for d in self.transforms.derived:
            row[d.name] = float(d.fn(msg, event_time))
        return row


def _columns(desc: Descriptor, key_field: str, prefix: tuple[str, ...] = ()) -> Iterator[ColumnSpec]:
    for f in desc.fields:
        if f.name == key_field and not prefix:
            continue
        opts = f.GetOptions()
        path = (*prefix, f.name)
        common = {
            "name": "_".join(path),
            "path": path,
            "unit": opts.Extensions[options_pb2.unit],
            "min": opts.Extensions[options_pb2.min] if opts.HasExtension(options_pb2.min) else None,
            "max": opts.Extensions[options_pb2.max] if opts.HasExtension(options_pb2.max) else None,
            "required": opts.Extensions[options_pb2.required],
        }
        offline_only = opts.Extensions[options_pb2.offline_only]
        if f.is_repeated:
            continue  # lists are reduced by derived features; the raw payload keeps them
        if f.type == FD.TYPE_MESSAGE and f.message_type.full_name == _TIMESTAMP:
            yield ColumnSpec(kind="timestamp", proto_type="timestamp", online=False, **common)
        elif f.type == FD.TYPE_MESSAGE:
            yield from _columns(f.message_type, key_field, path)
        elif f.type in _NUMERIC:
            yield ColumnSpec(kind="number", proto_type=_type_name(f), online=not offline_only, **common)
        else:
            yield ColumnSpec(kind="string", proto_type=_type_name(f), online=False, **common)


def _type_name(f: FieldDescriptor) -> str:
    if f.type == FD.TYPE_ENUM:
        return f.enum_type.name
    names = {v: k for k, v in vars(FD).items() if k.startswith("TYPE_")}
    return names[f.type].removeprefix("TYPE_").lower()


def spec_for(message_cls: type[Message]) -> EntitySpec | None:
    desc = message_cls.DESCRIPTOR
    entity = desc.GetOptions().Extensions[options_pb2.entity]
    if not entity:
        return None
    key_field = desc.GetOptions().Extensions[options_pb2.key_field]
    version = desc.full_name.split(".")[-2]
    return EntitySpec(
        entity=entity,
        version=version,
        message_cls=message_cls,
        key_field=key_field,
        columns=tuple(_columns(desc, key_field)),
        transforms=TRANSFORMS.get((entity, version), EntityTransforms()),
    )


class Registry:
    def __init__(self, specs: list[EntitySpec]) -> None:
        self._specs = {(s.entity, s.version): s for s in specs}

    def get(self, entity: str, version: str) -> EntitySpec:
        if (entity, version) in self._specs:
            return self._specs[(entity, version)]
        versions = sorted(v for e, v in self._specs if e == entity)
        if not versions:
            raise UnknownEntityError(f"unknown entity {entity!r} (known: {', '.join(self.entities())})")
        raise UnknownVersionError(f"unknown version {version!r} of {entity} (known: {', '.join(versions)})")

    def entities(self) -> list[str]:
        return sorted({e for e, _ in self._specs})

    def specs(self) -> list[EntitySpec]:
        return [self._specs[k] for k in sorted(self._specs)]


@cache
def default_registry() -> Registry:
    """Every message with an ``entity`` option in the generated modules under ``app/schemas``."""
    specs: list[EntitySpec] = []
    for mod in pkgutil.walk_packages(schemas_pkg.__path__, prefix="app.schemas."):
        if not mod.name.endswith("_pb2"):
            continue
        module = importlib.import_module(mod.name)
        for desc in module.DESCRIPTOR.message_types_by_name.values():
            spec = spec_for(getattr(module, desc.name))
            if spec:
                specs.append(spec)
    return Registry(specs)
