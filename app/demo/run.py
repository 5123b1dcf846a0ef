"""The main job: the whole loop on the local stack, step by step.

market -> streaming ingest (Beam on the emulator) -> training pipeline (kfp.local) for each variant
that trains, with the parameters its stack declares (a variant that follows another's model gets it
from that one's deploy step) -> workers -> sessions replayed through
the core-service client -> summary and HTML report.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from app.deadletters import drain_by_reason
from app.demo.replay import Session, impressions, lift, replay
from app.demo.report import render
from app.experiments.readout import TOP_K, local_data, readout
from app.featurestore.events import event_attributes
from app.featurestore.samples import bad_events
from app.local import clients
from app.local.services import LocalState, free_port
from app.market.simulate import Market, MarketConfig, simulate
from app.market.writer import IMPRESSIONS_DIR, ORACLE_FILE, write_market
from app.naming import Names
from app.output_paths import Output, output_file
from app.ranking.registry import ModelRegistry
from app.ranking.variant_training import training_parameters
from app.serving.client import CoreServiceClient
from app.serving.runtime import registry_dir, result_store
from app.settings import REPO_ROOT, StackSettings


class DemoStepFailed(RuntimeError):
    pass


@dataclass(frozen=True)
class DemoOptions:
    users: int = 1200
    days: int = 10
    seed: int = 42
    sessions: int = 400
    report: Output | None = None  # checked before the demo starts (app.output_paths)


@contextmanager
def step(progress: Callable[[str], None], number: int, total: int, name: str) -> Iterator[None]:
    progress(f"[{number}/{total}] {name} ...")
    started = time.perf_counter()
    try:
        yield
    except DemoStepFailed:
        raise
    except Exception as exc:
        raise DemoStepFailed(f"step {number} ({name}) failed: {type(exc).__name__}: {exc}") from exc
    progress(f"[{number}/{total}] {name}: done in {time.perf_counter() - started:.1f} s")


def _publish_events(state: LocalState, settings: StackSettings, market: Market) -> int:
    pub = clients.publisher(state.pubsub_host)
    topic = pub.topic_path(settings.gcp.project, Names.of(settings).feature_events_topic)
    futures = [pub.publish(topic, m.SerializeToString(), **event_attributes(e, v, at)) for e, v, at, m in market.events]
    futures += [pub.publish(topic, data, **attrs) for data, attrs in bad_events().values()]
    for f in futures:
        f.result(timeout=120)
    return len(futures)


def _start_workers(state: LocalState, settings: StackSettings, log_dir: Path) -> dict[str, tuple[Any, int]]:
    workers = {}
    for v in settings.serving.variants:
        port = free_port()
        log = open(log_dir / f"worker-{v.name}.log", "w")
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "app.cli",
                "serve",
                "--stack",
                settings.stack,
                "--variant",
                v.name,
                "--http-port",
                str(port),
                "--state-dir",
                str(Path(state.dir).parent),
            ],
            cwd=REPO_ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        workers[v.name] = (proc, port)
    deadline = time.monotonic() + 60
    for name, (proc, port) in workers.items():
        while True:
            try:
                if urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1).status == 200:
                    break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"worker {name} did not come up (log: {log_dir / f'worker-{name}.log'})")
            time.sleep(0.2)
    return workers


def _stop_workers(workers: dict[str, tuple[Any, int]]) -> None:
    for proc, _ in workers.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc, _ in workers.values():
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


def _sessions(market: Market, limit: int) -> list[Session]:
    imp = market.impressions
    last = imp.filter(pa.array(market.day_of(imp) == market.config.days - 1))
    ids = last.column("session_id").to_numpy()
    viewers = last.column("viewer_id").to_pylist()
    cands = last.column("candidate_id").to_pylist()
    out: list[Session] = []
    for sid in np.unique(ids)[:limit]:
        rows = np.flatnonzero(ids == sid)
        out.append(Session(viewers[rows[0]], tuple(cands[i] for i in rows)))
    return out


def _landed(offline_dir: Path) -> int:
    import pyarrow.parquet as pq

    from app.serving.sink import PREDICTIONS_TABLE

    return sum(pq.ParquetFile(f).metadata.num_rows for f in (offline_dir / PREDICTIONS_TABLE).glob("*/*.parquet"))


def _wait_for_landing(offline_dir: Path, expected: int, quiet_s: float = 3.0, limit_s: float = 30.0) -> None:
    """Until ``expected`` prediction records landed, or none came for ``quiet_s`` (some requests may
    never be scored: the readout counts those sessions as unattributed)."""
    deadline, seen, since = time.monotonic() + limit_s, -1, time.monotonic()
    while time.monotonic() < deadline:
        now = _landed(offline_dir)
        if now >= expected:
            return
        if now != seen:
            seen, since = now, time.monotonic()
        elif time.monotonic() - since > quiet_s:
            return
        time.sleep(0.3)


def _readout(settings: StackSettings, state: LocalState, outcomes: list[Any], served: Path) -> dict[str, Any]:
    """The experiment readout from what was served: the replayed sessions delivered as impressions,
    joined with the landed prediction records; both are kept under ``served`` (the local services'
    offline store goes when they stop), so `rerank experiment report` can be run on them afterwards."""
    import pyarrow.parquet as pq

    from app.ranking.impressions import read_impressions
    from app.serving.sink import PREDICTIONS_TABLE
    from app.trigger.served import read_predictions

    shutil.rmtree(served, ignore_errors=True)
    (served / "impressions").mkdir(parents=True)
    pq.write_table(impressions(outcomes), served / "impressions" / "replay.parquet")
    if (state.offline_dir / PREDICTIONS_TABLE).is_dir():
        shutil.copytree(state.offline_dir / PREDICTIONS_TABLE, served / PREDICTIONS_TABLE)
    data = local_data(read_predictions(served), read_impressions(served / "impressions").table)
    start = min(o.shown_at for o in outcomes) - timedelta(minutes=1)
    doc = readout(settings.serving.variants, data, start, datetime.now(UTC) + timedelta(days=1), TOP_K)
    command = f"rerank experiment report --offline {served} --impressions {served / 'impressions'}"
    return {**doc, "command": command}


def _roc(pipeline_root: Path) -> dict[str, list[float]]:
    """The ROC curve of the latest run's evaluation (what the report plots)."""
    evaluation = max(pipeline_root.glob("*/evaluate-models*/executor_output.json"), key=lambda p: p.stat().st_mtime)
    meta = json.loads(evaluation.read_text())["artifacts"]["roc"]["artifacts"][0]["metadata"]
    return {
        "fpr": [p["falsePositiveRate"] for p in meta["confidenceMetrics"]],
        "tpr": [p["recall"] for p in meta["confidenceMetrics"]],
    }


def run_demo(
    settings: StackSettings, state: LocalState, opts: DemoOptions, progress: Callable[[str], None]
) -> dict[str, Any]:
    from app.featurestore.local_stream import stream_local
    from pipelines.local_run import TrainingRequest, run_training

    total, names, project = 6, Names.of(settings), settings.gcp.project
    work = Path(state.dir) / "demo"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    summary: dict[str, Any] = {"stack": settings.stack, "top_k": TOP_K}
    started = time.perf_counter()

    with step(progress, 1, total, f"simulating a market of {opts.users} users over {opts.days} days"):
        market = simulate(MarketConfig(users=opts.users, days=opts.days, seed=opts.seed))
        summary["market"] = write_market(market, work / "market")["summary"]

    with step(progress, 2, total, f"streaming {len(market.events)} feature events through the Beam ingest"):
        published = _publish_events(state, settings, market)
        ingest = stream_local(settings, state, idle_exit=3.0)
        summary["ingest"] = ingest.to_dict()
        if ingest.accepted + ingest.rejected_total < published:
            raise RuntimeError(f"the ingest saw {ingest.accepted + ingest.rejected_total} of {published} events")

    registry = ModelRegistry(registry_dir(state))
    sv = settings.serving
    # The primary first: the report's ROC curve is its evaluation's.
    trained = sorted(sv.trained, key=lambda v: v.name != sv.primary.name)
    with step(progress, 3, total, f"training {', '.join(v.name for v in trained)}, each as the stack declares"):
        # A simulation: the oracle file adds the ceiling's figures to the evaluation (it gates nothing).
        held_out = {
            "valid_days": max(1, opts.days // 5),
            "test_days": max(1, opts.days // 5),
            "oracle_uri": str(work / "market" / ORACLE_FILE),
        }
        stores = {
            "offline_uri": str(state.offline_dir),
            "impressions_uri": str(work / "market" / IMPRESSIONS_DIR),
            "registry_uri": str(registry.root),
            "pipeline_root": str(work / "pipeline-root"),
        }
        training: dict[str, dict[str, Any]] = {}
        roc: dict[str, list[float]] = {}
        for v in trained:
            params = training_parameters(settings, v.name)
            fixed = {k: params.pop(k) for k in ("env", "variant", "worker_deployment")}
            training[v.name] = run_training(
                TrainingRequest(
                    **stores, **fixed, arguments={**params, **held_out}, resources=settings.training.resources
                )
            )
            if v.name == sv.primary.name:
                roc = _roc(Path(stores["pipeline_root"]))
        # A variant that follows another's model got it from that variant's deploy step.
        for v in sv.variants:
            if v.training.follows is not None:
                name = sv.trainer_of(v.name).name
                lead = training[name]
                training[v.name] = {
                    "deployed": bool(lead["deployed"]),
                    "reason": f"follows {name}"
                    + ("" if lead["deployed"] else f", whose model was not deployed: {lead['deploy_reason']}"),
                }
        summary["training"] = training
        missing = [v.name for v in sv.variants if registry.deployment(v.name) is None]
        if missing:
            why = "; ".join(f"{m}: {training[sv.trainer_of(m).name]['deploy_reason']}" for m in missing)
            raise RuntimeError(f"no model could be deployed to {missing} ({why})")

    workers: dict[str, tuple[Any, int]] = {}
    outcomes: list[Any] = []
    stop_sink = threading.Event()
    try:
        with step(progress, 4, total, "starting a worker per variant and the prediction sink"):
            workers = _start_workers(state, settings, work)
            from app.serving.sink import run_sink

            sink_sub = clients.subscriber(state.pubsub_host)
            sink = threading.Thread(
                target=run_sink,
                daemon=True,
                args=(
                    sink_sub,
                    sink_sub.subscription_path(project, names.predictions_subscription),
                    state.offline_dir,
                    stop_sink,
                ),
            )
            sink.start()

        sessions = _sessions(market, opts.sessions)
        with step(progress, 5, total, f"replaying {len(sessions)} sessions through the core-service client"):
            pub = clients.publisher(state.pubsub_host, clients.LOW_LATENCY)
            client = CoreServiceClient(
                pub,
                pub.topic_path(project, names.requests_topic),
                result_store(settings, state),
                list(settings.serving.variants),
            )
            outcomes, seconds = replay(client, sessions, market.population, opts.seed)
    finally:
        _stop_workers(workers)
        if outcomes:  # every request is scored by its arm and by each shadow: let the sink land them
            shadows = sum(v.kind == "shadow" for v in settings.serving.variants)
            _wait_for_landing(state.offline_dir, len(outcomes) * (1 + shadows))
        stop_sink.set()

    with step(progress, 6, total, "summary and report"):
        latencies = [o.latency_ms for o in outcomes if o.latency_ms is not None]
        summary["ab"] = {v.name: lift(outcomes, v.name) for v in settings.serving.variants if v.kind != "shadow"}
        summary["serving"] = {
            "sessions": len(outcomes),
            "seconds": round(seconds, 1),
            "requests_per_s": round(len(outcomes) / seconds, 1),
            "fallback_rate": float(np.mean([o.fell_back for o in outcomes])) if outcomes else 0.0,
            "latency_p50_ms": round(float(np.percentile(latencies, 50)), 1) if latencies else None,
            "latency_p99_ms": round(float(np.percentile(latencies, 99)), 1) if latencies else None,
        }
        dlq_sub = clients.subscriber(state.pubsub_host)
        try:  # per reason: what a person would look at first (`rerank dlq show --reason R`)
            requests_dead = drain_by_reason(
                dlq_sub, f"projects/{project}/subscriptions/{names.requests_dead_letter_subscription}"
            )
        finally:
            dlq_sub.close()
        summary["dead_letters"] = {
            "feature_events": {"total": ingest.rejected_total, "by_reason": dict(sorted(ingest.rejected.items()))},
            "requests": {"total": sum(requests_dead.values()), "by_reason": requests_dead},
        }
        summary["experiment"] = _readout(settings, state, outcomes, work / "served")
        summary["total_s"] = round(time.perf_counter() - started, 1)
        report = opts.report or output_file("--report", work / "report.html", force=True)  # the demo's own
        with report.staged() as page:
            page.write_text(render(summary, roc, latencies))
        summary["report"] = str(report.path)
    return summary
