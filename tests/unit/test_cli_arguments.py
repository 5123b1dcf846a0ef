"""Every subcommand's arguments as a boundary: argv drawn from each subcommand's own argparse
definition (its flags, their types and choices, plus values hostile users tried) ends in exit 0, 1
or 2 with at most one line on stderr, never a traceback and never the last-resort "internal error".

Runs in-process through ``app.cli.main`` with no services: starting one, simulating a market,
compiling or planning is replaced by a step that fails the run (exit 1), so an example costs
milliseconds and what is checked is everything a command does before its work."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.cli import main, parser
from app.commands.base import RunFailed
from app.local.services import LocalServiceError

BOUNDED = settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
SUBCOMMANDS: dict[str, argparse.ArgumentParser] = next(
    a.choices for a in parser()._actions if isinstance(a, argparse._SubParsersAction)
)
# Values from the hostile corpus's classes: far times, unwritable and glob paths, bad JSON, huge text.
HOSTILE = [
    "9999-12-31T23:59:59-01:00",
    "0001-01-01T00:00:00+14:00",
    "2026-03-01",
    "/proc/x.html",
    "bq://x",
    "bq://.",
    "*.jsonl",
    "[a-z]*",
    ".",
    "/",
    "",
    '{"num_leaves": "many"}',
    '{"num_leaves": 1e400}',
    "[]",
    "nope",
    "../../etc/passwd",
    "x" * 5000,
    "\x00",
]
text_values = st.one_of(st.sampled_from(HOSTILE), st.text(max_size=20))
int_values = st.one_of(st.integers(-(2**70), 2**70), st.sampled_from([-1, 0, 1, 65536]))
float_values = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([-1.0, 0.0, 1e308]))


def _value(action: argparse.Action) -> st.SearchStrategy[list[str]]:
    if action.nargs == 0:  # a switch
        return st.just([])
    if action.choices:
        return st.one_of(st.sampled_from([str(c) for c in action.choices]), text_values).map(lambda v: [v])
    if action.type is int:
        return st.one_of(int_values.map(str), text_values).map(lambda v: [v])
    if action.type is float:
        return st.one_of(float_values.map(repr), text_values).map(lambda v: [v])
    if action.nargs == "?":
        return st.one_of(st.just([]), text_values.map(lambda v: [v]))
    return text_values.map(lambda v: [v])


def argv_for(name: str) -> st.SearchStrategy[list[str]]:
    sub = SUBCOMMANDS[name]
    positionals = [a for a in sub._actions if not a.option_strings]
    flags = [a for a in sub._actions if a.option_strings and a.dest not in ("help", "state_dir")]

    @st.composite
    def build(draw: Any) -> list[str]:
        argv = [name]
        for a in positionals:
            argv += draw(_value(a))
        for a in draw(st.lists(st.sampled_from(flags), max_size=4, unique_by=lambda a: a.dest)) if flags else []:
            argv += [a.option_strings[-1], *draw(_value(a))]
        return argv

    return build()


@pytest.fixture()
def no_work(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No service starts and no heavy step runs; a run that gets that far fails with one line."""
    import infra.plan
    import pipelines.training
    from app.commands import market, schema
    from app.local import services

    def refused(*_: Any, **__: Any) -> Any:
        raise RunFailed("(the test stops here: the work itself is not under test)")

    def no_service(*_: Any, **__: Any) -> Any:
        raise LocalServiceError("(no services in this test)")

    monkeypatch.setattr(services, "_start", no_service)
    for module, name in (
        (market, "simulate"),
        (schema, "generate"),
        (schema, "check_against"),
        (pipelines.training, "compile_pipeline"),
        (infra.plan, "plan_stack"),
    ):
        monkeypatch.setattr(module, name, refused)
    for var in ("GOOGLE_APPLICATION_CREDENTIALS", "REDIS_URL", "PIPELINE_PARAMETERS", "MODEL_REGISTRY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)  # relative output paths land here
    return tmp_path


def _contract(code: int, err: str, out: str = "x") -> None:
    """Exit 0, 1 or 2; at most one line on stderr, and a failure says why (there, or as a status report)."""
    assert code in (0, 1, 2), (code, err)
    assert len(err.strip().splitlines()) <= 1 and (code == 0 or err.strip() or out.strip()), err
    assert "Traceback" not in err and "internal error" not in err, err
    assert len(err) <= 2100, len(err)


@pytest.mark.parametrize("name", sorted(SUBCOMMANDS))
def test_every_subcommand_ends_in_a_code_and_one_line(
    name: str, no_work: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    @BOUNDED
    @given(
        argv=argv_for(name),
        stack=st.sampled_from([[], ["--stack", "dev"], ["--stack", "pr-7"], ["--stack", "no/such"]]),
    )
    def run(argv: list[str], stack: list[str]) -> None:
        code = main([*argv, *stack, "--state-dir", str(no_work / "state")])
        printed = capsys.readouterr()
        _contract(code, printed.err, printed.out)

    run()


@pytest.mark.parametrize(
    "argv",
    [
        ["experiment", "report", "--market", "m", "--since", "9999-12-31T23:59:59-01:00"],
        ["train", "--market", "m", "--valid-days", "-1"],
        ["train", "--market", "m", "--window-start", "2026-03-02T00:00:00Z", "--window-end", "2026-03-01T00:00:00Z"],
        ["train", "--market", "m", "--hyperparameters", '{"num_leaves": "many"}'],
        ["train", "--market", "m", "--hyperparameters", '{"learning_rate": 0}'],
        ["ingest", "--input", "m"],
        ["ingest", "--input", "m/impressions/x.parquet.jsonl", "--dead-letter", "m/impressions"],
        ["serve", "--http-port", "70000"],
        ["experiment", "report", "--market", "m", "--html", "/proc/x.html"],
        ["experiment", "report", "--market", "m", "--html", "m"],
        ["models", "show", "nope"],
    ],
)
def test_bad_input_exits_2_before_any_service_is_needed(
    argv: list[str], no_work: Path, capsys: pytest.CaptureFixture[str], market_dir: Path
) -> None:
    code = main([*argv, "--state-dir", str(no_work / "state")])
    err = capsys.readouterr().err
    _contract(code, err)
    assert code == 2, err
    assert "not running" not in err  # refused before the command looks for the local services


@pytest.fixture()
def market_dir(no_work: Path) -> Path:
    """``m/`` holding one valid impressions file with a positive outcome, and a registry folder."""
    from datetime import UTC, datetime

    import pyarrow.parquet as pq

    from app.ranking.impressions import contract_table

    t = datetime(2026, 3, 1, tzinfo=UTC)
    table = contract_table(
        {
            "session_id": ["s1", "s1"],
            "viewer_id": ["u1", "u1"],
            "candidate_id": ["c1", "c2"],
            "position": [0, 1],
            "surface": ["feed", "feed"],
            "impression_time": [t, t],
            "viewer_like": [True, False],
            "match": [True, False],
        }
    )
    (no_work / "m" / "impressions").mkdir(parents=True)
    pq.write_table(table, no_work / "m" / "impressions" / "x.parquet")
    (no_work / "m" / "impressions" / "x.parquet.jsonl").write_text("")
    (no_work / "state" / "local" / "registry").mkdir(parents=True)
    return no_work / "m"


def test_serve_on_a_port_in_use_is_refused_before_the_worker_starts(
    no_work: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        assert main(["serve", "--http-port", port, "--state-dir", str(no_work / "state")]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [
        f"rerank serve: --http-port {port} on --http-host '127.0.0.1': Address already in use"
    ]


def test_train_on_all_negative_impressions_is_refused_before_the_pipeline(
    no_work: Path, capsys: pytest.CaptureFixture[str], market_dir: Path
) -> None:
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    path = market_dir / "impressions" / "x.parquet"
    table = pq.read_table(path)
    pq.write_table(
        table.set_column(table.schema.get_field_index("match"), "match", pc.not_equal(table["match"], table["match"])),
        path,
    )
    code = main(["train", "--market", str(market_dir), "--state-dir", str(no_work / "state")])
    err = capsys.readouterr().err
    assert code == 2 and "none of the 2 impressions" in err and "match=true" in err, err


def test_train_refuses_impressions_off_the_contract_or_too_short_before_the_pipeline(
    no_work: Path, capsys: pytest.CaptureFixture[str], market_dir: Path
) -> None:
    import pyarrow.parquet as pq

    state = ["--state-dir", str(no_work / "state")]
    assert main(["train", "--market", str(market_dir), "--valid-days", "1", "--test-days", "1", *state]) == 2
    assert "1 day(s) of impressions leave no training day after 2 valid and test day(s)" in capsys.readouterr().err
    path = market_dir / "impressions" / "x.parquet"
    pq.write_table(pq.read_table(path).drop_columns(["match"]), path)
    assert main(["train", "--market", str(market_dir), *state]) == 2
    assert "required column 'match' is missing" in capsys.readouterr().err


def test_experiment_report_on_damaged_predictions_or_bigquery_without_credentials(
    no_work: Path, capsys: pytest.CaptureFixture[str], market_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    predictions = no_work / "offline" / "predictions" / "event_date=2026-03-01"
    predictions.mkdir(parents=True)
    (predictions / "part-0.parquet").write_bytes(b"")
    imp = ["--impressions", str(market_dir / "impressions"), "--state-dir", str(no_work / "state")]
    code = main(["experiment", "report", "--offline", str(no_work / "offline"), *imp])
    _contract(code, capsys.readouterr().err)
    assert code in (1, 2)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(no_work / "no-such-key.json"))
    code = main(["experiment", "report", "--offline", "bq://x.y", *imp])
    err = capsys.readouterr().err
    _contract(code, err)
    assert code == 1 and "credentials" in err, err
    assert main(["experiment", "report", "--offline", "bq://x", *imp]) == 2
    assert "bq://PROJECT.DATASET" in capsys.readouterr().err
