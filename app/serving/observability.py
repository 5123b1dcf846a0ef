"""Prometheus metrics and the health endpoint of a worker (``/healthz``, ``/metrics``)."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# Log lines the cloud counts: infra/monitoring.py builds log-based metrics (and their alerts) on
# these markers, so a failed write to the results table or a refused AWS credential exchange
# pages someone instead of only retrying. Workers log them once per failure, never per message.
RESULTS_WRITE_FAILED = "event=results_write_failed"
AWS_CREDENTIALS_FAILED = "event=aws_credentials_failed"
# DynamoDB's error codes for throttling (the SDK's own retries already ran out).
THROTTLING_CODES = frozenset({"ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded"})


class WorkerMetrics:
    def __init__(self, variant: str) -> None:
        self.registry = CollectorRegistry()
        labels = {"variant": variant}
        self.requests = Counter(
            "rerank_requests", "Requests handled, by outcome", ["variant", "outcome"], registry=self.registry
        )
        self.batch_size = Histogram(
            "rerank_batch_size",
            "Requests per scored micro-batch",
            ["variant"],
            buckets=(1, 2, 4, 8, 16, 32, 64, 128),
            registry=self.registry,
        ).labels(**labels)
        self.latency = Histogram(
            "rerank_latency_seconds",
            "From requested_at to the result written",
            ["variant"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        ).labels(**labels)
        self.errors = Counter(
            "rerank_errors", "Dependency failures and poison messages", ["variant", "kind"], registry=self.registry
        )
        self.damaged = Counter(
            "rerank_damaged_values",
            "Online-store values not in the documented layout, read as missing",
            ["variant", "entity"],
            registry=self.registry,
        )
        self.backlog = Gauge(
            "rerank_backlog", "Messages received and not yet handled", ["variant"], registry=self.registry
        ).labels(**labels)
        self.model = Gauge(
            "rerank_model_info", "The model being served (value 1)", ["variant", "model_id"], registry=self.registry
        )
        self.variant = variant
        self._model_id: str | None = None

    def outcome(self, outcome: str, n: int = 1) -> None:
        self.requests.labels(variant=self.variant, outcome=outcome).inc(n)

    def error(self, kind: str) -> None:
        self.errors.labels(variant=self.variant, kind=kind).inc()

    def damaged_values(self, entity: str, n: int) -> None:
        self.damaged.labels(variant=self.variant, entity=entity).inc(n)

    def serving(self, model_id: str) -> None:
        if model_id != self._model_id:
            if self._model_id is not None:
                self.model.remove(self.variant, self._model_id)
            self.model.labels(variant=self.variant, model_id=model_id).set(1)
            self._model_id = model_id


def serve_http(port: int, metrics: WorkerMetrics, healthy: Any, host: str = "127.0.0.1") -> ThreadingHTTPServer:
    """Serve /healthz (200 while ``healthy()`` is true, else 503) and /metrics (``host`` 0.0.0.0 in a pod)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/metrics":
                body, status, ctype = generate_latest(metrics.registry), 200, CONTENT_TYPE_LATEST
            elif self.path == "/healthz":
                ok = bool(healthy())
                body, status, ctype = (b"ok\n" if ok else b"unhealthy\n"), (200 if ok else 503), "text/plain"
            else:
                body, status, ctype = b"not found\n", 404, "text/plain"
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:  # keep request logs out of the worker's output
            return

    server = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, name="http", daemon=True).start()
    return server
