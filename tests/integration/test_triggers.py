"""Retraining triggers: drift checks on a market with and without drift, the trigger function's
payload checks and its once-per-trigger-id guarantee."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from app.featurestore.pipeline import run_bounded, stack_args
from app.local.apply import apply_topology
from app.local.services import LocalState, start_services, stop_services
from app.market.simulate import MarketConfig, simulate
from app.market.writer import write_market
from app.naming import Names
from app.ranking.registry import ModelRegistry
from app.serving.runtime import registry_dir
from app.settings import StackSettings
from app.trigger.ledger import FileLedger
from app.trigger.local import local_parameters, local_submitter, template_uri
from app.trigger.main import trigger_pipeline
from app.trigger.payload import TriggerPayload
from app.trigger.submit import LocalSubmitter
from pipelines.local_run import TrainingRequest, run_training
from tests.integration.conftest import pull_all, rerank


def _stack_with_market(tmp: Path, settings: StackSettings, drift_day: int | None) -> tuple[LocalState, Path]:
    """A stack of its own, a 12-day market ingested, a model trained on its first 8 days and deployed."""
    state, _ = start_services(settings.stack, settings.gcp.project, tmp / "state")
    apply_topology(state, settings)
    market = tmp / "market"
    write_market(simulate(MarketConfig(users=700, days=12, seed=3, drift_day=drift_day)), market)
    summary = run_bounded(
        [
            "--input",
            str(market / "feature-events.pb"),
            "--redis_url",
            state.redis_url,
            "--offline_path",
            str(state.offline_dir),
            *stack_args(settings),
        ]
    )
    assert summary.rejected_total == 0
    params = local_parameters(settings, state, str(market / "impressions.parquet"))
    out = run_training(
        TrainingRequest(
            **{
                k: params[k]
                for k in ("offline_uri", "impressions_uri", "registry_uri", "env", "worker_deployment", "variant")
            },
            pipeline_root=str(tmp / "root"),
            arguments={"window_end": "2026-03-09T00:00:00Z", "valid_days": 1, "test_days": 1, "min_oracle_ratio": 0.5},
        )
    )
    assert out["deployed"], out
    return state, market


def _drift_check(state: LocalState, market: Path) -> dict[str, Any]:
    out = rerank("drift", "check", "--market", str(market), "--json", state_dir=Path(state.dir).parent)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_injected_drift_triggers_one_retrain_with_the_reason(tmp_path: Path, settings: StackSettings) -> None:
    state, market = _stack_with_market(tmp_path, settings, drift_day=8)
    try:
        report = _drift_check(state, market)
        assert report["retrain"] is True and report["trigger"]
        assert report["reasons"][0].startswith("feature_drift: ")
        assert "account_age_days" in report["reasons"][0] or "pref_max_distance_km" in report["reasons"][0]
        names = Names.of(settings)
        msgs = pull_all(
            state.pubsub_host,
            f"projects/{settings.gcp.project}/subscriptions/{names.training_triggers_subscription}",
            want=1,
        )
        assert [m.attributes["reason"] for m in msgs] == ["feature_drift"]
        doc = json.loads(msgs[0].data)
        assert doc["trigger_id"] == report["trigger"] and doc["figures"]["psi_top"]

        # The same check as the cloud CronJob runs it: everything from the environment.
        parameters = local_parameters(settings, state, str(market / "impressions.parquet"))
        env = {
            **os.environ,
            "PUBSUB_EMULATOR_HOST": state.pubsub_host,
            "PIPELINE_PARAMETERS": json.dumps({k: v for k, v in parameters.items() if k != "variant"}),
            "PIPELINE_TEMPLATE": "gs://bucket/pipelines/rerank-training-0.1.0.yaml",
        }
        pod = rerank("drift", "check", "--endpoints", "env", "--json", state_dir=tmp_path / "elsewhere", env=env)
        assert pod.returncode == 0, pod.stderr
        assert json.loads(pod.stdout)["trigger"] == report["trigger"], "same model, same window: same trigger id"
        (again_msg,) = pull_all(
            state.pubsub_host,
            f"projects/{settings.gcp.project}/subscriptions/{names.training_triggers_subscription}",
            want=1,
        )
        pod_doc = json.loads(again_msg.data)
        assert pod_doc["template_uri"] == "gs://bucket/pipelines/rerank-training-0.1.0.yaml"
        assert pod_doc["parameters"] == parameters and pod_doc["reason"] == doc["reason"]

        registry = ModelRegistry(registry_dir(state))
        before = len(registry.models())
        ledger = FileLedger(tmp_path / "ledger")
        first = trigger_pipeline(doc, local_submitter(state), ledger)
        assert first.status == 200 and first.body["submitted"] is True
        assert first.body["labels"]["reason"] == "feature_drift"
        assert len(registry.models()) == before + 1, "the retrain ran and registered a model"
        again = trigger_pipeline(doc, local_submitter(state), ledger)
        assert again.status == 200 and again.body["submitted"] is False
        assert len(registry.models()) == before + 1, "a repeated trigger id submits nothing"
    finally:
        stop_services(settings.stack, tmp_path / "state")


def test_a_market_without_drift_does_not_trigger(tmp_path: Path, settings: StackSettings) -> None:
    state, market = _stack_with_market(tmp_path, settings, drift_day=None)
    try:
        report = _drift_check(state, market)
        assert report["retrain"] is False and report["trigger"] is None and report["reasons"] == []
        assert max(report["psi_top"].values()) < settings.training.drift.psi_threshold
        msgs = pull_all(
            state.pubsub_host,
            f"projects/{settings.gcp.project}/subscriptions/{Names.of(settings).training_triggers_subscription}",
            want=1,
            timeout=3,
        )
        assert msgs == []
    finally:
        stop_services(settings.stack, tmp_path / "state")


def _recording() -> LocalSubmitter:
    return LocalSubmitter(lambda p: {"model_id": f"m-{p.trigger_id}"})


GOOD = {
    "trigger_id": "nightly-2026-03-12",
    "reason": "schedule: nightly",
    "stack": "dev",
    "schedule": "nightly",
    "template_uri": "gs://b/pipelines/rerank-training.yaml",
    "parameters": {"env": "dev"},
}


@pytest.mark.parametrize(
    ("doc", "needle"),
    [
        ("not json", "must be a JSON object"),
        ({**GOOD, "trigger_id": "Has Spaces"}, "trigger_id: String should match pattern"),
        ({k: v for k, v in GOOD.items() if k != "reason"}, "reason: Field required"),
        ({**GOOD, "pipeline_spec": {"x": 1}}, "exactly one of template_uri"),
        ({**GOOD, "surprise": 1}, "surprise: Extra inputs are not permitted"),
    ],
)
def test_a_bad_payload_is_refused_and_nothing_is_submitted(tmp_path: Path, doc: Any, needle: str) -> None:
    sub = _recording()
    result = trigger_pipeline(doc, sub, FileLedger(tmp_path))
    assert result.status == 400 and needle in result.body["error"]
    assert sub.runs == []


def test_a_repeated_trigger_id_submits_once(tmp_path: Path) -> None:
    sub, ledger = _recording(), FileLedger(tmp_path)
    results = [trigger_pipeline(GOOD, sub, ledger) for _ in range(3)]
    assert [r.body["submitted"] for r in results] == [True, False, False]
    assert len(sub.runs) == 1
    assert results[0].body["labels"] == {
        "reason": "schedule",
        "stack": "dev",
        "schedule": "nightly",
        "trigger": "nightly-2026-03-12",
    }


def test_http_entry_answers_400_with_the_reason() -> None:
    import functions_framework

    from app.settings import REPO_ROOT

    app = functions_framework.create_app("http_trigger", str(REPO_ROOT / "app/trigger/main.py"))
    resp = app.test_client().post("/", data="{not json", content_type="application/json")
    assert resp.status_code == 400 and "the body is not JSON" in resp.get_json()["error"]
    resp = app.test_client().post("/", json={**GOOD, "stack": "Bad Stack"})
    assert resp.status_code == 400 and resp.get_json()["error"].startswith("stack:")


def test_schedules_come_from_the_stack(settings: StackSettings) -> None:
    assert [(s.name, s.cron_expression) for s in settings.training.schedules] == [("nightly", "0 3 * * *")]
    assert TriggerPayload(**{**GOOD, "template_uri": template_uri()}).template_uri.endswith("rerank-training.yaml")


def test_a_scheduled_payload_gets_one_trigger_id_per_firing(tmp_path: Path) -> None:
    from app.trigger.payload import with_schedule_id

    scheduled = {k: v for k, v in GOOD.items() if k != "trigger_id"}
    first = with_schedule_id(scheduled, "2026-11-27T03:00:04.123Z")
    redelivered = with_schedule_id(scheduled, "2026-11-27T03:00:04.123Z")
    next_night = with_schedule_id(scheduled, "2026-11-28T03:00:01Z")
    assert first["trigger_id"] == "nightly-2026112703" and next_night["trigger_id"] == "nightly-2026112803"
    sub, ledger = _recording(), FileLedger(tmp_path)
    assert [trigger_pipeline(d, sub, ledger).body["submitted"] for d in (first, redelivered, next_night)] == [
        True,
        False,
        True,
    ]
    # An explicit id (a drift check's) is kept as it is.
    assert with_schedule_id(GOOD, "2026-11-27T03:00:04Z")["trigger_id"] == GOOD["trigger_id"]
