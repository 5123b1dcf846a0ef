"""`rerank bench ingest`: benchmarks print JSON figures beside a same-run baseline."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from app.commands.base import UsageError
from app.local.session import local_stack
from app.settings import load_stack


def run(args: argparse.Namespace, state_dir: Path) -> int:
    settings = load_stack(args.stack)
    if settings.env != "local":
        raise UsageError("benchmarks run against a local stack")
    if args.users < 10 or args.reads < 10:
        raise UsageError("--users and --reads must be at least 10")
    with local_stack(settings, state_dir) as state:
        if args.target == "ingest":
            from bench import ingest

            figures = ingest.run(settings, state.redis_url, args.users, args.reads)
        else:
            from bench import serving

            figures = serving.run(state, settings, args.rate, args.seconds)
    print(json.dumps(figures, indent=None if args.json else 2))
    return 0
