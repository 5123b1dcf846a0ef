"""`rerank serve --variant NAME` (a worker) and `rerank sink` (predictions into the offline store)."""

from __future__ import annotations

import argparse
import logging
import signal
import socket
import threading
from pathlib import Path

from app.commands.base import UsageError, emit
from app.echo import shown
from app.local.session import running_state
from app.settings import load_stack


def _stop_on_signals(stop: threading.Event) -> None:
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())


def _check_port(host: str, port: int) -> None:
    """Refuse a /healthz port that cannot be served before the worker starts pulling."""
    if not 1 <= port <= 65535:
        raise UsageError(f"--http-port {port}: must be from 1 to 65535 (0: no HTTP server)")
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as http.server binds it
            s.bind((host, port))
    except (OSError, OverflowError, UnicodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise UsageError(f"--http-port {port} on --http-host {shown(host)}: {why}") from None


def run(args: argparse.Namespace, state_dir: Path) -> int:
    from app.serving.endpoints import CloudEndpoints, Endpoints, LocalEndpoints
    from app.serving.observability import serve_http
    from app.serving.runtime import build_worker

    settings = load_stack(args.stack)
    if args.max_batch < 1:
        raise UsageError(f"--max-batch {args.max_batch}: must be at least 1")
    if args.http_port:
        _check_port(args.http_host, args.http_port)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        endpoints: Endpoints = (
            CloudEndpoints.from_env()
            if args.endpoints == "env"
            else LocalEndpoints(running_state(args.stack, state_dir))
        )
        variant = args.variant or settings.serving.primary.name
        worker = build_worker(settings, endpoints, variant, max_batch=args.max_batch)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if args.naive_scoring:
        from app.featurestore.registry import default_registry
        from app.serving.scoring import NaiveScorer

        worker.handler.scorer = NaiveScorer(
            worker.handler.scorer.store, default_registry(), worker.handler.scorer.entities
        )
    _stop_on_signals(worker.stop)
    try:
        server = (
            serve_http(args.http_port, worker.metrics, worker.healthy, host=args.http_host) if args.http_port else None
        )
    except OSError as exc:  # taken since the check above
        raise UsageError(f"--http-port {args.http_port} on {args.http_host}: {exc.strerror or exc}") from None
    worker.run()
    if server:
        server.shutdown()
    return 0


def sink(args: argparse.Namespace, state_dir: Path) -> int:
    from app.local import clients
    from app.naming import Names
    from app.serving.sink import run_sink

    settings = load_stack(args.stack)
    state = running_state(args.stack, state_dir)
    stop = threading.Event()
    _stop_on_signals(stop)
    sub = clients.subscriber(state.pubsub_host)
    path = sub.subscription_path(settings.gcp.project, Names.of(settings).predictions_subscription)
    landed = run_sink(sub, path, state.offline_dir, stop)
    emit(args, {"landed": landed}, lambda: f"landed {landed} prediction records in {state.offline_dir}")
    return 0
