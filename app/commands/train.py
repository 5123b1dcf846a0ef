"""`rerank train` (the pipeline locally with kfp.local) and `rerank pipeline compile`."""

from __future__ import annotations

import argparse
import json
import subprocess
from datetime import datetime
from pathlib import Path
from typing import Any

from app.commands.base import RunFailed, UsageError, emit
from app.settings import REPO_ROOT, StackSettings, load_stack


def compile_run(args: argparse.Namespace) -> int:
    from pipelines.training import BUILD_DIR, DEFAULT_IMAGE, PIPELINE_NAME, compile_pipeline

    image = args.image or DEFAULT_IMAGE
    out = compile_pipeline(Path(args.out) if args.out else BUILD_DIR / f"{PIPELINE_NAME}.yaml", image)
    emit(args, {"spec": str(out), "image": image}, lambda: f"wrote {out}")
    return 0


def _json_object(text: str, flag: str) -> dict[str, Any]:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{flag} is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise UsageError(f"{flag} must be a JSON object")
    return doc


def _check(args: argparse.Namespace, settings: StackSettings) -> dict[str, Any]:
    """Refuse bad parameters before anything runs (the components check them again)."""
    from app.featurestore.registry import default_registry
    from app.ranking.features import UnknownFeatureError, check_features
    from app.ranking.model import split_params

    for flag, text in (
        ("--hyperparameters", args.hyperparameters),
        ("--baseline-hyperparameters", args.baseline_hyperparameters),
    ):
        try:
            split_params(_json_object(text, flag))
        except ValueError as exc:
            raise UsageError(f"{flag}: {exc}") from None
    features = [f.strip() for f in args.features.split(",") if f.strip()]
    try:
        check_features(features, default_registry())
    except UnknownFeatureError as exc:
        raise UsageError(str(exc)) from None
    for flag, text in (("--window-start", args.window_start), ("--window-end", args.window_end)):
        if text:
            try:
                if datetime.fromisoformat(text.replace("Z", "+00:00")).tzinfo is None:
                    raise ValueError("no time zone")
            except ValueError as exc:
                raise UsageError(f"{flag} {text!r} is not an RFC 3339 time: {exc}") from None
    if args.variant not in {v.name for v in settings.serving.variants}:
        raise UsageError(
            f"variant {args.variant!r} is not in stack {settings.stack} "
            f"(variants: {', '.join(v.name for v in settings.serving.variants)})"
        )
    return {
        "window_start": args.window_start,
        "window_end": args.window_end,
        "valid_days": args.valid_days,
        "test_days": args.test_days,
        "hyperparameters": args.hyperparameters,
        "baseline_hyperparameters": args.baseline_hyperparameters,
        "features": ",".join(features),
        "min_oracle_ratio": args.min_oracle_ratio,
        "code_version": _code_version(),
    }


def _code_version() -> str:
    out = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return out.stdout.strip() if out.returncode == 0 else "unknown"


def run(args: argparse.Namespace, state_dir: Path) -> int:
    from app.local.session import running_state
    from app.naming import Names
    from pipelines.local_run import TrainingFailed, TrainingRequest, run_training

    settings = load_stack(args.stack)
    if settings.env != "local":
        raise UsageError(
            f"stack {args.stack} trains on Vertex AI (submit pipelines/build/*.yaml); `rerank train` runs a local stack"
        )
    impressions = Path(args.market) / "impressions.parquet"
    if not impressions.is_file():
        raise UsageError(f"{impressions}: no such file (write a market with `rerank market --out {args.market}`)")
    arguments = _check(args, settings)
    state = running_state(args.stack, state_dir)
    if not any(state.offline_dir.glob("*/*/event_date=*/*.parquet")):
        raise RunFailed(
            f"the offline store of stack {args.stack} is empty; "
            f"ingest the market first: rerank ingest --input {Path(args.market) / 'feature-events.pb'}"
        )
    stack_dir = Path(state.dir)
    request = TrainingRequest(
        offline_uri=str(state.offline_dir),
        impressions_uri=str(impressions),
        registry_uri=str(stack_dir / "registry"),
        pipeline_root=str(stack_dir / "pipeline-root"),
        env=settings.env,
        worker_deployment=Names.of(settings).worker_deployment(args.variant),
        variant=args.variant,
        arguments=arguments,
    )
    try:
        result = run_training(request)
    except TrainingFailed as exc:
        raise RunFailed(f"the training pipeline failed: {exc}") from None
    emit(args, result, lambda: _text(result))
    return 0


def _text(r: dict[str, Any]) -> str:
    m = r["metrics"]
    rows = [f"{'':10} {'NDCG@10':>8} {'MAP@10':>8} {'AUC':>7}"]
    for who in ("model", "baseline", "oracle"):
        rows.append(f"{who:10} {m[f'{who}_ndcg_at_10']:8.4f} {m[f'{who}_map_at_10']:8.4f} {m[f'{who}_auc']:7.4f}")
    return "\n".join(
        [
            *rows,
            f"model / oracle NDCG@10: {m['model_vs_oracle_ndcg_at_10']:.3f} over {m['sessions_with_a_match']} test "
            f"sessions with a match",
            f"registered {r['model_id']} ({'approved' if r['approved'] else 'not approved'}); "
            f"{'deployed' if r['deployed'] else 'not deployed'}: {r['deploy_reason']}",
            f"pipeline took {r['seconds']} s",
        ]
    )
