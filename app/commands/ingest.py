"""`rerank ingest --input FILE | --subscription [NAME]` on a local stack."""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from app.commands.base import RunFailed, UsageError, emit
from app.featurestore.pipeline import IngestConfigError, IngestSummary, stack_args
from app.local.services import LocalState
from app.local.session import running_state
from app.naming import Names
from app.settings import StackSettings, load_stack

POLL_S = 0.5


def _text(summary: IngestSummary) -> str:
    lines = [
        f"accepted {summary.accepted}, rejected {summary.rejected_total}"
        + (f" ({', '.join(f'{k} {v}' for k, v in sorted(summary.rejected.items()))})" if summary.rejected else ""),
        f"online: {summary.online_written} written, {summary.online_stale} stale (a newer event was stored)",
        f"offline: {summary.offline_written} rows",
    ]
    if summary.dead_letter_path:
        lines.append(f"dead letters: {summary.dead_letter_path}")
    return "\n".join(lines)


def stream_until_idle(argv: list[str], idle_exit: float | None) -> IngestSummary:
    """Run the streaming job; stop once nothing new was processed for ``idle_exit`` seconds."""
    from app.featurestore.pipeline import run_streaming, stop_streaming, summary_of

    result, run_id = run_streaming(argv)
    seen, last_change = -1, time.monotonic()
    try:
        while True:
            try:
                time.sleep(POLL_S)
            except KeyboardInterrupt:
                break  # Ctrl-C ends a long-running local ingest; the summary still prints
            summary = summary_of(run_id)
            count = summary.accepted + summary.rejected_total
            if count != seen:
                seen, last_change = count, time.monotonic()
            elif idle_exit is not None and time.monotonic() - last_change >= idle_exit:
                break
    finally:
        stop_streaming(result)
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


def run(args: argparse.Namespace, state_dir: Path) -> int:
    settings = load_stack(args.stack)
    if settings.env != "local":
        raise UsageError(f"stack {args.stack} runs ingest on Dataflow (the flex template); locally use a local stack")
    state = running_state(args.stack, state_dir)
    try:
        if args.input is not None:
            from app.featurestore.pipeline import run_bounded

            argv = [
                "--input",
                args.input,
                "--redis_url",
                state.redis_url,
                "--offline_path",
                str(state.offline_dir),
                *stack_args(settings),
            ]
            if args.dead_letter:
                argv += ["--dead_letter_path", args.dead_letter]
            summary = run_bounded(argv)
        else:
            # Beam's ReadFromPubSub finds the emulator only through this variable.
            os.environ["PUBSUB_EMULATOR_HOST"] = state.pubsub_host
            summary = stream_until_idle(streaming_args(settings, state, args.subscription), args.idle_exit)
    except IngestConfigError as exc:
        raise UsageError(str(exc)) from None
    emit(args, summary.to_dict(), lambda: _text(summary))
    if summary.rejected_total and args.input is not None:
        raise RunFailed(
            f"{summary.rejected_total} of {summary.accepted + summary.rejected_total} events were rejected; "
            f"see {summary.dead_letter_path}"
        )
    return 0
