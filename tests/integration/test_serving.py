"""Async serving against the real emulator, Redis and moto: workers, results, fallback, failures."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from app.local import clients
from app.local.services import LocalState, start_services
from app.naming import Names
from app.ranking.features import model_entities
from app.ranking.registry import ModelRegistry
from app.serving.messages import RerankRequest
from app.serving.runtime import registry_dir, result_store
from app.serving.scoring import Scorer
from app.settings import REPO_ROOT
from tests.integration.conftest import pull_all, wait_until
from tests.integration.serving_world import ServedMarket, running_worker


def candidates(world: ServedMarket, user: str, n: int = 30) -> list[str]:
    return [u for u in world.users if u != user][:n]


def test_primary_results_follow_the_model_and_predictions_are_published(served: ServedMarket) -> None:
    client = served.client()
    users = served.users_in("primary", 8)
    with running_worker(served, "primary"):
        reqs = [client.request(u, "discover", candidates(served, u)) for u in users]
        wait_until(lambda: all(not client.ordering(r).fell_back for r in reqs), what="results for every request")
    model = ModelRegistry(registry_dir(served.state)).deployment("primary")
    import lightgbm as lgb

    booster = lgb.Booster(model_file=model.model_uri)
    from app.featurestore.online import online_store

    scorer = Scorer(
        online_store(clients.redis_client(served.state.redis_url), served.settings, served.registry),
        served.registry,
        model_entities(served.settings),
    )
    expected = scorer.score(booster, reqs)
    for r, e in zip(reqs, expected, strict=True):
        o = client.ordering(r)
        assert o.reason == "re-ranked" and o.result.model_id == served.model_id and o.result.variant == "primary"
        assert list(o.ids) == list(e.ordered()[0]), "the served order is the model's order"
        assert sorted(o.ids) == sorted(r.candidate_ids)
    preds = pull_all(
        served.state.pubsub_host,
        f"projects/{served.settings.gcp.project}/subscriptions/{Names.of(served.settings).predictions_subscription}",
        want=len(reqs),
    )
    assert sorted(json.loads(p.data)["request_id"] for p in preds) == sorted(r.request_id for r in reqs)


def test_no_result_or_an_older_one_means_the_callers_order(served: ServedMarket) -> None:
    client = served.client()
    user = served.users_in("b", 1)[0]  # no b worker runs in this test
    req = client.request(user, "discover", candidates(served, user))
    o = client.ordering(req)
    assert o.fell_back and o.reason == "no result yet" and o.ids == req.candidate_ids
    with running_worker(served, "b"):
        wait_until(lambda: not client.ordering(req).fell_back, what="b's result")
    newer = RerankRequest("later", user, "discover", req.candidate_ids, datetime.now(UTC) + timedelta(minutes=1))
    o = client.ordering(newer)
    assert o.fell_back and o.reason == "the stored result answers an older request" and o.ids == newer.candidate_ids


def test_duplicates_and_older_requests_never_roll_a_result_back(served: ServedMarket) -> None:
    client = served.client()
    user = served.users_in("primary", 1)[0]
    store = result_store(served.settings, served.state)
    with running_worker(served, "primary") as worker:
        newer = client.request(user, "dup", candidates(served, user, 20))
        wait_until(lambda: (r := store.get(user, "dup")) is not None and r.request_id == newer.request_id)
        # The same request delivered again, and an older request for the same user and surface.
        served.client().publisher.publish(client.topic, newer.to_json(), arm="primary").result()
        older = RerankRequest(
            "older", user, "dup", tuple(candidates(served, user, 5)), newer.requested_at - timedelta(seconds=30)
        )
        client.publisher.publish(client.topic, older.to_json(), arm="primary").result()
        wait_until(
            lambda: worker.metrics.requests.labels(variant="primary", outcome="superseded")._value.get() >= 2,
            what="both late writes refused",
        )
    result = store.get(user, "dup")
    assert result.request_id == newer.request_id and len(result.ordered_ids) == 20


def test_shadow_scores_everything_and_serves_nothing(served: ServedMarket) -> None:
    client = served.client()
    user = served.users_in("b", 1)[0]
    store = result_store(served.settings, served.state)
    with running_worker(served, "shadow"):
        req = client.request(user, "shadow-only", candidates(served, user))
        preds = pull_all(
            served.state.pubsub_host,
            f"projects/{served.settings.gcp.project}/subscriptions/"
            f"{Names.of(served.settings).predictions_subscription}",
            want=1,
        )
    assert [json.loads(p.data)["variant"] for p in preds] == ["shadow"]
    assert json.loads(preds[0].data)["request_id"] == req.request_id
    assert store.get(user, "shadow-only") is None, "shadow results never reach the served table"


def test_each_poison_kind_is_dead_lettered_with_its_reason_and_the_rest_is_served(served: ServedMarket) -> None:
    client = served.client()
    good_user = served.users_in("primary", 1)[0]
    pub, topic = client.publisher, client.topic
    now = datetime.now(UTC)
    poison = {  # reason: (data, arm)
        "undecodable": (b"{not json", "primary"),
        "empty_candidates": (RerankRequest("p2", good_user, "s", (), now).to_json(), "primary"),
        "unknown_user": (RerankRequest("p3", "nobody-here", "s", ("u000001",), now).to_json(), "primary"),
        "bad_requested_at": (
            RerankRequest("p4", good_user, "s", ("u000001",), datetime(2100, 1, 1, tzinfo=UTC)).to_json(),
            "primary",
        ),
        "bad_id": (RerankRequest("p5", "a\nb", "s", ("u000001",), now).to_json(), "primary"),
        "missing_arm": (RerankRequest("p6", good_user, "s", ("u000001",), now).to_json(), ""),
        "unknown_arm": (RerankRequest("p7", good_user, "s", ("u000001",), now).to_json(), "zz"),
    }
    with running_worker(served, "primary"):
        for data, arm in poison.values():
            pub.publish(topic, data, **({"arm": arm} if arm else {})).result()
        good = client.request(good_user, "poison-test", candidates(served, good_user))
        wait_until(lambda: not client.ordering(good).fell_back, what="the good request served")
        dead = pull_all(
            served.state.pubsub_host,
            f"projects/{served.settings.gcp.project}/subscriptions/"
            f"{Names.of(served.settings).requests_dead_letter_subscription}",
            want=len(poison),
            timeout=60,
        )
    reasons = {m.attributes["reason"]: m for m in dead}
    assert set(reasons) == set(poison)
    for reason, (data, _) in poison.items():
        assert reasons[reason].data == data
        # A transient reason is retried with backoff until the last attempt; a permanent one is not retried.
        attempts = served.settings.serving.max_delivery_attempts if reason == "unknown_user" else 1
        assert reasons[reason].attributes["delivery_attempts"] == str(attempts), reason


def test_duplicates_are_served_once_and_candidates_without_features_after_the_ranked_ones(
    served: ServedMarket,
) -> None:
    client = served.client()
    user = served.users_in("primary", 1)[0]
    known = candidates(served, user, 6)
    asked = ["nobody-1", known[0], *known, known[1], "nobody-2"]
    with running_worker(served, "primary"):
        req = client.request(user, "dups", asked)
        wait_until(lambda: not client.ordering(req).fell_back, what="the request served")
    result = client.ordering(req).result
    assert result is not None and sorted(result.ordered_ids) == sorted(known), "each known candidate once"
    assert client.ordering(req).ids[-2:] == ("nobody-1", "nobody-2"), "unknown candidates last, in caller order"


def test_redis_back_empty_then_refilled_seconds_later_serves_every_request_in_between(served: ServedMarket) -> None:
    """The recovery case: requests arriving while the online store is empty are nacked as
    ``unknown_user`` with backoff (not redelivered at once), so the attempts outlast a refill."""
    client = served.client()
    users = served.users_in("primary", 4)
    with running_worker(served, "primary") as worker:
        r = clients.redis_client(served.state.redis_url)
        r.flushdb()  # as a Redis that restarted empty
        r.close()
        reqs = [client.request(u, "refill", candidates(served, u)) for u in users]
        wait_until(
            lambda: worker.metrics.errors.labels(variant="primary", kind="unknown_user")._value.get() >= 1,
            what="a request meeting the empty store",
        )
        time.sleep(3.0)  # the refill comes seconds later
        served.load_online()
        wait_until(lambda: all(not client.ordering(q).fell_back for q in reqs), timeout=45, what="every request served")
    assert worker.metrics.requests.labels(variant="primary", outcome="dead_lettered")._value.get() == 0


def _outage_recovers(served: ServedMarket, service: str, refill: Callable[[LocalState], None]) -> None:
    """Kill ``service`` under a running worker, offer requests, restart it, refill what it lost:
    every request must end up served, none dead-lettered."""
    client = served.client()
    users = served.users_in("primary", 4)
    with running_worker(served, "primary") as worker:
        os.killpg(served.state.services[service].pid, signal.SIGKILL)
        reqs = [client.request(u, f"outage-{service}", candidates(served, u)) for u in users]
        wait_until(lambda: worker.down_since is not None, what="the worker noticing the outage")
        time.sleep(1.0)
        if service == "redis":  # (with DynamoDB down the client cannot read at all)
            assert all(client.ordering(r).fell_back for r in reqs), "nothing is served while Redis is down"
        state, started = start_services(
            served.settings.stack, served.settings.gcp.project, Path(served.state.dir).parent
        )
        assert started == [service] and state.endpoints() == served.state.endpoints(), "a restart keeps the port"
        refill(state)  # neither Redis nor moto keeps anything across a restart
        wait_until(lambda: all(not client.ordering(r).fell_back for r in reqs), timeout=30, what="recovery")
    assert worker.metrics.errors.labels(variant="primary", kind="dependency_down")._value.get() >= 1
    assert worker.metrics.requests.labels(variant="primary", outcome="dead_lettered")._value.get() == 0


def test_redis_down_then_back_loses_nothing(served: ServedMarket) -> None:
    _outage_recovers(served, "redis", lambda state: served.load_online())


def test_dynamodb_down_then_back_loses_nothing(served: ServedMarket) -> None:
    from app.local.apply import apply_topology

    _outage_recovers(served, "dynamodb", lambda state: apply_topology(state, served.settings))


def _serve(world: ServedMarket, variant: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "app.cli",
            "serve",
            "--variant",
            variant,
            "--state-dir",
            str(Path(world.state.dir).parent),
        ],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_a_worker_killed_mid_batch_loses_no_request(served: ServedMarket) -> None:
    client = served.client()
    users = served.users_in("primary", 40)
    store = result_store(served.settings, served.state)
    proc = _serve(served, "primary")
    try:
        reqs = [client.request(u, f"kill-{i}", candidates(served, u, 100)) for i, u in enumerate(users)]
        wait_until(lambda: any(store.get(r.user_id, r.surface) for r in reqs), timeout=60, what="a first result")
        proc.kill()  # SIGKILL: no drain, leases simply expire
        proc.wait(timeout=10)
        with running_worker(served, "primary"):
            wait_until(
                lambda: all(store.get(r.user_id, r.surface) is not None for r in reqs),
                timeout=60,
                what="every request served after the restart",
            )
    finally:
        if proc.poll() is None:
            proc.kill()


def test_sigterm_drains_and_exits_within_10_seconds(served: ServedMarket) -> None:
    client = served.client()
    users = served.users_in("primary", 30)
    store = result_store(served.settings, served.state)
    proc = _serve(served, "primary")
    try:
        reqs = [client.request(u, f"term-{i}", candidates(served, u, 100)) for i, u in enumerate(users)]
        wait_until(lambda: any(store.get(r.user_id, r.surface) for r in reqs), timeout=60, what="a first result")
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=10)
        assert code == 0 and time.monotonic() - started < 10
        assert "worker primary stopped" in proc.stdout.read()
        with running_worker(served, "primary"):  # whatever was handed back is served at once
            wait_until(lambda: all(store.get(r.user_id, r.surface) is not None for r in reqs), timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()


def test_a_newly_deployed_model_is_picked_up_without_restart(served: ServedMarket, tmp_path: Path) -> None:
    client = served.client()
    reg = ModelRegistry(registry_dir(served.state))
    user = served.users_in("primary", 1)[0]
    with running_worker(served, "primary") as worker:
        first = client.request(user, "reload", candidates(served, user))
        wait_until(lambda: not client.ordering(first).fell_back)
        new_id = reg.register(
            Path(reg.deployment("primary").model_uri), {"task": "serving-test", "env": "local", "approved": True}
        )
        reg.deploy("primary", new_id, "a newer model, deployed by hand")
        time.sleep(1.2)  # the worker checks the record every second
        second = client.request(user, "reload", candidates(served, user))
        wait_until(
            lambda: (
                client.ordering(second).result is not None
                and client.ordering(second).result.request_id == second.request_id
            )
        )
        assert client.ordering(second).result.model_id == new_id
        assert worker.handler.model.model_id == new_id
    reg.deploy("primary", served.model_id, "back to the first model")


def test_health_and_metrics_endpoints(served: ServedMarket) -> None:
    import urllib.request

    from app.local.services import free_port
    from app.serving.observability import serve_http

    with running_worker(served, "primary") as worker:
        port = free_port()
        server = serve_http(port, worker.metrics, worker.healthy)
        try:
            client = served.client()
            user = served.users_in("primary", 1)[0]
            req = client.request(user, "metrics", candidates(served, user))
            wait_until(lambda: not client.ordering(req).fell_back)
            assert urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz").read() == b"ok\n"
            text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()
        finally:
            server.shutdown()
    for name in (
        "rerank_requests_total",
        "rerank_batch_size_bucket",
        "rerank_latency_seconds_bucket",
        "rerank_errors_total",
        "rerank_backlog",
        "rerank_model_info",
    ):
        assert name in text, name
    assert f'model_id="{served.model_id}"' in text


def test_prediction_sink_lands_records_in_the_offline_store(served: ServedMarket, tmp_path: Path) -> None:
    import threading

    from app.serving.sink import PREDICTIONS_TABLE, run_sink

    client = served.client()
    users = served.users_in("primary", 5)
    with running_worker(served, "primary"):
        reqs = [client.request(u, "sink", candidates(served, u)) for u in users]
        wait_until(lambda: all(not client.ordering(r).fell_back for r in reqs))
    stop = threading.Event()
    sub = clients.subscriber(served.state.pubsub_host)
    path = sub.subscription_path(served.settings.gcp.project, Names.of(served.settings).predictions_subscription)
    landed: list[int] = []
    t = threading.Thread(target=lambda: landed.append(run_sink(sub, path, tmp_path, stop)))
    t.start()
    try:
        wait_until(lambda: len(list((tmp_path / PREDICTIONS_TABLE).glob("*/*.parquet"))) > 0, timeout=20)
    finally:
        stop.set()
        t.join(timeout=10)
    table = pq.read_table(tmp_path / PREDICTIONS_TABLE)
    assert set(table.column("request_id").to_pylist()) == {r.request_id for r in reqs}
    scores = table.column("scores").to_pylist()[0]
    assert len(scores) == len(reqs[0].candidate_ids) and np.all(np.isfinite(scores))


def test_streaming_pull_mode_serves_too(served: ServedMarket) -> None:
    """The cloud's pull mode, on a subscription of its own (the emulator keeps dead streams; see unary_pull.py)."""
    import uuid

    client = served.client()
    sub = clients.subscriber(served.state.pubsub_host)
    path = sub.subscription_path(served.settings.gcp.project, f"streaming-{uuid.uuid4().hex[:8]}")
    sub.create_subscription(request={"name": path, "topic": client.topic, "filter": 'attributes.arm = "primary"'})
    sub.close()
    users = served.users_in("primary", 6)
    with running_worker(served, "primary", subscription=path, pull_mode="streaming") as worker:
        reqs = [client.request(u, "streaming", candidates(served, u)) for u in users]
        wait_until(lambda: all(not client.ordering(r).fell_back for r in reqs), what="streaming-pull results")
    assert worker.cfg.pull_mode == "streaming"


class _MetadataServer:
    """Stands in for GKE's metadata server: hands out an ID token and records who asked for what."""

    def __init__(self) -> None:
        import http.server
        import threading
        import urllib.parse

        requests: list[tuple[str, dict[str, list[str]]]] = []
        self.requests = requests

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urllib.parse.urlparse(self.path)
                requests.append((self.headers.get("Metadata-Flavor", ""), urllib.parse.parse_qs(url.query)))
                body = b"eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwMTIzNDU2Nzg5MDEifQ.c2ln"
                self.send_response(200 if self.headers.get("Metadata-Flavor") == "Google" else 403)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/identity"

    def close(self) -> None:
        self.server.shutdown()


def test_a_pod_worker_serves_with_endpoints_from_its_environment(
    served: ServedMarket, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the worker Deployment runs (``rerank serve --endpoints env``): Pub/Sub through the
    client's defaults, Redis by URL, the registry by path, and DynamoDB with credentials from
    exchanging a Google ID token for the results-writer role (STS on moto), no AWS key."""
    from app.serving.aws_federation import FederationError
    from app.serving.endpoints import CloudEndpoints

    metadata = _MetadataServer()
    # moto keeps each account's tables apart; the local table lives in its default account.
    role = "arn:aws:iam::123456789012:role/rerank-local-results-writer"
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", served.state.pubsub_host)
    monkeypatch.setenv("AWS_ENDPOINT_URL", served.state.dynamodb_url)
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    endpoints = CloudEndpoints.from_env(
        {
            "REDIS_URL": served.state.redis_url,
            "MODEL_REGISTRY": str(registry_dir(served.state)),
            "AWS_ROLE_ARN": role,
            "HOSTNAME": "rerank-local-worker-primary-7f9c",
            "GOOGLE_METADATA_IDENTITY_URL": metadata.url,
        }
    )
    try:
        creds = endpoints.dynamodb(served.settings.aws.region)._request_signer._credentials
        frozen = creds.get_frozen_credentials()
        assert frozen.token and frozen.access_key != "local", "credentials come from STS, not a key"
        client = served.client()
        users = served.users_in("primary", 4)
        with running_worker(served, "primary", endpoints=endpoints):
            reqs = [client.request(u, "pod", candidates(served, u)) for u in users]
            wait_until(lambda: all(not client.ordering(r).fell_back for r in reqs), what="results from the pod worker")
        assert all(client.ordering(r).result.model_id == served.model_id for r in reqs)
        assert metadata.requests and all(flavor == "Google" for flavor, _ in metadata.requests)
        assert all(query["audience"] == [role] for _, query in metadata.requests)
    finally:
        metadata.close()
    with pytest.raises(FederationError, match="no Google ID token from the metadata server"):
        endpoints.dynamodb(served.settings.aws.region)
