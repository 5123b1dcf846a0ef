"""`rerank dlq list|show|replay [--subscription NAME] [--reason R] [--since T] [--file PATH]`.

On a local stack: the emulator's dead-letter subscriptions (and ``--file``, a bounded ingest's
dead-letter file); on a cloud stack: the same subscriptions in the stack's project, with the
application default credentials. ``replay`` re-publishes the selected letters to their source
topic with their original data and attributes, then acknowledges them; a replayed request is still
subject to newest-wins (app/serving/results.py), so a replay is harmless twice.
"""

from __future__ import annotations

import argparse
from datetime import datetime
from pathlib import Path
from typing import Any

from app.bounds import parse_rfc3339
from app.commands.base import RunFailed, UsageError, emit, google_calls
from app.deadletters import DeadLetterQueue, Letter, by_reason, hand_back, peek, queues, read_file, select
from app.output_paths import output_file
from app.settings import StackSettings, load_stack
from app.topology import build_topology


def _clients(settings: StackSettings, state_dir: Path) -> tuple[Any, Any]:
    if settings.env == "local":
        from app.local import clients
        from app.local.session import running_state

        host = running_state(settings.stack, state_dir).pubsub_host
        return clients.subscriber(host), clients.publisher(host)
    from google.cloud import pubsub_v1

    return pubsub_v1.SubscriberClient(), pubsub_v1.PublisherClient()


def _since(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        return parse_rfc3339(text)
    except ValueError as exc:
        raise UsageError(f"--since {text!r}: {exc} (expected RFC 3339, e.g. 2026-03-01T00:00:00Z)") from None


def _chosen(settings: StackSettings, name: str | None) -> list[DeadLetterQueue]:
    all_queues = queues(build_topology(settings))
    if name is None:
        return all_queues
    chosen = [q for q in all_queues if name in (q.subscription, q.topic)]
    if not chosen:
        known = ", ".join(q.subscription for q in all_queues)
        raise UsageError(
            f"--subscription {name!r} is not a dead-letter subscription of stack {settings.stack} ({known})"
        )
    return chosen


def _file_report(args: argparse.Namespace, since: datetime | None) -> int:
    path = Path(args.file)
    if not path.is_file():
        raise UsageError(f"--file {path}: no such file")
    if args.action == "replay":  # checked before anything is read; never the dead-letter file itself
        out = output_file("--out", args.out or f"{path}.replay.jsonl", force=args.force, inputs=[path])
    elif args.out:
        raise UsageError("--out is for replay --file")
    letters = select(read_file(path), args.reason, since)
    if args.action == "list":
        payload: dict[str, Any] = {"files": {str(path): {"total": len(letters), "by_reason": by_reason(letters)}}}
        emit(args, payload, lambda: _list_text(payload["files"]))
        return 0
    if args.action == "show":
        shown = [x.to_dict() for x in letters[: args.limit]]
        emit(args, {"letters": shown, "total": len(letters)}, lambda: _show_text(shown, len(letters)))
        return 0
    with out.staged() as staged:
        staged.write_bytes(b"".join(x.data.rstrip(b"\n") + b"\n" for x in letters))
    payload = {"replayed": len(letters), "by_reason": by_reason(letters), "file": str(out.path)}
    emit(
        args,
        payload,
        lambda: f"wrote {len(letters)} original lines to {out.path}; ingest them with rerank ingest --input {out.path}",
    )
    return 0


def run(args: argparse.Namespace, state_dir: Path) -> int:
    since = _since(args.since)
    if args.limit < 1:
        raise UsageError(f"--limit {args.limit}: must be at least 1")
    if args.file:
        return _file_report(args, since)
    if args.out:
        raise UsageError("--out is for replay --file (a subscription's letters are re-published, not written)")
    settings = load_stack(args.stack)
    chosen = _chosen(settings, args.subscription)
    with google_calls(f"Pub/Sub of stack {settings.stack}"):
        return _queues_report(args, settings, state_dir, chosen, since)


def _queues_report(
    args: argparse.Namespace,
    settings: StackSettings,
    state_dir: Path,
    chosen: list[DeadLetterQueue],
    since: datetime | None,
) -> int:
    subscriber, publisher = _clients(settings, state_dir)
    project = settings.gcp.project
    report: dict[str, dict[str, Any]] = {}
    shown: list[dict[str, Any]] = []
    total = 0
    try:
        for q in chosen:
            path = subscriber.subscription_path(project, q.subscription)
            letters = peek(subscriber, path, q.subscription)
            picked = select(letters, args.reason, since)
            if args.action == "replay":
                replayed = _replay(publisher, publisher.topic_path(project, q.source_topic), picked)
                if replayed:
                    subscriber.acknowledge(subscription=path, ack_ids=[x.ack_id for x in replayed])
                done = {x.ack_id for x in replayed}
                hand_back(subscriber, path, [x for x in letters if x.ack_id not in done])
                report[q.subscription] = {
                    "replayed": len(replayed),
                    "to": q.source_topic,
                    "by_reason": by_reason(replayed),
                }
                total += len(replayed)
                continue
            hand_back(subscriber, path, letters)
            report[q.subscription] = {"total": len(picked), "by_reason": by_reason(picked)}
            shown += [x.to_dict() for x in picked[: max(0, args.limit - len(shown))]]
            total += len(picked)
    finally:
        subscriber.close()
    if args.action == "list":
        emit(args, {"subscriptions": report, "total": total}, lambda: _list_text(report))
    elif args.action == "show":
        emit(args, {"letters": shown, "total": total}, lambda: _show_text(shown, total))
    else:
        emit(args, {"subscriptions": report, "replayed": total}, lambda: _replay_text(report, total))
    return 0


def _replay(publisher: Any, topic: str, letters: list[Letter]) -> list[Letter]:
    futures = [(x, publisher.publish(topic, x.data, **x.replay_attributes())) for x in letters]
    done: list[Letter] = []
    failed: list[str] = []
    for letter, future in futures:
        try:
            future.result(timeout=30)
            done.append(letter)
        except Exception as exc:  # the letter stays in its queue; say why
            failed.append(f"{letter.message_id}: {exc}")
    if failed and not done:
        raise RunFailed(f"no letter could be re-published to {topic}: {failed[0]}")
    return done


def _list_text(report: dict[str, dict[str, Any]]) -> str:
    lines = []
    for name, r in report.items():
        reasons = ", ".join(f"{k} {v}" for k, v in r["by_reason"].items())
        lines.append(f"{name}: {r['total']}" + (f" ({reasons})" if reasons else ""))
    return "\n".join(lines) or "no dead-letter subscriptions"


def _show_text(shown: list[dict[str, Any]], total: int) -> str:
    lines = [f"{total} dead letter(s); showing {len(shown)}"]
    for x in shown:
        body = x.get("data", x.get("data_base64", ""))
        lines.append(f"- {x['where']} {x['published'] or ''} reason={x['reason']}: {x['detail']}")
        lines.append(f"  attributes {x['attributes']}")
        lines.append(f"  {'data' if 'data' in x else 'data (base64)'} {body[:500]}")
    return "\n".join(lines)


def _replay_text(report: dict[str, dict[str, Any]], total: int) -> str:
    lines = [f"{name}: {r['replayed']} re-published to {r['to']}" for name, r in report.items()]
    return "\n".join([*lines, f"replayed {total}"])
