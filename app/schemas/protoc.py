"""Running protoc (from grpcio-tools) over the schema tree.

Protos are compiled from the repository root so that ``import "app/schemas/options.proto"`` and
the generated ``from app.schemas import options_pb2`` line up with the Python package.
"""

from __future__ import annotations

import tempfile
from importlib import resources
from pathlib import Path

from google.protobuf import descriptor_pb2

SCHEMA_SUBDIR = Path("app/schemas")


class ProtocError(RuntimeError):
    pass


def proto_files(root: Path) -> list[Path]:
    """The .proto files under ``<root>/app/schemas``, relative to ``root``, in a stable order."""
    return sorted(p.relative_to(root) for p in (root / SCHEMA_SUBDIR).rglob("*.proto"))


def _run(args: list[str]) -> None:
    from grpc_tools import protoc

    include = str(resources.files("grpc_tools") / "_proto")
    # protoc prints its own diagnostics to stderr; the exit code says whether they were fatal.
    code = protoc.main(["protoc", f"-I{include}", *args])
    if code != 0:
        raise ProtocError(f"protoc failed (exit {code}) on: {' '.join(a for a in args if a.endswith('.proto'))}")


def compile_python(root: Path, out_dir: Path) -> None:
    files = [str(f) for f in proto_files(root)]
    _run([f"-I{root}", f"--python_out={out_dir}", f"--pyi_out={out_dir}", *files])


def descriptor_set(root: Path) -> descriptor_pb2.FileDescriptorSet:
    """Descriptors of every schema file under ``root``, with comments (source info) kept."""
    files = [str(f) for f in proto_files(root)]
    if not files:
        return descriptor_pb2.FileDescriptorSet()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "set.pb"
        _run([f"-I{root}", f"--descriptor_set_out={out}", "--include_source_info", *files])
        fds = descriptor_pb2.FileDescriptorSet()
        fds.ParseFromString(out.read_bytes())
    return fds
