"""`rerank bench ingest|serving|training|pit-sql`: benchmarks print JSON figures beside a same-run baseline."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from app.commands.base import UsageError
from app.local.session import local_stack
from app.settings import load_stack


def run(args: argparse.Namespace, state_dir: Path) -> int:
    if args.target in ("training", "pit-sql"):
        figures = _training(args)
    else:
        figures = _against_local_stack(args, state_dir)
    print(json.dumps(figures, indent=None if args.json else 2))
    return 0


def _training(args: argparse.Namespace) -> dict:
    # No services: the training path reads files (the market it generates, the Parquet offline store).
    from bench import training

    try:
        sizes = training.parse_sizes(args.impressions)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if args.sampling is not None and not 0 < args.sampling <= 1:
        raise UsageError(f"--sampling must be in (0, 1], got {args.sampling}")
    work = Path(args.work_dir) if args.work_dir else None
    # Each runner keeps its own default limit: the windowed join needs twice what one training step does.
    memory = {"memory_limit": args.engine_memory} if args.engine_memory else {}
    if args.target == "pit-sql":
        return training.run_pit_sql(sizes, work_dir=work, **memory)
    try:
        steps = tuple(s.strip() for s in args.steps.split(",") if s.strip())
        in_memory_max = training.parse_sizes(args.in_memory_max)[0] if args.in_memory_max != "0" else 0
        return training.run(sizes, args.sampling, in_memory_max, work_dir=work, steps=steps, **memory)
    except training.BenchError as exc:
        raise UsageError(str(exc)) from None


def _against_local_stack(args: argparse.Namespace, state_dir: Path) -> dict:
    settings = load_stack(args.stack)
    if settings.env != "local":
        raise UsageError("benchmarks run against a local stack")
    if args.users < 10 or args.reads < 10:
        raise UsageError("--users and --reads must be at least 10")
    with local_stack(settings, state_dir) as state:
        if args.target == "ingest":
            from bench import ingest

            return ingest.run(settings, state, args.users, args.reads)
        from bench import serving

        return serving.run(state, settings, args.rate, args.seconds)
