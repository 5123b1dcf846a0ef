"""Where a command writes: one check for every output path, made before any work starts.

A path is literal (never a glob: nothing here matches patterns). An output never replaces a file or
folder the command did not create unless the caller says ``force`` (the commands' ``--force``), never
is a folder when a file is asked for (or a file when a folder is), and never is one of the command's
own inputs, not even with ``force``. What is written goes to a private staging place beside the target
first and is moved into place whole at the end, so a failed run leaves the target as it was and a
reader never sees half a file.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from app.echo import shown

# Characters glob-matching file systems (Beam's among them) read as patterns.
GLOB_CHARACTERS = frozenset("*?[]{}")


class OutputPathError(ValueError):
    """An output path the command refuses; one line naming the flag."""


def has_glob_characters(path: str | Path) -> bool:
    return any(c in GLOB_CHARACTERS for c in str(path))


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def _first_existing(path: Path) -> Path:
    for parent in path.parents:
        if parent.exists():
            return parent
    return Path(".")


@dataclass(frozen=True)
class Output:
    """A checked output path: ``kind`` is ``file`` or ``folder``."""

    flag: str
    path: Path
    kind: str
    force: bool

    def _fail(self, why: str) -> OutputPathError:
        return OutputPathError(f"{self.flag} {shown(str(self.path))}: {why}")

    @contextmanager
    def staged(self) -> Iterator[Path]:
        """A path to write the output at (a file, or a folder to fill); moved onto the target when
        the block ends without an error, removed otherwise."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=f".{self.path.name[:80]}.", suffix=".partial", dir=self.path.parent))
        except OSError as exc:
            raise self._fail(f"cannot write there: {exc.strerror or exc}") from None
        try:
            yield staging / self.path.name
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        try:
            self._place(staging / self.path.name)
        except (OutputPathError, OSError) as exc:  # nothing written is thrown away: say where it is
            why = str(exc) if isinstance(exc, OutputPathError) else self._fail(exc.strerror or str(exc))
            raise OutputPathError(f"{why}; what was written is kept in {staging}") from None
        shutil.rmtree(staging, ignore_errors=True)

    def _place(self, written: Path) -> None:
        if self.kind == "folder":
            written.mkdir(exist_ok=True)
            self._place_folder(written)
            return
        if not written.exists():
            raise self._fail("nothing was written")
        if self.force:
            if self.path.is_dir():
                raise self._fail("is a folder")
            os.replace(written, self.path)
            return
        try:
            os.link(written, self.path)  # refuses a target that appeared meanwhile, unlike a rename
        except FileExistsError:
            raise self._fail("appeared while the command ran; nothing was replaced (pass --force)") from None
        except OSError:  # a file system without hard links
            if self.path.exists():
                raise self._fail("appeared while the command ran; nothing was replaced (pass --force)") from None
            os.rename(written, self.path)

    def _place_folder(self, written: Path) -> None:
        if self.path.is_dir() and not any(self.path.iterdir()):
            self.path.rmdir()
        if not self.path.exists():
            os.rename(written, self.path)
            return
        if not self.force:
            raise self._fail("appeared while the command ran; nothing was replaced (pass --force)")
        for entry in written.iterdir():  # --force: what the command writes replaces the same names only
            target = self.path / entry.name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            elif target.exists() or target.is_symlink():
                target.unlink()
            os.rename(entry, target)


def output_file(flag: str, text: str | Path, *, force: bool = False, inputs: Iterable[str | Path] = ()) -> Output:
    """Check an output file path before any work: refuse a folder, one of ``inputs``, an existing file
    (unless ``force``) and a place no file can be created."""
    out = Output(flag, Path(text), "file", force)
    if not str(text).strip():
        raise out._fail("is empty")
    if str(text).endswith(os.sep) or out.path.is_dir():
        raise out._fail("is a folder; give a file path")
    for given in inputs:
        if _same_file(out.path, Path(given)) or Path(os.path.abspath(out.path)) == Path(os.path.abspath(given)):
            raise out._fail("is an input of this command; give another path")
    if (out.path.exists() or out.path.is_symlink()) and not force:
        raise out._fail("exists; pass --force to replace it")
    _check_parent(out)
    return out


def output_folder(flag: str, text: str | Path, *, force: bool = False) -> Output:
    """Check an output folder before any work: refuse a file, a folder that holds anything (unless
    ``force``: then the command's files replace those of the same names) and a place no folder can
    be created."""
    out = Output(flag, Path(text), "folder", force)
    if not str(text).strip():
        raise out._fail("is empty")
    if out.path.exists() and not out.path.is_dir():
        raise out._fail("exists and is not a folder")
    if out.path.is_dir() and any(out.path.iterdir()) and not force:
        raise out._fail("is a folder that is not empty; pass --force to write into it")
    _check_parent(out)
    return out


def _check_parent(out: Output) -> None:
    base = _first_existing(out.path)
    if not base.is_dir():
        raise out._fail(f"{base} is not a folder")
    try:  # proven by doing it: permissions alone do not tell (root, read-only mounts, /proc)
        os.rmdir(tempfile.mkdtemp(prefix=".rerank-probe.", dir=base))
    except OSError as exc:
        raise out._fail(f"cannot write in {base}: {exc.strerror or exc}") from None
