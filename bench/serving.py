"""Serving benchmark: one worker, 100 candidates per request, against a naive path in the same run.

- ``scoring_only_requests_per_s``: the batched scorer alone (online read + model), the ceiling;
- ``requests_per_s``: sustained, a backlog published at once and drained by one worker;
- ``latency_p50_ms`` / ``latency_p99_ms``: requests offered at a fixed rate; each request's
  latency runs from its publish (``requested_at``) to its result being written and readable
  (``written_at`` on the result item, read back with a consistent read);
- the ``_naive`` figures: the same worker scoring each request alone, reading the online store
  once per candidate and calling the model once per request.
"""

from __future__ import annotations

import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from app.featurestore.registry import Registry, default_registry
from app.local.services import LocalState, free_port
from app.market.simulate import MarketConfig
from app.serving.messages import RerankRequest
from app.serving.runtime import build_worker, result_store
from app.serving.scoring import Scorer
from app.settings import REPO_ROOT, StackSettings
from bench.served_market import ServedMarket, prepare_served_market

CANDIDATES = 100


def _requests(world: ServedMarket, n: int) -> list[tuple[str, list[str]]]:
    users = world.users_in(world.settings.serving.primary.name, len(world.users))
    rng = np.random.default_rng(1)
    out = []
    for i in range(n):
        u = users[i % len(users)]
        cands = [c for c in rng.choice(world.users, CANDIDATES + 1, replace=False) if c != u][:CANDIDATES]
        out.append((u, cands))
    return out


def _metric(port: int, outcome: str) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
    for line in text.splitlines():
        if line.startswith("rerank_requests_total{") and f'outcome="{outcome}"' in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def _run_load(
    world: ServedMarket, pairs: list[tuple[str, list[str]]], tag: str, rate: float | None, naive: bool
) -> dict[str, float]:
    """Offer ``pairs`` to one primary worker process (at ``rate`` per second, or all at once) and wait
    for every result. The worker runs as ``rerank serve``, as in production: not in this process."""
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "app.cli",
        "serve",
        "--variant",
        world.settings.serving.primary.name,
        "--http-port",
        str(port),
        "--state-dir",
        str(Path(world.state.dir).parent),
    ] + (["--naive-scoring", "--max-batch", "1"] if naive else [])
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client, store = world.client(), result_store(world.settings, world.state)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                _metric(port, "written")
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("the worker did not come up") from None
                time.sleep(0.2)
        before = _metric(port, "written")
        start = time.perf_counter()
        reqs: list[RerankRequest] = []
        futures = []
        for i, (u, cands) in enumerate(pairs):
            if rate:
                delay = start + i / rate - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
            req = RerankRequest(uuid.uuid4().hex, u, f"{tag}-{i}", tuple(cands), datetime.now(UTC))
            futures.append(client.publisher.publish(client.topic, req.to_json(), arm=client.arm(u)))
            reqs.append(req)
        for f in futures:
            f.result(timeout=60)
        deadline = time.monotonic() + 300
        while _metric(port, "written") - before < len(reqs) and time.monotonic() < deadline:
            time.sleep(0.02)
        elapsed = time.perf_counter() - start
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)
    latencies = []
    for r in reqs:
        res = store.get(r.user_id, r.surface)
        if res is None or res.request_id != r.request_id or res.written_at is None:
            raise RuntimeError(f"request {r.request_id} has no result after the run")
        latencies.append((res.written_at - r.requested_at).total_seconds() * 1000)
    return {
        "requests": len(reqs),
        "seconds": elapsed,
        "requests_per_s": len(reqs) / elapsed,
        "latency_p50_ms": float(np.percentile(latencies, 50)),
        "latency_p99_ms": float(np.percentile(latencies, 99)),
    }


def _scoring_only(world: ServedMarket, registry: Registry, pairs: list[tuple[str, list[str]]]) -> float:
    worker = build_worker(world.settings, world.state, world.settings.serving.primary.name)
    scorer: Scorer = worker.handler.scorer
    current = worker.handler.model.current()
    assert current is not None
    now = datetime.now(UTC)
    reqs = [RerankRequest(f"s{i}", u, "s", tuple(c), now) for i, (u, c) in enumerate(pairs)]
    batches = [reqs[i : i + 32] for i in range(0, len(reqs), 32)]
    scorer.score(current[1], batches[0])
    start = time.perf_counter()
    for b in batches:
        scorer.score(current[1], b)
    return len(reqs) / (time.perf_counter() - start)


def run(state: LocalState, settings: StackSettings, rate: float, seconds: float) -> dict[str, Any]:
    registry = default_registry()
    with tempfile.TemporaryDirectory() as tmp:
        world = prepare_served_market(state, settings, registry, Path(tmp), MarketConfig(users=1000, days=6, seed=5))
    out: dict[str, Any] = {
        "benchmark": "serving",
        "candidates_per_request": CANDIDATES,
        "pull_mode": settings.serving.pull_mode,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
    }
    out["scoring_only_requests_per_s"] = round(_scoring_only(world, registry, _requests(world, 640)), 1)
    sustained = _run_load(world, _requests(world, 1000), "sus", None, naive=False)
    out["requests_per_s"] = round(sustained["requests_per_s"], 1)
    offered = _run_load(world, _requests(world, int(rate * seconds)), "lat", rate, naive=False)
    out["offered_requests_per_s"] = rate
    out["latency_p50_ms"] = round(offered["latency_p50_ms"], 1)
    out["latency_p99_ms"] = round(offered["latency_p99_ms"], 1)
    naive = _run_load(world, _requests(world, 100), "nsus", None, naive=True)
    out["requests_per_s_naive"] = round(naive["requests_per_s"], 1)
    naive_rate = min(rate, max(1.0, naive["requests_per_s"] * 0.8))
    naive_lat = _run_load(world, _requests(world, int(naive_rate * min(seconds, 5))), "nlat", naive_rate, naive=True)
    out["naive_offered_requests_per_s"] = round(naive_rate, 1)
    out["latency_p50_ms_naive"] = round(naive_lat["latency_p50_ms"], 1)
    out["latency_p99_ms_naive"] = round(naive_lat["latency_p99_ms"], 1)
    out["speedup_requests_per_s"] = round(out["requests_per_s"] / out["requests_per_s_naive"], 1)
    return out
