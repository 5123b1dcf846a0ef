"""What a pod runs (`--endpoints env`) refuses a missing or broken environment with one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.cli import main

POD_VARS = ("REDIS_URL", "REDIS_URL_FILE", "MODEL_REGISTRY", "AWS_ROLE_ARN", "PIPELINE_PARAMETERS", "PIPELINE_TEMPLATE")


@pytest.fixture(autouse=True)
def _no_pod_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in POD_VARS:
        monkeypatch.delenv(key, raising=False)


@pytest.mark.parametrize(
    "argv, env, needle",
    [
        (
            ["serve", "--stack", "dev", "--variant", "primary", "--endpoints", "env"],
            {},
            "--endpoints env needs environment variable(s) REDIS_URL_FILE, MODEL_REGISTRY",
        ),
        (
            ["serve", "--stack", "dev", "--variant", "primary", "--endpoints", "env"],
            {"REDIS_URL_FILE": "/nonexistent/online-store/url", "MODEL_REGISTRY": "/tmp"},
            "REDIS_URL_FILE /nonexistent/online-store/url: No such file or directory",
        ),
        (
            ["drift", "check", "--stack", "dev", "--endpoints", "env"],
            {"PIPELINE_TEMPLATE": "gs://b/p.yaml"},
            "--endpoints env needs environment variable(s) PIPELINE_PARAMETERS",
        ),
        (
            ["drift", "check", "--stack", "dev", "--endpoints", "env"],
            {"PIPELINE_TEMPLATE": "gs://b/p.yaml", "PIPELINE_PARAMETERS": "{not json"},
            "PIPELINE_PARAMETERS: Expecting property name",
        ),
        (
            ["drift", "check", "--stack", "dev", "--endpoints", "env"],
            {"PIPELINE_TEMPLATE": "gs://b/p.yaml", "PIPELINE_PARAMETERS": '{"offline_uri": "bq://p.d"}'},
            "PIPELINE_PARAMETERS lacks impressions_uri",
        ),
        (["drift", "check"], {}, "--market DIR is required"),
    ],
)
def test_a_pod_command_without_its_environment_exits_2(
    argv: list[str],
    env: dict[str, str],
    needle: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1


def test_drift_check_refuses_impressions_that_break_the_contract_with_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"session_id": ["s1"], "viewer_id": ["u1"]}), tmp_path / "day.parquet")
    monkeypatch.setenv("PIPELINE_TEMPLATE", "gs://b/p.yaml")
    monkeypatch.setenv(
        "PIPELINE_PARAMETERS",
        json.dumps({"offline_uri": str(tmp_path), "impressions_uri": str(tmp_path), "registry_uri": str(tmp_path)}),
    )
    assert main(["drift", "check", "--stack", "dev", "--endpoints", "env"]) == 2
    err = capsys.readouterr().err
    assert err == f"rerank drift: {tmp_path / 'day.parquet'}: required column 'candidate_id' is missing\n"
