"""`rerank ingest --input FILE | --subscription [NAME]` on a local stack."""

from __future__ import annotations

import argparse
from pathlib import Path

from app.commands.base import RunFailed, UsageError, emit
from app.echo import shown
from app.featurestore.pipeline import IngestConfigError, IngestSummary, stack_args
from app.local.services import LocalState
from app.local.session import running_state
from app.output_paths import OutputPathError, output_file
from app.settings import StackSettings, load_stack


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


def _check_input(path: str) -> None:
    p = Path(path)
    if p.is_dir():
        raise UsageError(f"--input {path}: is a folder; give one .jsonl or .pb file")
    if not p.is_file():
        raise UsageError(f"--input {path}: no such file")


def _check_subscription(settings: StackSettings, state: LocalState, name: str) -> None:
    """A streaming ingest of a subscription that is not there would pull nothing forever."""
    from google.api_core import exceptions

    from app.local import clients
    from app.naming import Names

    project = settings.gcp.project
    sub = name or Names.of(settings).feature_ingest_subscription
    path = sub if sub.startswith("projects/") else f"projects/{project}/subscriptions/{sub}"
    client = clients.subscriber(state.pubsub_host)
    try:
        client.get_subscription(subscription=path, timeout=10)
    except exceptions.NotFound:
        raise UsageError(f"--subscription {shown(sub)}: no such subscription in stack {settings.stack}") from None
    except exceptions.InvalidArgument as exc:
        raise UsageError(f"--subscription {shown(sub)}: {exc.message}") from None
    except exceptions.GoogleAPIError as exc:
        raise RunFailed(f"the Pub/Sub emulator did not answer for {path}: {exc}") from None
    finally:
        client.close()


def run(args: argparse.Namespace, state_dir: Path) -> int:
    from app.featurestore.pipeline import DeadLettersNotPlaced

    settings = load_stack(args.stack)
    if settings.env != "local":
        raise UsageError(f"stack {args.stack} runs ingest on Dataflow (the flex template); locally use a local stack")
    if args.input is not None:
        _check_input(args.input)
        dead_letter = args.dead_letter or f"{args.input}.dead-letter.jsonl"
        try:  # before anything runs; run_bounded checks it again
            output_file("--dead-letter", dead_letter, force=args.force, inputs=[args.input])
        except OutputPathError as exc:
            raise UsageError(str(exc)) from None
    elif args.dead_letter:
        raise UsageError("--dead-letter is for --input runs; a streaming ingest dead-letters to the stack's topic")
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
                "--dead_letter_path",
                dead_letter,
                *stack_args(settings),
            ]
            summary = run_bounded(argv, force=args.force)
        else:
            from app.featurestore.local_stream import stream_local

            _check_subscription(settings, state, args.subscription)
            summary = stream_local(settings, state, args.subscription, args.idle_exit)
    except IngestConfigError as exc:
        raise UsageError(str(exc)) from None
    except DeadLettersNotPlaced as exc:
        raise RunFailed(str(exc)) from None
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
