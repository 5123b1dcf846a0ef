"""`rerank demo`: the whole system on the local stack, end to end, with a summary and an HTML report."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from app.commands.base import RunFailed, UsageError, emit
from app.output_paths import output_file
from app.settings import load_stack


def run(args: argparse.Namespace, state_dir: Path) -> int:
    settings = load_stack(args.stack)
    if settings.env != "local":
        raise UsageError("the demo runs on a local stack")
    if not 100 <= args.users <= 50_000:
        raise UsageError(f"--users must be between 100 and 50000, got {args.users}")
    if not 6 <= args.days <= 60:
        raise UsageError(
            f"--days must be between 6 and 60 (training needs train, valid and test days), got {args.days}"
        )
    if args.sessions < 10:
        raise UsageError(f"--sessions must be at least 10, got {args.sessions}")
    from app.demo.run import DemoOptions, DemoStepFailed, run_demo
    from app.local.services import LocalServiceError
    from app.local.session import local_stack

    def progress(line: str) -> None:
        if not args.json:
            print(f"==> {line}", flush=True)

    opts = DemoOptions(
        users=args.users,
        days=args.days,
        seed=args.seed,
        sessions=args.sessions,
        report=output_file("--report", args.report, force=args.force) if args.report else None,
    )
    progress(f"starting the local stack {settings.stack} (Redis, Pub/Sub emulator, DynamoDB on moto)")
    try:
        with local_stack(settings, state_dir, keep=args.keep) as state:
            summary = run_demo(settings, state, opts, progress)
    except (DemoStepFailed, LocalServiceError) as exc:
        raise RunFailed(str(exc)) from None
    summary["kept_running"] = args.keep
    emit(args, summary, lambda: _text(summary, settings.serving.primary.name))
    return 0


def _indented(block: str) -> list[str]:
    return [f"  {line}" for line in block.splitlines()]


def _text(s: dict[str, Any], primary: str) -> str:
    from app.experiments.presentation import signed_percent, text, with_interval

    m = s["training"][primary]["metrics"]
    lines = ["", f"{'offline (test days)':22} {'NDCG@10':>8} {'MAP@10':>8} {'AUC':>7}"]
    for who in ("model", "baseline", "oracle"):
        lines.append(f"{who:22} {m[f'{who}_ndcg_at_10']:8.4f} {m[f'{who}_map_at_10']:8.4f} {m[f'{who}_auc']:7.4f}")
    lines.append(f"model / oracle NDCG@10 {m['model_vs_oracle_ndcg_at_10']:.3f} (the oracle: the market's own file)")
    for variant, t in s["training"].items():
        lines.append(f"{variant}: {t.get('deploy_reason') or t['reason']}")
    lines += ["", "experiment readout from what was served:", *_indented(text(s["experiment"]))]
    lines.append(f"  (again: {s['experiment']['command']})")
    lines.append(f"each arm against the default order (simulation: expected matches in the top {s['top_k']}):")
    for arm, v in s["ab"].items():
        if v.get("sessions"):
            lines.append(
                f"  {arm:8} {v['sessions']:5} sessions  {v['expected_matches_per_session']:.3f} vs "
                f"{v['default_expected_matches_per_session']:.3f}: "
                f"{with_interval(v['lift'], v['lift_ci_low'], v['lift_ci_high'], signed_percent)}"
            )
    sv = s["serving"]
    lines += [
        f"serving: {sv['sessions']} sessions replayed at {sv['requests_per_s']} requests/s, latency p50 "
        f"{sv['latency_p50_ms']} ms p99 {sv['latency_p99_ms']} ms, fallback {sv['fallback_rate']:.1%}",
        *(
            f"dead letters, {kind.replace('_', ' ')}: {d['total']}"
            + (f" ({', '.join(f'{r} {n}' for r, n in d['by_reason'].items())})" if d["by_reason"] else "")
            for kind, d in s["dead_letters"].items()
        ),
        f"report: {s['report']}",
        f"done in {s['total_s']} s; local services "
        + ("left running (`rerank local down` stops them)" if s["kept_running"] else "stopped"),
    ]
    return "\n".join(lines)
