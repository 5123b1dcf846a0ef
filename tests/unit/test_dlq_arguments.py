"""`rerank dlq` arguments and dead-letter files as a boundary: arbitrary input ends in an exit code
with a one-line reason (or a report), never a traceback. No services run here: a stack command
without them exits 1 with the reason."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.cli import main

BOUNDED = settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
words = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=30).filter(
    lambda t: not t.startswith("-")
)


@BOUNDED
@given(st.sampled_from(["list", "show", "replay"]), st.sampled_from(["--since", "--reason", "--subscription"]), words)
def test_arbitrary_arguments_exit_with_a_code(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], action: str, flag: str, value: str
) -> None:
    code = main(["dlq", action, flag, value, "--state-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code in (1, 2) and len(err.strip().splitlines()) == 1, err


@BOUNDED
@given(st.binary(max_size=400))
def test_an_arbitrary_dead_letter_file_is_read_whole(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], data: bytes
) -> None:
    path = tmp_path / "x.dead-letter.jsonl"
    path.write_bytes(data)
    assert main(["dlq", "list", "--file", str(path), "--json", "--state-dir", str(tmp_path)]) == 0
    report = json.loads(capsys.readouterr().out)["files"][str(path)]
    assert report["total"] == sum(1 for line in data.split(b"\n") if line.strip())


def test_a_dead_letter_file_with_odd_lines_counts_them_as_unreadable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "x.dead-letter.jsonl"
    path.write_text('[1]\n{"raw_base64": 5}\n{"reason": "bad_id", "raw_base64": "eA=="}\n')
    assert main(["dlq", "list", "--file", str(path), "--json", "--state-dir", str(tmp_path)]) == 0
    assert json.loads(capsys.readouterr().out)["files"][str(path)]["by_reason"] == {"(unreadable)": 2, "bad_id": 1}
