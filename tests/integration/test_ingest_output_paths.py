"""`rerank ingest`'s output and source checks against the real local services: the dead-letter file
is written at its literal path only (Beam's file sink, which globs and clears, only sees a folder of
the run's own), nothing else in the folder changes, an existing file is refused before the run, and
a subscription that is not there is one line, exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.cli import main
from app.featurestore.events import json_line
from app.local.services import LocalState
from tests.integration.ingest_inputs import bad_json_lines, good_events


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_dead_letters_land_at_their_literal_path_and_nothing_else_changes(
    tmp_path: Path, local_stack: LocalState, state_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = bad_json_lines("glob-")
    events = tmp_path / "*.jsonl"  # a name Beam would read as a pattern matching every input here
    events.write_text("\n".join([json_line(*good_events(1, "glob-")[0]), *bad.values()]) + "\n")
    neighbours = {
        "other.jsonl": b'{"x": 1}\n',
        "other.jsonl.dead-letter.jsonl": b"an earlier run's letters\n",
        "[*].jsonl.dead-letter.jsonl": b"kept\n",
    }
    for name, data in neighbours.items():
        (tmp_path / name).write_bytes(data)
    before = _tree(tmp_path)
    state = ["--state-dir", str(state_dir), "--json"]

    # An existing file, the input itself and a folder are refused before anything runs.
    for target in ("other.jsonl.dead-letter.jsonl", "*.jsonl", "."):
        assert main(["ingest", "--input", str(events), "--dead-letter", str(tmp_path / target), *state]) == 2
        assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert _tree(tmp_path) == before

    assert main(["ingest", "--input", str(events), *state]) == 1  # rejects exit 1, with the summary
    summary = json.loads(capsys.readouterr().out)
    assert summary["rejected"] == len(bad) and summary["dead_letter_path"] == f"{events}.dead-letter.jsonl"
    after = _tree(tmp_path)
    letters = [json.loads(line) for line in after.pop("*.jsonl.dead-letter.jsonl").splitlines()]
    assert sorted(x["reason"] for x in letters) == sorted(bad)
    assert after == before, "only the run's own file was added"

    # A second run refuses to replace it unless told.
    assert main(["ingest", "--input", str(events), *state]) == 2
    assert "exists; pass --force" in capsys.readouterr().err
    assert main(["ingest", "--input", str(events), "--force", *state]) == 1
    capsys.readouterr()


def test_a_subscription_that_is_not_there_is_one_line(
    local_stack: LocalState, state_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["ingest", "--subscription", "nope", "--idle-exit", "1", "--state-dir", str(state_dir)]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines() == ["rerank ingest: --subscription 'nope': no such subscription in stack local"]
