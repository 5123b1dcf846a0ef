"""The streaming ingest on a local stack: Beam's DirectRunner on the emulator's ingest
subscription, stopped once no event arrived for a while (``rerank ingest --subscription`` and
the demo run it)."""

from __future__ import annotations

import os
import time

from app.featurestore.pipeline import IngestSummary, stack_args
from app.featurestore.progress import Progress
from app.local.services import LocalState
from app.naming import Names
from app.settings import StackSettings

POLL_S = 0.5


def stream_until_idle(argv: list[str], idle_exit: float | None) -> IngestSummary:
    """Run the streaming job; stop once nothing new was processed for ``idle_exit`` seconds and no
    accepted event is still in the store step (the DirectRunner acked it on pull: ``stop_streaming``)."""
    from app.featurestore.pipeline import run_streaming, stop_streaming, summary_of

    result, run_id = run_streaming(argv)
    seen, last_change = (-1, -1), time.monotonic()
    progress = Progress("ingest", unit="events")
    try:
        while True:
            try:
                time.sleep(POLL_S)
            except KeyboardInterrupt:
                break  # Ctrl-C ends a long-running local ingest; the summary still prints
            summary = summary_of(run_id)
            count = summary.accepted + summary.rejected_total
            if (count, summary.stores_settled) != seen:
                seen, last_change = (count, summary.stores_settled), time.monotonic()
                progress.advance(count - progress.done)
            elif (
                idle_exit is not None
                and summary.stores_settled >= summary.accepted
                and time.monotonic() - last_change >= idle_exit
            ):
                break
    finally:
        stop_streaming(result)
        progress.finish()
    return summary_of(run_id)


def streaming_args(settings: StackSettings, state: LocalState, subscription: str) -> list[str]:
    names, project = Names.of(settings), settings.gcp.project
    sub = subscription or names.feature_ingest_subscription
    return [
        "--subscription",
        sub if sub.startswith("projects/") else f"projects/{project}/subscriptions/{sub}",
        "--dead_letter_topic",
        f"projects/{project}/topics/{names.feature_dead_letter_topic}",
        "--redis_url",
        state.redis_url,
        "--offline_path",
        str(state.offline_dir),
        *stack_args(settings),
    ]


def stream_local(
    settings: StackSettings, state: LocalState, subscription: str = "", idle_exit: float | None = None
) -> IngestSummary:
    """The streaming ingest of ``subscription`` (default: the stack's ingest one) on the local stack."""
    # Beam's ReadFromPubSub finds the emulator only through this variable.
    os.environ["PUBSUB_EMULATOR_HOST"] = state.pubsub_host
    return stream_until_idle(streaming_args(settings, state, subscription), idle_exit)
