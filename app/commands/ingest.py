"""`rerank ingest --input FILE | --subscription [NAME]` on a local stack."""

from __future__ import annotations

import argparse
from pathlib import Path

from app.commands.base import RunFailed, UsageError, emit
from app.featurestore.pipeline import IngestConfigError, IngestSummary, stack_args
from app.local.session import running_state
from app.settings import load_stack


def _text(summary: IngestSummary) -> str:
    lines = [
        f"accepted {summary.accepted}, rejected {summary.rejected_total}"
        + (f" ({', '.join(f'{k} {v}' for k, v in sorted(summary.rejected.items()))})" if summary.rejected else ""),
        f"online: {summary.online_written} written, {summary.online_stale} stale (a newer event was stored)",
        f"offline: {summary.offline_written} rows",
    ]
    if summary.not_stored:
        lines.append(f"not stored: {summary.not_stored} (a store refused them; dead-lettered, see the reasons)")
    if summary.dead_letter_path:
        lines.append(f"dead letters: {summary.dead_letter_path}")
    return "\n".join(lines)


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
            from app.featurestore.local_stream import stream_local

            summary = stream_local(settings, state, args.subscription, args.idle_exit)
    except IngestConfigError as exc:
        raise UsageError(str(exc)) from None
    emit(args, summary.to_dict(), lambda: _text(summary))
    if summary.not_stored:  # a store refused events: kept as dead letters, but the run did not store them
        where = summary.dead_letter_path or "the feature dead-letter topic"
        raise RunFailed(
            f"{summary.not_stored} accepted events were not stored (a store refused them after retries); "
            f"they are dead letters in {where}: replay them once the store is back (rerank dlq replay)"
        )
    if summary.rejected_total and args.input is not None:
        raise RunFailed(
            f"{summary.rejected_total} of {summary.accepted + summary.rejected_total} events were rejected; "
            f"see {summary.dead_letter_path}"
        )
    return 0
