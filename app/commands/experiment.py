"""`rerank experiment report`: the A/B and shadow readout from what was served.

Landed prediction records (who was scored by which variant and model) joined with the impressions'
outcomes (docs/specs/impressions.md); which variant is the primary, an arm or a shadow comes from
the stack. Locally the records are the local stack's offline store (or ``--offline DIR``); a cloud
stack's are its BigQuery dataset (``--offline bq://PROJECT.DATASET``).
"""

from __future__ import annotations

import argparse
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from app.commands.base import UsageError, emit, google_calls
from app.echo import shown
from app.output_paths import output_file
from app.settings import load_stack

if TYPE_CHECKING:
    import pyarrow as pa

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def parse_since(text: str | None) -> datetime:
    """An RFC 3339 time with its zone, or a date (midnight UTC); none: since the beginning."""
    if not text:
        return EPOCH
    try:
        if len(text) == 10:
            return datetime.combine(date.fromisoformat(text), datetime.min.time(), UTC)
        at = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"--since {shown(text)} is not a date (2026-03-01) or an RFC 3339 time") from None
    if at.tzinfo is None:
        raise UsageError(f"--since {shown(text)} has no time zone (add Z or +00:00)")
    try:
        return at.astimezone(UTC)
    except OverflowError:
        raise UsageError(f"--since {shown(text)} is outside the times UTC can represent") from None


def bigquery_dataset(uri: str, flag: str = "--offline") -> tuple[str, str]:
    """``bq://PROJECT.DATASET`` as its two names."""
    project, _, dataset = uri.removeprefix("bq://").partition(".")
    if not project or not dataset:
        raise UsageError(f"{flag} {shown(uri)}: expected bq://PROJECT.DATASET")
    return project, dataset


def _impressions(args: argparse.Namespace) -> pa.Table:
    from app.commands.train import impressions_path
    from app.ranking.impressions import ImpressionsError, read_impressions

    if not (args.impressions or args.market):
        raise UsageError("--impressions PATH or --market DIR is required (the outcomes)")
    try:
        return read_impressions(impressions_path(args)).table
    except ImpressionsError as exc:
        raise UsageError(str(exc)) from None


def run(args: argparse.Namespace, state_dir: Path) -> int:
    from app.experiments.presentation import html_page, text
    from app.experiments.readout import TOP_K, bigquery_data, local_data, readout
    from app.trigger.served import read_predictions

    settings = load_stack(args.stack)
    since = parse_since(args.since)
    top_k = TOP_K if args.top_k is None else args.top_k
    if top_k < 1:
        raise UsageError(f"--top-k must be at least 1, got {top_k}")
    html = output_file("--html", args.html, force=args.force) if args.html else None
    offline = args.offline
    if offline is None:
        if settings.env != "local":
            raise UsageError(f"stack {args.stack} lands predictions in BigQuery: pass --offline bq://PROJECT.DATASET")
        offline = str(state_dir / settings.stack / "offline")
    bigquery = bigquery_dataset(offline) if offline.startswith("bq://") else None
    impressions = _impressions(args)
    if bigquery:
        from google.cloud.bigquery import Client

        project, dataset = bigquery
        with google_calls(offline):
            data = bigquery_data(Client(project=project), project, dataset, impressions)
    else:
        try:
            predictions = read_predictions(Path(offline))
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        if predictions.num_rows == 0:
            raise UsageError(
                f"{offline}: no prediction records landed (workers publish them, `rerank sink` lands them)"
            )
        data = local_data(predictions, impressions)
    # Impressions carry their own times; the end only has to be after the last one.
    until = datetime.now(UTC) + timedelta(days=1)
    with google_calls(offline):
        doc = {"stack": settings.stack, **readout(settings.serving.variants, data, since, until, top_k)}
    doc["window"] = {"since": since.isoformat() if args.since else None}
    if html:
        with html.staged() as page:
            page.write_text(html_page(doc, settings.stack))
        doc["html"] = str(html.path)
    emit(args, doc, lambda: text(doc) + (f"\nreport: {args.html}" if args.html else ""))
    return 0
