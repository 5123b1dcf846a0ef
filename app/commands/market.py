"""`rerank market --users N --days D --seed S --out DIR`."""

from __future__ import annotations

import argparse
import time

from app.commands.base import UsageError, emit
from app.market.simulate import MarketConfig, simulate
from app.market.writer import write_market
from app.output_paths import output_folder


def run(args: argparse.Namespace) -> int:
    config = MarketConfig(
        users=args.users, days=args.days, seed=args.seed, drift_day=args.drift_day, drift_share=args.drift_share
    )
    try:
        config.check()
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    target = output_folder("--out", args.out, force=args.force)
    out = target.path
    t = time.perf_counter()
    with target.staged() as folder:
        doc = write_market(simulate(config), folder)
    doc["seconds"] = round(time.perf_counter() - t, 1)
    doc["out"] = str(out)
    s = doc["summary"]
    emit(
        args,
        doc,
        lambda: (
            f"wrote {out}: {s['users']} users, {s['days']} days, {s['impressions']} impressions in {s['sessions']} "
            f"sessions (match rate {s['match_rate']:.1%}), {sum(s['feature_events'].values())} feature events "
            f"in {doc['seconds']} s\nnext: rerank ingest --input {out / 'feature-events.pb'}"
        ),
    )
    return 0
