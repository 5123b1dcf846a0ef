"""Output paths as a boundary (app/output_paths.py, used by every command that writes): whatever the
name, a path is literal, an existing file or folder is never replaced unasked, an input never, and a
failed write leaves the target as it was."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.cli import main
from app.echo import shown
from app.output_paths import OutputPathError, output_file, output_folder

BOUNDED = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
# File names with the characters globbing file systems read as patterns, and others.
names = st.text(st.sampled_from("ab.*?[]{}-_ x!~"), min_size=1, max_size=12).filter(
    lambda n: n not in (".", "..") and not n.startswith("-")
)


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@BOUNDED
@given(target=names, others=st.lists(names, max_size=4), force=st.booleans())
def test_a_write_touches_only_its_literal_path(target: str, others: list[str], force: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for name in others:
            (root / name).write_bytes(b"user data " + name.encode())
        before = _tree(root)
        existed = (root / target).exists()
        try:
            out = output_file("--out", root / target, force=force)
        except OutputPathError as exc:
            assert existed and not force and "exists; pass --force" in str(exc)
            assert _tree(root) == before
            return
        with out.staged() as staged:
            staged.write_bytes(b"ours")
        after = _tree(root)
        assert after.pop(target) == b"ours"
        assert after == {k: v for k, v in before.items() if k != target}  # nothing else changed or left over


@BOUNDED
@given(name=names, force=st.booleans())
def test_an_input_or_a_folder_is_never_an_output(name: str, force: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        given_input = root / name
        given_input.write_bytes(b"input")
        with pytest.raises(OutputPathError, match="is an input"):
            output_file("--out", given_input, force=True, inputs=[given_input])
        with pytest.raises(OutputPathError, match="is an input"):  # the same file under another spelling
            output_file("--out", root / "." / name, force=True, inputs=[str(given_input)])
        folder = root / f"{name}.d"
        folder.mkdir()
        (folder / "keep").write_bytes(b"x")
        with pytest.raises(OutputPathError, match="is a folder"):
            output_file("--dead-letter", folder, force=force)
        assert _tree(root) == {name: b"input", f"{name}.d/keep": b"x"}


def test_a_failed_write_leaves_the_target_and_no_staging(tmp_path: Path) -> None:
    target = tmp_path / "report.html"
    target.write_text("old")
    out = output_file("--html", target, force=True)
    with pytest.raises(RuntimeError), out.staged() as staged:
        staged.write_text("half")
        raise RuntimeError("the render failed")
    assert _tree(tmp_path) == {"report.html": b"old"}


def test_a_target_appearing_during_the_run_is_kept_and_the_output_too(tmp_path: Path) -> None:
    target = tmp_path / "out.jsonl"
    out = output_file("--out", target)
    with pytest.raises(OutputPathError, match=r"appeared while the command ran.*kept in") as caught:
        with out.staged() as staged:
            staged.write_text("ours")
            target.write_text("someone else's")
    assert target.read_text() == "someone else's"
    kept = Path(str(caught.value).rsplit("kept in ", 1)[1]) / "out.jsonl"
    assert kept.read_text() == "ours"


def test_a_place_no_file_can_be_made_is_refused_before_any_work(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutputPathError, match="is not a folder"):
        output_file("--html", blocker / "sub" / "x.html")
    if Path("/proc/self").exists():
        with pytest.raises(OutputPathError, match="cannot write in /proc"):
            output_file("--html", "/proc/x.html")


def test_an_output_folder_is_new_or_empty_unless_forced(tmp_path: Path) -> None:
    out_dir = tmp_path / "market"
    out_dir.mkdir()
    (out_dir / "notes.txt").write_text("mine")
    (out_dir / "summary.json").write_text("old")
    with pytest.raises(OutputPathError, match="not empty; pass --force"):
        output_folder("--out", out_dir)
    with output_folder("--out", out_dir, force=True).staged() as folder:
        folder.mkdir()
        (folder / "summary.json").write_text("new")
    assert _tree(out_dir) == {"notes.txt": b"mine", "summary.json": b"new"}  # --force replaces its names only
    with pytest.raises(OutputPathError, match="not a folder"):
        output_folder("--out", out_dir / "notes.txt")
    fresh = tmp_path / "new" / "market"
    with output_folder("--out", fresh).staged() as folder:
        folder.mkdir()
        (folder / "a").write_text("1")
    assert _tree(tmp_path / "new") == {"market/a": b"1"}


@BOUNDED
@given(st.text(min_size=0, max_size=5000))
def test_an_error_echoes_a_bounded_value(text: str) -> None:
    assert len(shown(text)) <= 200


def test_dlq_replay_never_overwrites_unasked_nor_its_own_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    letters = tmp_path / "e.jsonl.dead-letter.jsonl"
    letters.write_text(json.dumps({"reason": "bad_id", "raw_base64": "eA=="}) + "\n")
    existing = tmp_path / "keep.jsonl"
    existing.write_text("precious\n")
    state = ["--state-dir", str(tmp_path / "state")]
    assert main(["dlq", "replay", "--file", str(letters), "--out", str(existing), *state]) == 2
    assert "exists; pass --force" in capsys.readouterr().err
    assert main(["dlq", "replay", "--file", str(letters), "--out", str(letters), "--force", *state]) == 2
    assert "is an input" in capsys.readouterr().err
    assert existing.read_text() == "precious\n" and letters.read_text().startswith('{"reason"')
    assert main(["dlq", "replay", "--file", str(letters), "--out", str(existing), "--force", *state]) == 0
    assert existing.read_bytes() == b"x\n"


def test_experiment_report_refuses_its_html_path_before_reading(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    page = tmp_path / "readout.html"
    page.write_text("mine")
    # No impressions exist: the output path is refused first, before anything is read.
    code = main(["experiment", "report", "--market", str(tmp_path / "none"), "--html", str(page)])
    assert code == 2 and "--html" in capsys.readouterr().err and page.read_text() == "mine"


def test_market_refuses_a_folder_with_files_before_simulating(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "feature-events.pb").write_bytes(b"user's")
    assert main(["market", "--users", "100", "--days", "3", "--out", str(tmp_path)]) == 2
    assert "not empty" in capsys.readouterr().err
    assert _tree(tmp_path) == {"feature-events.pb": b"user's"}
    assert os.listdir(tmp_path) == ["feature-events.pb"]
