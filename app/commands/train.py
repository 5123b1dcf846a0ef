"""`rerank train` (the pipeline locally with kfp.local) and `rerank pipeline compile`."""

from __future__ import annotations

import argparse
import json
import subprocess
from datetime import datetime
from pathlib import Path
from typing import Any

from app.commands.base import RunFailed, UsageError, emit
from app.output_paths import output_file
from app.settings import REPO_ROOT, StackSettings, load_stack


def compile_run(args: argparse.Namespace) -> int:
    from pipelines.training import BUILD_DIR, DEFAULT_IMAGE, PIPELINE_NAME, compile_pipeline

    image = args.image or DEFAULT_IMAGE
    # The default build file is this command's own output, replaced on every compile.
    spec = output_file("--out", args.out or BUILD_DIR / f"{PIPELINE_NAME}.yaml", force=args.force or not args.out)
    with spec.staged() as staged:
        compile_pipeline(staged, image)
    out = spec.path
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
    """Refuse bad parameters before anything runs (the components check them again). What a flag
    leaves out comes from the variant's ``training`` in the stack."""
    from app.featurestore.registry import default_registry
    from app.ranking.features import UnknownFeatureError, check_features, model_entities
    from app.ranking.model import split_params
    from app.ranking.variant_training import training_parameters

    if args.variant is not None and args.variant not in {v.name for v in settings.serving.variants}:
        raise UsageError(
            f"variant {args.variant!r} is not in stack {settings.stack} "
            f"(variants: {', '.join(v.name for v in settings.serving.variants)})"
        )
    try:
        stack = training_parameters(settings, args.variant)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    hyperparameters = stack["hyperparameters"] if args.hyperparameters is None else args.hyperparameters
    for flag, text in (
        ("--hyperparameters", hyperparameters),
        ("--baseline-hyperparameters", args.baseline_hyperparameters),
    ):
        try:
            split_params(_json_object(text, flag))
        except ValueError as exc:
            raise UsageError(f"{flag}: {exc}") from None
    given = stack["features"] if args.features is None else args.features
    features = [f.strip() for f in given.split(",") if f.strip()]
    try:
        check_features(features, default_registry(), model_entities(settings))
    except UnknownFeatureError as exc:
        raise UsageError(str(exc)) from None
    for flag, text in (("--window-start", args.window_start), ("--window-end", args.window_end)):
        if text:
            try:
                if datetime.fromisoformat(text.replace("Z", "+00:00")).tzinfo is None:
                    raise ValueError("no time zone")
            except ValueError as exc:
                raise UsageError(f"{flag} {text!r} is not an RFC 3339 time: {exc}") from None
    return {
        **stack,
        "window_start": args.window_start,
        "window_end": args.window_end,
        "valid_days": args.valid_days,
        "test_days": args.test_days,
        "hyperparameters": hyperparameters,
        "baseline_hyperparameters": args.baseline_hyperparameters,
        "features": ",".join(features),
        "gate_margin": settings.training.gate.margin if args.gate_margin is None else args.gate_margin,
        "oracle_uri": _oracle(args.oracle, args.min_oracle_ratio),
        "min_oracle_ratio": args.min_oracle_ratio,
        "code_version": _code_version(),
    }


def _oracle(path: str, min_ratio: float) -> str:
    if min_ratio and not path:
        raise UsageError("--min-oracle-ratio needs --oracle FILE (the simulator's true probabilities)")
    if path and not Path(path).is_file():
        raise UsageError(f"--oracle {path}: no such file")
    return str(Path(path).resolve()) if path else ""


def impressions_path(args: argparse.Namespace) -> Path:
    """``--impressions PATH`` as given, or the ``impressions/`` folder of ``--market DIR``."""
    from app.market.writer import IMPRESSIONS_DIR

    path = Path(args.impressions) if args.impressions else Path(args.market) / IMPRESSIONS_DIR
    if not path.exists():
        hint = f" (write a market with `rerank market --out {args.market}`)" if args.market else ""
        raise UsageError(f"{path}: no such file or folder{hint}")
    return path.resolve()


def _code_version() -> str:
    out = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return out.stdout.strip() if out.returncode == 0 else "unknown"


def run(args: argparse.Namespace, state_dir: Path) -> int:
    from app.local.session import running_state
    from pipelines.local_run import TrainingFailed, TrainingRequest, run_training

    settings = load_stack(args.stack)
    if settings.env != "local":
        raise UsageError(
            f"stack {args.stack} trains on Vertex AI (submit pipelines/build/*.yaml); `rerank train` runs a local stack"
        )
    impressions = impressions_path(args)
    arguments = _check(args, settings)
    state = running_state(args.stack, state_dir)
    if not any(state.offline_dir.glob("*/*/event_date=*/*.parquet")):
        raise RunFailed(
            f"the offline store of stack {args.stack} is empty; "
            "ingest the feature events first: rerank ingest --input FILE"
        )
    stack_dir = Path(state.dir)
    fixed = {k: arguments.pop(k) for k in ("env", "variant", "worker_deployment")}
    request = TrainingRequest(
        offline_uri=str(state.offline_dir),
        impressions_uri=str(impressions),
        registry_uri=str(stack_dir / "registry"),
        pipeline_root=str(stack_dir / "pipeline-root"),
        **fixed,
        arguments=arguments,
    )
    try:
        result = run_training(request)
    except TrainingFailed as exc:
        raise RunFailed(f"the training pipeline failed: {exc}") from None
    emit(args, result, lambda: _text(result))
    return 0


def metrics_table(m: dict[str, Any]) -> list[str]:
    """Who scored what on the test days: the new model, the baseline, the serving model, the oracle."""

    def fig(key: str, width: int) -> str:
        return f"{m[key]:{width}.4f}" if isinstance(m.get(key), (int, float)) else f"{'-':>{width}}"

    rows = [f"{'':10} {'NDCG@10':>8} {'MAP@10':>8} {'AUC':>7}"]
    for who in ("model", "baseline", "serving", "oracle"):
        if f"{who}_ndcg_at_10" in m:
            rows.append(f"{who:10} {fig(f'{who}_ndcg_at_10', 8)} {fig(f'{who}_map_at_10', 8)} {fig(f'{who}_auc', 7)}")

    def signed(key: str) -> str:
        return f"{m[key]:+.4f}" if isinstance(m.get(key), (int, float)) else "?"

    for who in ("baseline", "serving"):
        d = f"model_minus_{who}_ndcg_at_10"
        if d in m:
            rows.append(
                f"model - {who} NDCG@10: {signed(d)} (95% interval over sessions "
                f"[{signed(d + '_ci_low')}, {signed(d + '_ci_high')}])"
            )
    if isinstance(m.get("model_vs_oracle_ndcg_at_10"), (int, float)):
        rows.append(f"model / oracle NDCG@10: {m['model_vs_oracle_ndcg_at_10']:.3f}")
    return rows


def _text(r: dict[str, Any]) -> str:
    m, d = r["metrics"], r["dataset"]
    rejected = ", ".join(f"{n} {k}" for k, n in d["rejected"].items()) or "none"
    return "\n".join(
        [
            f"impressions: {d['impression_files']} file(s), rows set aside: {rejected}",
            *metrics_table(m),
            f"{int(m['sessions_with_a_match'])} test sessions with a match",
            f"registered {r['model_id']} ({'approved' if r['approved'] else 'not approved'}); {r['deploy_reason']}",
            f"pipeline took {r['seconds']} s",
        ]
    )
