"""Retraining triggers: drift checks on a market with and without drift, the trigger function's
payload checks and its once-per-trigger-id guarantee."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from app.featurestore.pipeline import run_bounded, stack_args
from app.local import clients
from app.local.apply import apply_topology
from app.local.services import LocalState, start_services, stop_services
from app.market.simulate import MarketConfig, simulate
from app.market.writer import IMPRESSIONS_DIR, write_market
from app.naming import Names
from app.ranking.impressions import read_impressions
from app.ranking.registry import ModelRegistry
from app.serving.client import CoreServiceClient
from app.serving.runtime import build_worker, registry_dir, result_store
from app.serving.sink import run_sink
from app.settings import StackSettings
from app.trigger.ledger import FileLedger
from app.trigger.local import local_parameters, local_submitter, template_uri
from app.trigger.main import trigger_pipeline
from app.trigger.payload import TriggerPayload
from app.trigger.served import read_predictions
from app.trigger.submit import LocalSubmitter
from pipelines.local_run import TrainingRequest, run_training
from tests.integration.conftest import pull_all, rerank, wait_until


def _stack_with_market(
    tmp: Path, settings: StackSettings, drift_day: int | None, champion_end: str
) -> tuple[LocalState, Path, str]:
    """A stack of its own, a 12-day market ingested (offline and online), a model trained on the days
    before ``champion_end`` and deployed to the primary: the champion."""
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
    out = run_training(_request(settings, state, market, tmp, window_end=champion_end, valid_days=1, test_days=1))
    assert out["deployed"], out
    return state, market, out["model_id"]


def _request(settings: StackSettings, state: LocalState, market: Path, tmp: Path, **arguments: Any) -> TrainingRequest:
    params = local_parameters(settings, state, str(market / IMPRESSIONS_DIR))
    fixed = ("offline_uri", "impressions_uri", "registry_uri", "env", "worker_deployment", "variant")
    return TrainingRequest(
        **{k: params[k] for k in fixed},
        pipeline_root=str(tmp / "root"),
        arguments={**{k: v for k, v in params.items() if k not in fixed}, **arguments},
    )


def _drift_check(state: LocalState, market: Path) -> dict[str, Any]:
    out = rerank("drift", "check", "--market", str(market), "--json", state_dir=Path(state.dir).parent)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def _serve_recent_sessions(client: CoreServiceClient, market: Path, since: datetime, n: int) -> list[str]:
    """The core service asks the primary for orders of ``n`` recent sessions; each request carries the
    session id its impressions carry (docs/specs/impressions.md), at the time they were shown."""
    imp = read_impressions(market / IMPRESSIONS_DIR).table
    recent = imp.filter(
        pc.greater_equal(imp.column("impression_time"), pa.scalar(since, imp.schema.field("impression_time").type))
    )
    sessions: dict[str, tuple[str, list[str], datetime]] = {}
    for sid, viewer, cand, at in zip(
        *(recent.column(c).to_pylist() for c in ("session_id", "viewer_id", "candidate_id", "impression_time")),
        strict=True,
    ):
        if client.arm(viewer) == "primary" and (sid in sessions or len(sessions) < n):
            sessions.setdefault(sid, (viewer, [], at))[1].append(cand)
    for sid, (viewer, cands, at) in sessions.items():
        client.request(viewer, "discover", cands, now=at, request_id=sid)
    return list(sessions)


@contextmanager
def _serving(settings: StackSettings, state: LocalState) -> Iterator[CoreServiceClient]:
    """A primary worker and the prediction sink, running until the block ends. The market's sessions
    are months old and replayed at their own times, which the worker's request-age bound would
    refuse as stale (`bad_requested_at`): the replay widens that one bound."""
    names, project = Names.of(settings), settings.gcp.project
    # The sessions replayed are the simulated market's (March 2026), requested at the time they were
    # shown: the worker must admit requests that old, which a live stack's limits would dead-letter.
    history = settings.limits.model_copy(update={"max_request_age_seconds": 10 * 365 * 86400})
    worker = build_worker(settings, state, settings.serving.primary.name, limits=history)
    stop_sink = threading.Event()
    sink_sub = clients.subscriber(state.pubsub_host)
    threads = [
        threading.Thread(target=worker.run, daemon=True),
        threading.Thread(
            target=run_sink,
            args=(
                sink_sub,
                sink_sub.subscription_path(project, names.predictions_subscription),
                state.offline_dir,
                stop_sink,
            ),
            daemon=True,
        ),
    ]
    for t in threads:
        t.start()
    pub = clients.publisher(state.pubsub_host, clients.LOW_LATENCY)
    try:
        yield CoreServiceClient(
            pub,
            pub.topic_path(project, names.requests_topic),
            result_store(settings, state),
            list(settings.serving.variants),
        )
    finally:
        worker.stop.set()
        stop_sink.set()
        for t in threads:
            t.join(timeout=15)


def test_drift_retrains_on_the_recent_window_ships_and_the_running_worker_serves_it(
    tmp_path: Path, settings: StackSettings
) -> None:
    """The retraining loop: a drift cohort joins on day 5; what the primary served on the last days,
    joined with outcomes, and the features' drift make `rerank drift check` publish a trigger; the
    triggered pipeline trains on the recent window, beats the serving model on the same recent days
    and is deployed; the worker that was running all along serves it, without a restart."""
    state, market, champion = _stack_with_market(tmp_path, settings, drift_day=5, champion_end="2026-03-06T00:00:00Z")
    names = Names.of(settings)
    triggers = f"projects/{settings.gcp.project}/subscriptions/{names.training_triggers_subscription}"
    registry = ModelRegistry(registry_dir(state))
    try:
        with _serving(settings, state) as client:
            sessions = _serve_recent_sessions(client, market, datetime(2026, 3, 10, tzinfo=UTC), 120)
            wait_until(
                lambda: (
                    len(set(read_predictions(state.offline_dir).column("request_id").to_pylist()) & set(sessions))
                    == len(sessions)
                ),
                timeout=90,
                what="every served prediction landed",
            )
            report = _drift_check(state, market)
            assert report["model_id"] == champion and report["retrain"] is True and report["trigger"]
            assert report["ground_truth"]["source"] == "served_predictions", report["ground_truth"]
            assert report["ground_truth"]["rows"] >= 500
            assert report["reasons"][0].startswith("feature_drift: ")
            (msg,) = pull_all(state.pubsub_host, triggers, want=1)
            assert msg.attributes["reason"] == "feature_drift"
            doc = json.loads(msg.data)
            assert doc["trigger_id"] == report["trigger"] and doc["figures"]["psi_top"]
            recent_end = report["windows"]["recent"].split("/")[1]
            assert doc["parameters"]["test_days"] == settings.training.drift.recent_days
            assert doc["parameters"]["window_start"] < recent_end

            # The same check as the cloud CronJob runs it: everything from the environment.
            parameters = local_parameters(settings, state, str(market / IMPRESSIONS_DIR))
            env = {
                **os.environ,
                "PUBSUB_EMULATOR_HOST": state.pubsub_host,
                "PIPELINE_PARAMETERS": json.dumps({k: v for k, v in parameters.items() if k != "variant"}),
                "PIPELINE_TEMPLATE": "gs://bucket/pipelines/rerank-training-0.1.0.yaml",
            }
            pod = rerank("drift", "check", "--endpoints", "env", "--json", state_dir=tmp_path / "elsewhere", env=env)
            assert pod.returncode == 0, pod.stderr
            pod_report = json.loads(pod.stdout)
            assert pod_report["trigger"] == report["trigger"], "same model, same window: same trigger id"
            assert pod_report["ground_truth"] == report["ground_truth"]
            (again_msg,) = pull_all(state.pubsub_host, triggers, want=1)
            pod_doc = json.loads(again_msg.data)
            assert pod_doc["template_uri"] == "gs://bucket/pipelines/rerank-training-0.1.0.yaml"
            assert pod_doc["parameters"] == doc["parameters"] and pod_doc["reason"] == doc["reason"]

            ledger = FileLedger(tmp_path / "ledger")
            submitter = local_submitter(state)
            first = trigger_pipeline(doc, submitter, ledger)
            assert first.status == 200 and first.body["submitted"] is True
            assert first.body["labels"]["reason"] == "feature_drift"
            (run,) = submitter.runs
            m = run["metrics"]
            assert run["serving_model_id"] == champion, "judged against the model serving, on the same days"
            assert run["deployed"] is True, run["deploy_reason"]
            assert m["model_minus_serving_ndcg_at_10"] > settings.training.gate.margin
            assert f"beats the serving model {champion}" in run["deploy_reason"]
            new = registry.deployment("primary")
            assert new.model_id == run["model_id"] and new.previous_model_id == champion
            window = registry.metadata(new.model_id)["data_window"]
            # tested on the recent days (the market's last 3: 10-12 March), where the drift was seen
            assert (window["valid_end"], window["end"]) == ("2026-03-10T00:00:00+00:00", "2026-03-13T00:00:00+00:00")
            assert window["start"] >= doc["parameters"]["window_start"][:10]
            again = trigger_pipeline(doc, local_submitter(state), ledger)
            assert again.status == 200 and again.body["submitted"] is False, "a repeated trigger id submits nothing"

            # The worker running since before the retrain now serves the new model.
            table = read_impressions(market / IMPRESSIONS_DIR).table
            user = next(u for u in table.column("viewer_id").to_pylist() if client.arm(u) == "primary")
            cands = [c for c in table.column("candidate_id").to_pylist()[:30] if c != user]
            req = client.request(user, "discover", cands)
            wait_until(lambda: not client.ordering(req).fell_back, timeout=30, what="a fresh result")
            assert client.ordering(req).result.model_id == new.model_id
    finally:
        stop_services(settings.stack, tmp_path / "state")


def test_without_drift_nothing_triggers_and_a_retrain_that_is_not_better_is_refused(
    tmp_path: Path, settings: StackSettings
) -> None:
    state, market, champion = _stack_with_market(
        tmp_path, settings, drift_day=None, champion_end="2026-03-09T00:00:00Z"
    )
    try:
        report = _drift_check(state, market)
        assert report["retrain"] is False and report["trigger"] is None and report["reasons"] == []
        assert max(report["psi_top"].values()) < settings.training.drift.psi_threshold
        assert report["ground_truth"] == {
            "source": "rescored",
            "rows": report["ground_truth"]["rows"],
            "served_rows": 0,
        }
        msgs = pull_all(
            state.pubsub_host,
            f"projects/{settings.gcp.project}/subscriptions/{Names.of(settings).training_triggers_subscription}",
            want=1,
            timeout=3,
        )
        assert msgs == []

        # The nightly schedule retrains anyway: on the same days, the same model; not better, so refused.
        parameters = {
            **local_parameters(settings, state, str(market / IMPRESSIONS_DIR)),
            "window_end": "2026-03-09T00:00:00Z",
            "valid_days": 1,
            "test_days": 1,
        }
        nightly = {**GOOD, "stack": settings.stack, "template_uri": template_uri(), "parameters": parameters}
        submitter = local_submitter(state)
        result = trigger_pipeline(nightly, submitter, FileLedger(tmp_path / "ledger"))
        assert result.status == 200 and result.body["submitted"] is True
        (run,) = submitter.runs
        assert run["serving_model_id"] == champion and run["approved"] is False and run["deployed"] is False
        assert run["metrics"]["model_minus_serving_ndcg_at_10"] <= settings.training.gate.margin
        assert (
            run["deploy_reason"].startswith("not deployed: NDCG@10 ")
            and f"does not beat the serving model {champion}" in run["deploy_reason"]
        )
        registry = ModelRegistry(registry_dir(state))
        assert registry.deployment("primary").model_id == champion
        refused = registry.metadata(run["model_id"])
        assert refused["approved"] is False and refused["approval_reason"] in run["deploy_reason"]
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
