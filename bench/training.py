"""``rerank bench training``: the training path at several sizes, each step in a process of its own,
beside the in-memory path it replaced (bench/in_memory_path.py) at the sizes where that fits.

Per size and step: wall time, rows/s and peak RSS (the step's own, from ``wait4``), plus NDCG@10 and
calibration; then the fitted growth of each step's time and memory with rows (the slope of
log(y) against log(rows): 1 is linear, 0 flat). ``rerank bench pit-sql`` runs the BigQuery
point-in-time SQL text (``portable_pit_sql``) on DuckDB at each size, to show it is not quadratic.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from app.featurestore.registry import default_registry
from app.settings import REPO_ROOT
from bench.training_market import generate

STEPS = ("dataset", "train", "baseline", "evaluate")
DAYS, VALID_DAYS, TEST_DAYS = 14, 2, 2
# OpenMP threads (LightGBM) sleep rather than spin while they wait: on a shared machine spinning
# threads fight each other and time says more about the neighbours than about the step.
STEP_ENV = {"OMP_WAIT_POLICY": "PASSIVE"}


class BenchError(RuntimeError):
    pass


def parse_sizes(text: str) -> list[int]:
    """``1M,3M,500k`` -> [1000000, 3000000, 500000]."""
    sizes = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        scale = {"k": 1_000, "m": 1_000_000}.get(part[-1].lower(), 1)
        number = part[:-1] if scale > 1 else part
        try:
            value = float(number) * scale
        except ValueError:
            raise ValueError(f"--impressions {text!r}: {part!r} is not a count like 1M, 300k or 50000") from None
        if value < 10_000:
            raise ValueError(f"--impressions {text!r}: {part!r} is below 10k; the split needs whole days of data")
        sizes.append(int(value))
    if not sizes:
        raise ValueError("--impressions: give at least one size, e.g. 1M,3M")
    return sizes


def run_step(path: str, step: str, args: dict[str, Any]) -> dict[str, Any]:
    """One step in a child process: its JSON result, wall seconds and peak RSS (``wait4``'s, the
    child's own maximum resident set)."""
    spec = json.dumps({"path": path, "step": step, "args": args})
    env = {
        **os.environ,
        **STEP_ENV,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
    }
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        started = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", "bench.training_steps", spec], stdout=out, stderr=err, env=env, cwd=REPO_ROOT
        )
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - started
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if proc.returncode:
        last = (stderr.strip().splitlines() or ["(no output)"])[-1]
        raise BenchError(f"{path} {step} failed: {last}")
    result = json.loads(stdout.strip().splitlines()[-1])
    result["wall_s"] = round(wall, 2)
    result["peak_rss_mb"] = round(usage.ru_maxrss / 1024, 1)  # Linux: kilobytes
    result["rows_per_s"] = round(result["rows"] / wall) if wall > 0 else None
    return result


def slope(rows: list[int], values: list[float]) -> float | None:
    """The exponent b of values ~ rows^b, fitted on a log-log scale (None with fewer than 2 sizes)."""
    pairs = [(r, v) for r, v in zip(rows, values, strict=True) if v and v > 0]
    if len(pairs) < 2:
        return None
    x, y = np.log([p[0] for p in pairs]), np.log([p[1] for p in pairs])
    return round(float(np.polyfit(x, y, 1)[0]), 2)


def _figures(evaluate: dict[str, Any]) -> dict[str, Any]:
    f = evaluate.get("figures", {})
    return {
        "ndcg_at_10": f.get("model_ndcg_at_10"),
        "baseline_ndcg_at_10": f.get("baseline_ndcg_at_10"),
        "calibration_gap": f.get("model_calibration_gap"),
        "log_loss": f.get("model_log_loss"),
        "auc": f.get("model_auc"),
        "test_match_rate": f.get("test_match_rate"),
    }


def _path(
    name: str, data: Path, work: Path, extra: dict[str, Any], steps_run: tuple[str, ...] = STEPS
) -> dict[str, Any]:
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    args = {
        "work": str(work),
        "offline": str(data / "offline"),
        "impressions": str(data / "impressions"),
        "days": DAYS,
        "valid_days": VALID_DAYS,
        "test_days": TEST_DAYS,
        **extra,
    }
    steps = {step: run_step(name, step, args) for step in steps_run}
    out = _summary(steps)
    if name == "streaming":
        out["dataset"] = steps["dataset"]["splits"]
        out["train_learnt_rows"] = steps.get("train", {}).get("learnt_rows")
        out["sizing"] = sizing_check(out["dataset"], extra.get("sampling", 1.0), out["steps"])
    if name == "streaming" and "sampling" in extra and "evaluate" in steps_run:
        # The unsampled model on the same dataset and test days, scored against the same baseline.
        unsampled = {k: v for k, v in args.items() if k != "sampling"} | {"model": "train-unsampled"}
        again = {step: run_step(name, step, unsampled) for step in ("train", "evaluate")}
        out["unsampled"] = _summary(again)
        out["unsampled"]["train_learnt_rows"] = again["train"].get("learnt_rows")
        out["unsampled"]["sizing"] = sizing_check(out["dataset"], 1.0, out["unsampled"]["steps"])
        for key in ("ndcg_at_10", "calibration_gap"):
            a, b = out[key], out["unsampled"][key]
            out[f"{key}_sampled_minus_unsampled"] = round(a - b, 4) if a is not None and b is not None else None
    shutil.rmtree(work, ignore_errors=True)
    return out


def sizing_check(splits: dict[str, Any], sampling: float, steps: dict[str, Any]) -> dict[str, Any]:
    """The memory the sizing rule (app/ranking/sizing.py) predicts for each sized step beside the
    step's measured peak: a prediction below the peak is a rule that would OOM."""
    from app.ranking.sizing import need_gb, step_rows

    rows = step_rows(splits, sampling)
    out = {}
    for step, n in rows.items():
        if step in steps:
            predicted, measured = need_gb(step, n, int(splits["train"]["columns"])), steps[step]["peak_rss_mb"] / 1024
            out[step] = {"predicted_gb": round(predicted, 2), "measured_gb": round(measured, 2), "rows": n}
            out[step]["predicted_over_measured"] = round(predicted / measured, 2)
    return out


def _summary(steps: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {
        "steps": {s: {k: r[k] for k in ("rows", "wall_s", "rows_per_s", "peak_rss_mb")} for s, r in steps.items()},
        "wall_s": round(sum(r["wall_s"] for r in steps.values()), 2),
        "peak_rss_mb": max(r["peak_rss_mb"] for r in steps.values()),
        **_figures(steps.get("evaluate", {})),
    }


def _growth(sizes: list[dict[str, Any]], path: str) -> dict[str, Any]:
    runs = [s for s in sizes if path in s]
    rows = [s["impressions"] for s in runs]
    growth = {}
    for step in STEPS:
        if not all(step in s[path]["steps"] for s in runs):
            continue
        growth[step] = {
            "time_slope": slope(rows, [s[path]["steps"][step]["wall_s"] for s in runs]),
            "memory_slope": slope(rows, [s[path]["steps"][step]["peak_rss_mb"] for s in runs]),
        }
    return growth


def run(
    sizes: list[int],
    sampling: float | None = None,
    in_memory_max: int = 1_000_000,
    memory_limit: str = "1GB",
    work_dir: Path | None = None,
    steps: tuple[str, ...] = STEPS,
) -> dict[str, Any]:
    """``steps``: a prefix of ``STEPS`` (each reads what the one before wrote)."""
    if steps != STEPS[: len(steps)] or not steps:
        raise BenchError(f"--steps must be a prefix of {','.join(STEPS)}, got {','.join(steps)}")
    root = Path(work_dir or tempfile.mkdtemp(prefix="rerank-bench-training-"))
    registry = default_registry()
    out: dict[str, Any] = {
        "benchmark": "training",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "load_1m": os.getloadavg()[0]},
        "step_env": STEP_ENV,
        "days": DAYS,
        "engine_memory_limit": memory_limit,
        "sampling": sampling,
        "steps": list(steps),
        "sizes": [],
    }
    try:
        for n in sizes:
            data = root / f"data-{n}"
            t = time.perf_counter()
            if not (data / "market.json").exists():
                shutil.rmtree(data, ignore_errors=True)
                generate(data, n, registry, days=DAYS)
            market = json.loads((data / "market.json").read_text())
            size: dict[str, Any] = {
                "impressions": market["impressions"],
                "generate_s": round(time.perf_counter() - t, 1),
                "match_rate": market["match_rate"],
            }
            extra = {"memory_limit": memory_limit, **({"sampling": sampling} if sampling is not None else {})}
            size["streaming"] = _path("streaming", data, root / "work-streaming", extra, steps)
            if n <= in_memory_max:
                size["in_memory"] = _path("in_memory", data, root / "work-in-memory", {}, steps)
                a, b = size["streaming"]["ndcg_at_10"], size["in_memory"]["ndcg_at_10"]
                size["ndcg_at_10_streaming_minus_in_memory"] = (
                    round(a - b, 4) if a is not None and b is not None else None
                )
            print(json.dumps({"size_done": size["impressions"]}), file=sys.stderr, flush=True)
            out["sizes"].append(size)
        out["growth"] = {p: _growth(out["sizes"], p) for p in ("streaming", "in_memory")}
        return out
    finally:
        if work_dir is None:
            shutil.rmtree(root, ignore_errors=True)


def run_pit_sql(sizes: list[int], memory_limit: str = "2GB", work_dir: Path | None = None) -> dict[str, Any]:
    """The BigQuery join's text on DuckDB (only identifiers quoted its way) over each size's data."""
    import duckdb

    from app.featurestore.pit import plan_join, portable_pit_sql
    from app.ranking.features import feature_views
    from app.ranking.impressions import COLUMNS, KEY

    root = Path(work_dir or tempfile.mkdtemp(prefix="rerank-bench-pit-"))
    registry = default_registry()
    entities = (("user_profile", "v1"), ("user_activity", "v1"))
    views = feature_views(registry, entities)
    names = [c.name for c in COLUMNS]
    plan = plan_join(views, registry, names)
    out: dict[str, Any] = {"benchmark": "pit-sql", "engine_memory_limit": memory_limit, "sizes": []}
    try:
        for n in sizes:
            data = root / f"data-{n}"
            if not (data / "market.json").exists():
                shutil.rmtree(data, ignore_errors=True)
                generate(data, n, registry, days=DAYS)
            spill = root / "spill"
            spill.mkdir(exist_ok=True)
            con = duckdb.connect()
            con.execute(f"SET memory_limit = '{memory_limit}'; SET temp_directory = '{spill}'; SET TimeZone = 'UTC'")
            con.execute(f"CREATE VIEW imp AS SELECT * FROM read_parquet('{data}/impressions/*.parquet')")
            for e, v in entities:
                glob = data / "offline" / e / v / "event_date=*" / "*.parquet"
                con.execute(f"CREATE VIEW {e}_{v} AS SELECT * FROM read_parquet('{glob}', hive_partitioning = false)")
            sql = portable_pit_sql("imp", lambda e, v: f"{e}_{v}", plan, names, lambda c: f'"{c}"', KEY)
            t = time.perf_counter()
            target = root / "pit.parquet"
            con.execute(f"COPY ({sql}) TO '{target}' (FORMAT PARQUET)")
            wall = time.perf_counter() - t
            rows = con.execute(f"SELECT count(*) FROM read_parquet('{target}')").fetchone()[0]
            con.close()
            target.unlink()
            out["sizes"].append({"impressions": rows, "wall_s": round(wall, 2), "rows_per_s": round(rows / wall)})
        out["time_slope"] = slope([s["impressions"] for s in out["sizes"]], [s["wall_s"] for s in out["sizes"]])
        return out
    finally:
        if work_dir is None:
            shutil.rmtree(root, ignore_errors=True)
