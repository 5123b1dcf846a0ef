"""The ``rerank`` command. Each subcommand's work lives in its own module; this file only parses.

Contract: bad input exits 2 with one line on stderr; a failed run exits 1; ``--json`` prints one
JSON object on stdout.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

from app.commands.base import RunFailed, UsageError, one_line
from app.local.services import LocalServiceError
from app.output_paths import OutputPathError
from app.settings import DEFAULT_STACK, REPO_ROOT, StackConfigError


def state_dir(args: argparse.Namespace) -> Path:
    from app.local.services import DEFAULT_STATE_DIR

    return Path(args.state_dir or os.environ.get("RERANK_STATE_DIR") or DEFAULT_STATE_DIR)


def _local(args: argparse.Namespace) -> int:
    from app.commands import local

    return local.run(args, state_dir(args))


def _ingest(args: argparse.Namespace) -> int:
    from app.commands import ingest

    return ingest.run(args, state_dir(args))


def _schema(args: argparse.Namespace) -> int:
    from app.commands import schema

    return schema.run(args)


def _bench(args: argparse.Namespace) -> int:
    from app.commands import bench

    return bench.run(args, state_dir(args))


def _market(args: argparse.Namespace) -> int:
    from app.commands import market

    return market.run(args)


def _train(args: argparse.Namespace) -> int:
    from app.commands import train

    return train.run(args, state_dir(args))


def _pipeline(args: argparse.Namespace) -> int:
    from app.commands import train

    return train.compile_run(args)


def _serve(args: argparse.Namespace) -> int:
    from app.commands import serve

    return serve.run(args, state_dir(args))


def _sink(args: argparse.Namespace) -> int:
    from app.commands import serve

    return serve.sink(args, state_dir(args))


def _drift(args: argparse.Namespace) -> int:
    from app.commands import drift

    return drift.run(args, state_dir(args))


def _demo(args: argparse.Namespace) -> int:
    from app.commands import demo

    return demo.run(args, state_dir(args))


def _models(args: argparse.Namespace) -> int:
    from app.commands import models

    return models.run(args, state_dir(args))


def _experiment(args: argparse.Namespace) -> int:
    from app.commands import experiment

    return experiment.run(args, state_dir(args))


def _infra(args: argparse.Namespace) -> int:
    from app.commands import infra

    return infra.run(args)


def _dlq(args: argparse.Namespace) -> int:
    from app.commands import dlq

    return dlq.run(args, state_dir(args))


def force_flag(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--force", action="store_true", help=f"replace {what} if it exists (default: refuse)")


def endpoints_flag(p: argparse.ArgumentParser, cloud_env: str) -> None:
    p.add_argument(
        "--endpoints",
        choices=["local", "env"],
        default="local",
        help=f"local: the services `rerank local up` started; env: in a pod, from {cloud_env}",
    )


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a bad argument is the contract's one line (argparse prints the usage first)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, one_line(f"{self.prog}: {message} (see {self.prog} --help)") + "\n")


def parser() -> argparse.ArgumentParser:
    top = OneLineParser(prog="rerank", description="rerank-platform: run and operate the re-ranking system")
    sub = top.add_subparsers(dest="command", required=True)

    def command(name: str, fn: Callable[[argparse.Namespace], int], help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.add_argument("--stack", default=DEFAULT_STACK, help="stack name: stacks/Pulumi.<stack>.yaml")
        p.add_argument("--state-dir", default=None, help="where local services keep state (default .rerank/local)")
        p.add_argument("--json", action="store_true", help="print one JSON object")
        p.set_defaults(fn=fn)
        return p

    p = command("local", _local, "start, stop and show the local services and topology")
    p.add_argument("action", choices=["up", "down", "status"])
    p.add_argument("--keep-data", action="store_true", help="down: keep the offline store and dead-letter files")

    p = command("ingest", _ingest, "run the Beam ingest: a file (bounded) or a subscription (streaming)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--input", help="a .jsonl or .pb (length-delimited) file of feature events")
    src.add_argument("--subscription", nargs="?", const="", help="subscription name (default: the stack's ingest one)")
    p.add_argument("--dead-letter", help="bounded runs: file for rejected events (default <input>.dead-letter.jsonl)")
    p.add_argument(
        "--idle-exit",
        type=float,
        default=None,
        help="streaming: stop once no event arrived for this many seconds (default: run until Ctrl-C)",
    )
    force_flag(p, "the dead-letter file")

    p = command("schema", _schema, "regenerate code and docs from the protos, or check compatibility")
    p.add_argument("action", choices=["docs", "check"])
    p.add_argument("--against", help="git ref to compare with (check)")
    p.add_argument("--verify", action="store_true", help="docs: only report stale generated files (exit 1 if any)")
    p.add_argument("--repo", type=Path, default=REPO_ROOT, help="repository holding app/schemas (default: this one)")

    p = command("bench", _bench, "benchmarks that print JSON figures beside a same-run baseline")
    p.add_argument("target", choices=["ingest", "serving", "training", "pit-sql"])
    p.add_argument("--rate", type=float, default=100.0, help="serving: offered requests per second")
    p.add_argument("--seconds", type=float, default=10.0, help="serving: how long to offer that rate")
    p.add_argument("--users", type=int, default=2000, help="users whose events the benchmark ingests (4 each)")
    p.add_argument("--reads", type=int, default=2000, help="100-entity batch reads to time")
    p.add_argument("--impressions", default="1M,3M", help="training, pit-sql: sizes to generate, e.g. 1M,3M,10M")
    p.add_argument("--sampling", type=float, default=None, help="training: share of negatives the train step keeps")
    p.add_argument(
        "--in-memory-max", default="1M", help="training: the largest size the old in-memory path runs at (0: never)"
    )
    p.add_argument(
        "--engine-memory",
        default=None,
        help="training (default 1GB), pit-sql (default 2GB): DuckDB's memory limit (it spills past it)",
    )
    p.add_argument("--work-dir", default=None, help="training, pit-sql: keep generated data here (reused by size)")
    p.add_argument(
        "--steps", default="dataset,train,baseline,evaluate", help="training: the first steps only, e.g. dataset"
    )

    p = command("market", _market, "write a synthetic two-sided market (feature events, impressions, truth)")
    p.add_argument("--users", type=int, default=5000)
    p.add_argument("--days", type=int, default=30)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--out", required=True, help="folder to write (new or empty)")
    p.add_argument("--drift-day", type=int, default=None, help="a new cohort with other preferences joins this day")
    p.add_argument("--drift-share", type=float, default=0.3, help="share of users in the drift cohort")
    force_flag(p, "the files of the same names in --out")

    p = command("pipeline", _pipeline, "compile the training pipeline for Vertex AI")
    p.add_argument("action", choices=["compile"])
    p.add_argument("--image", default=None, help="container image the steps run in (default: a placeholder path)")
    p.add_argument("--out", default=None, help="spec file (default pipelines/build/rerank-training.yaml)")
    force_flag(p, "--out (the default build file is always replaced)")

    p = command("train", _train, "run the training pipeline locally (kfp.local) on the local stack")
    data = p.add_mutually_exclusive_group(required=True)
    data.add_argument("--impressions", help="contract impressions: a Parquet file or a folder of them")
    data.add_argument("--market", help="folder written by `rerank market` (its impressions/)")
    p.add_argument("--oracle", default="", help="simulations only: true probabilities (oracle.parquet) for figures")
    p.add_argument("--variant", default=None, help="variant the deploy step updates (default: the stack's primary)")
    p.add_argument("--hyperparameters", default=None, help="LightGBM parameters, JSON (default: the variant's)")
    p.add_argument("--baseline-hyperparameters", default="{}", help="LambdaRank parameters, JSON")
    p.add_argument("--features", default=None, help="comma-separated model features (default: the variant's)")
    p.add_argument("--window-start", default="", help="first impression time to use (RFC 3339)")
    p.add_argument("--window-end", default="", help="end of the impressions to use (RFC 3339, exclusive)")
    p.add_argument("--valid-days", type=int, default=4)
    p.add_argument("--test-days", type=int, default=4)
    p.add_argument(
        "--gate-margin",
        type=float,
        default=None,
        help="NDCG@10 by which a new model must beat the serving one (default: the stack's training.gate.margin)",
    )
    p.add_argument(
        "--min-oracle-ratio",
        type=float,
        default=0.0,
        help="opt-in, needs --oracle: approve only models with at least this share of the oracle's NDCG@10",
    )

    p = command("serve", _serve, "run a re-rank worker of one variant until SIGTERM")
    p.add_argument("--variant", default=None, help="the variant to serve (default: the stack's primary)")
    p.add_argument("--max-batch", type=int, default=32, help="requests scored together")
    p.add_argument("--http-port", type=int, default=0, help="serve /healthz and /metrics on this port")
    p.add_argument("--http-host", default="127.0.0.1", help="address for /healthz and /metrics (0.0.0.0 in a pod)")
    p.add_argument("--naive-scoring", action="store_true", help=argparse.SUPPRESS)  # the benchmark's baseline
    endpoints_flag(p, "REDIS_URL, MODEL_REGISTRY, AWS_ROLE_ARN")

    p = command("sink", _sink, "land prediction records in the offline store until SIGTERM")

    p = command("drift", _drift, "check drift and ground truth; publish a retraining trigger when crossed")
    p.add_argument("action", choices=["check"])
    data = p.add_mutually_exclusive_group()
    data.add_argument("--impressions", help="contract impressions (the outcomes): a Parquet file or folder; local")
    data.add_argument("--market", help="folder written by `rerank market` (its impressions/); local endpoints")
    p.add_argument("--variant", default=None, help="whose deployed model is checked (default: the stack's primary)")
    endpoints_flag(p, "PIPELINE_PARAMETERS, PIPELINE_TEMPLATE")

    p = command("models", _models, "registered models, their evaluations, which variant serves which since when")
    p.add_argument("action", choices=["list", "show"])
    p.add_argument("model_id", nargs="?", help="show: the model's id")
    p.add_argument("--registry", default=None, help="a registry folder (default: the local stack's)")

    p = command("experiment", _experiment, "the A/B and shadow readout from served predictions joined with outcomes")
    p.add_argument("action", choices=["report"])
    data = p.add_mutually_exclusive_group()
    data.add_argument("--impressions", help="contract impressions (the outcomes): a Parquet file or a folder of them")
    data.add_argument("--market", help="folder written by `rerank market` (its impressions/)")
    p.add_argument(
        "--offline",
        default=None,
        help="where prediction records landed: a folder holding predictions/ (default: the local stack's offline "
        "store) or bq://PROJECT.DATASET",
    )
    p.add_argument("--since", default=None, help="only sessions shown at or after this date or RFC 3339 time")
    p.add_argument("--top-k", type=int, default=None, help="the top of the list a viewer looks at (default 10)")
    p.add_argument("--html", default=None, help="also write the readout as an HTML page here")
    force_flag(p, "the --html file")

    p = command("demo", _demo, "the main job: the whole loop on the local stack, with a report")
    p.add_argument("--users", type=int, default=1200)
    p.add_argument("--days", type=int, default=10)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--sessions", type=int, default=400, help="sessions replayed through the workers")
    p.add_argument("--report", default=None, help="HTML report path (default .rerank/local/<stack>/demo/report.html)")
    p.add_argument("--keep", action="store_true", help="leave the local services running afterwards")
    force_flag(p, "the --report file (the default one is always replaced)")

    p = command("dlq", _dlq, "count dead letters by reason, show them, re-publish them to their source topic")
    p.add_argument("action", choices=["list", "show", "replay"])
    p.add_argument("--subscription", default=None, help="one dead-letter subscription (default: every one)")
    p.add_argument("--reason", default=None, help="only letters with this reason, e.g. unknown_user")
    p.add_argument("--since", default=None, help="only letters dead-lettered at or after this RFC 3339 time")
    p.add_argument("--file", default=None, help="a dead-letter file of `rerank ingest --input` instead")
    p.add_argument("--limit", type=int, default=5, help="show: how many letters to print")
    p.add_argument("--out", default=None, help="replay --file: where to write the lines (default FILE.replay.jsonl)")
    force_flag(p, "the --out file")

    p = command(
        "infra",
        _infra,
        "a cloud stack's resource inventory (plan) or monthly estimate (cost), under mocks; "
        "prices refresh: the price table re-read from the billing catalogs",
    )
    p.add_argument("action", choices=["plan", "cost", "prices"])
    p.add_argument("what", nargs="?", choices=["refresh"], help="prices: refresh (the only one)")
    p.add_argument("--region", default=None, help="prices refresh: the GCP region to read (default: the table's)")
    p.add_argument(
        "--keep-unread",
        action="store_true",
        help="prices refresh: keep a price its catalog cannot price as committed (named, one line each) "
        "instead of stopping with nothing written",
    )
    p.add_argument(
        "--diff", metavar="GIT_REF", help="show what this tree adds, removes, alters or costs against GIT_REF"
    )
    return top


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = parser().parse_args(argv)
    except SystemExit as exc:  # --help (0) or a bad argument (2), already printed
        return exc.code if isinstance(exc.code, int) else 2
    try:
        return int(args.fn(args))
    except (UsageError, StackConfigError, OutputPathError) as exc:
        print(one_line(f"rerank {args.command}: {str(exc).replace(chr(10), '; ')}"), file=sys.stderr)
        return 2
    except (RunFailed, LocalServiceError) as exc:
        print(one_line(f"rerank {args.command}: {exc}"), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"rerank {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a defect: still one line (the traceback only when asked for)
        if os.environ.get("RERANK_DEBUG"):
            raise
        print(
            one_line(f"rerank {args.command}: internal error, {type(exc).__name__}: {exc} (RERANK_DEBUG=1 shows it)"),
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
