"""`rerank train` (the pipeline locally with kfp.local) and `rerank pipeline compile`."""

from __future__ import annotations

import argparse
import json
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from app.commands.base import RunFailed, UsageError, emit, one_line
from app.echo import shown
from app.output_paths import output_file
from app.settings import REPO_ROOT, StackSettings, load_stack


def compile_run(args: argparse.Namespace) -> int:
    from pipelines.training import BUILD_DIR, DEFAULT_IMAGE, PIPELINE_NAME, compile_pipeline

    image = args.image or DEFAULT_IMAGE
    # The stack's ladder is compiled in: one branch per machine the train and evaluate steps may get.
    resources = load_stack(args.stack).training.resources
    # The default build file is this command's own output, replaced on every compile.
    spec = output_file("--out", args.out or BUILD_DIR / f"{PIPELINE_NAME}.yaml", force=args.force or not args.out)
    with spec.staged() as staged:
        compile_pipeline(staged, image, resources)
    out = spec.path
    emit(args, {"spec": str(out), "image": image, "stack": args.stack}, lambda: f"wrote {out} (stack {args.stack})")
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
        params = _json_object(text, flag)
        try:
            split_params(params)
        except ValueError as exc:
            raise UsageError(f"{flag}: {exc}") from None
        problems = hyperparameter_problems(params)
        if problems:
            raise UsageError(f"{flag}: {'; '.join(problems)}")
    for flag, days in (("--valid-days", args.valid_days), ("--test-days", args.test_days)):
        if not 1 <= days <= MAX_DAYS:
            raise UsageError(f"{flag} {days}: must be a whole number of days from 1 to {MAX_DAYS}")
    given = stack["features"] if args.features is None else args.features
    features = [f.strip() for f in given.split(",") if f.strip()]
    try:
        check_features(features, default_registry(), model_entities(settings))
    except UnknownFeatureError as exc:
        raise UsageError(str(exc)) from None
    start, end = _window_time("--window-start", args.window_start), _window_time("--window-end", args.window_end)
    if start and end and start >= end:
        raise UsageError(f"--window-start {args.window_start} is not before --window-end {args.window_end}")
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


# LightGBM's parameters the stack and --hyperparameters may set: (type, lowest, highest).
PARAMETER_RANGES: dict[str, tuple[type, float, float]] = {
    "num_leaves": (int, 2, 131_072),
    "learning_rate": (float, 1e-6, 1.0),
    "num_boost_round": (int, 1, 100_000),
    "min_data_in_leaf": (int, 1, 10_000_000),
    "feature_fraction": (float, 1e-6, 1.0),
    "early_stopping_rounds": (int, 1, 100_000),
}
MAX_DAYS = 3650


def hyperparameter_problems(params: dict[str, Any]) -> list[str]:
    """What LightGBM would refuse only once the pipeline runs: a value of the wrong kind or range."""
    problems = []
    for key, value in params.items():
        if key not in PARAMETER_RANGES:
            continue  # split_params names unknown keys
        kind, low, high = PARAMETER_RANGES[key]
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not number or (kind is int and value != int(value)) or not low <= value <= high:
            what = "a whole number" if kind is int else "a number"
            problems.append(f"{key} must be {what} from {low:g} to {high:g}, got {shown(value)}")
    return problems


def _window_time(flag: str, text: str) -> datetime | None:
    if not text:
        return None
    try:
        at = datetime.fromisoformat(text.replace("Z", "+00:00"))
        if at.tzinfo is None:
            raise ValueError("no time zone")
        return at.astimezone(UTC)
    except (ValueError, OverflowError) as exc:
        raise UsageError(f"{flag} {shown(text)} is not an RFC 3339 time: {exc}") from None


def check_impressions(impressions: Path, start: datetime | None, end: datetime | None, held_out_days: int) -> None:
    """Refuse, before the pipeline runs, impressions the pipeline would fail on: a file off the
    contract (its schema), no positive label in the window (a model of all-negative data has no
    figures: every AUC is undefined), or too few days for ``held_out_days`` of validation and test
    plus one of training. Reads the schemas and the label and time columns, a batch at a time."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from app.ranking.dataset import LABEL
    from app.ranking.impressions import ImpressionsError, check_schema, impression_files

    rows, positive, first, last = 0, False, None, None
    try:
        for f in impression_files(impressions):
            check_schema(pq.read_schema(f), str(f))
            for batch in pq.ParquetFile(f).iter_batches(columns=[LABEL, "impression_time"], batch_size=65_536):
                label, at = batch.column(0), pc.cast(batch.column(1), pa.timestamp("us", "UTC"))
                keep = pc.and_(pc.is_valid(label), pc.is_valid(at))
                if start is not None:
                    keep = pc.and_(keep, pc.greater_equal(at, pa.scalar(start, at.type)))
                if end is not None:
                    keep = pc.and_(keep, pc.less(at, pa.scalar(end, at.type)))
                kept = pc.filter(at, keep)
                if len(kept):
                    rows += len(kept)
                    lo, hi = pc.min(kept).as_py(), pc.max(kept).as_py()
                    first, last = min(first or lo, lo), max(last or hi, hi)
                    positive = positive or bool(pc.any(pc.filter(label, keep)).as_py())
    except ImpressionsError as exc:
        raise UsageError(str(exc)) from None
    except (OSError, pa.ArrowException) as exc:
        raise UsageError(f"{impressions}: not readable impressions: {one_line(exc, 200)}") from None
    window = f" in [{start or '...'}, {end or '...'})" if start or end else ""
    if not positive:
        raise UsageError(
            f"{impressions}: none of the {rows} impressions{window} has {LABEL}=true; "
            "a model needs positive outcomes to learn from"
        )
    days = (last.date() - first.date()).days + 1  # type: ignore[union-attr]
    if days <= held_out_days:
        raise UsageError(
            f"{impressions}: {days} day(s) of impressions{window} leave no training day after "
            f"{held_out_days} valid and test day(s) (--valid-days, --test-days)"
        )


def _oracle(path: str, min_ratio: float) -> str:
    if min_ratio and not path:
        raise UsageError("--min-oracle-ratio needs --oracle FILE (the simulator's true probabilities)")
    if path and not Path(path).is_file():
        raise UsageError(f"--oracle {path}: no such file")
    return str(Path(path).resolve()) if path else ""


def impressions_path(args: argparse.Namespace) -> Path:
    """``--impressions PATH`` as given, or the ``impressions/`` folder of ``--market DIR``."""
    from app.market.writer import IMPRESSIONS_DIR

    given = args.impressions if args.impressions is not None else args.market
    if not given:
        raise UsageError("--impressions or --market needs a path")
    path = Path(given) if args.impressions is not None else Path(given) / IMPRESSIONS_DIR
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
    check_impressions(
        impressions,
        _window_time("--window-start", args.window_start),
        _window_time("--window-end", args.window_end),
        args.valid_days + args.test_days,
    )
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
        resources=settings.training.resources,
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
