"""The in-memory training path as it was before issue 17 (git 414bed7), for ``rerank bench training``
only: the baseline the streaming path is measured against, on the same data in the same run.

Every step holds its whole input: the impressions read into one table and validated with pandas,
the point-in-time join's result as one Arrow table, each split written as one Parquet file, float64
feature matrices for training and evaluation. Nothing in the product imports this module.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from app.ranking.impressions import COLUMNS, KEY, check_schema, conform, impression_files


def _mask(array: pa.ChunkedArray | pa.Array) -> np.ndarray:
    return np.asarray(pc.fill_null(array, False).to_numpy(zero_copy_only=False), dtype=bool)


def validate(table: pa.Table) -> tuple[pa.Table, pa.Table]:
    """The old row checks: numpy masks and a pandas duplicate check over the whole table."""
    n = table.num_rows
    reason = np.full(n, "", dtype=object)

    def mark(bad: np.ndarray, why: str) -> None:
        reason[(reason == "") & bad] = why

    for c in COLUMNS:
        if c.required:
            col = table.column(c.name)
            missing = _mask(pc.is_null(col))
            if pa.types.is_string(c.type):
                missing |= _mask(pc.equal(pc.utf8_trim_whitespace(col), ""))
            mark(missing, "missing_value")
    mark(_mask(pc.equal(table.column("viewer_id"), table.column("candidate_id"))), "viewer_is_candidate")
    mark(_mask(pc.less(table.column("position"), 0)), "negative_position")
    mark(_mask(pc.less(table.column("outcome_time"), table.column("impression_time"))), "outcome_before_shown")
    match = _mask(table.column("match"))
    no_like = ~_mask(table.column("viewer_like")) | _mask(pc.invert(table.column("candidate_like")))
    mark(match & no_like, "match_without_both_likes")
    keys = pd.DataFrame({k: table.column(k).to_numpy(zero_copy_only=False) for k in KEY})
    ok = reason == ""
    dupes = np.zeros(n, dtype=bool)
    dupes[np.flatnonzero(ok)] = keys[ok].duplicated(keep="first").to_numpy()
    mark(dupes, "duplicate")
    good = pa.array(reason == "")
    valid = table.filter(good)
    order = pc.sort_indices(valid, sort_keys=[("session_id", "ascending"), ("position", "ascending")])
    rejected = table.filter(pc.invert(good)).append_column("reason", pa.array(reason[reason != ""], pa.string()))
    return valid.take(order), rejected


def read_impressions(uri: str | Path) -> tuple[pa.Table, pa.Table, int]:
    files = impression_files(uri)
    tables = []
    for f in files:
        schema = pq.read_schema(f)
        check_schema(schema, str(f))
        present = [c.name for c in COLUMNS if c.name in schema.names]
        tables.append(conform(pq.read_table(f, columns=present), str(f)))
    valid, rejected = validate(pa.concat_tables(tables))
    return valid, rejected, len(files)


def make_dataset(
    offline_uri: str,
    impressions_uri: str,
    window_days: int,
    valid_days: int,
    test_days: int,
    entities: str,
    out: dict[str, Path],
    rejected_path: Path,
) -> str:
    """The old dataset step: one table of every impression, joined in memory, split, written whole."""
    from app.featurestore.registry import default_registry
    from app.featurestore.stores import offline_store_from_uri
    from app.ranking.dataset import join_features, known_rows, last_days, select_window, split, time_windows
    from app.ranking.features import parse_entities

    registry, views = default_registry(), parse_entities(entities)
    valid_rows, rejected, files = read_impressions(impressions_uri)
    start = last_days(valid_rows, window_days) if window_days else None
    impressions = select_window(valid_rows, start, None)
    windows = time_windows(impressions, valid_days, test_days)
    joined, unknown = known_rows(
        join_features(offline_store_from_uri(offline_uri, registry), impressions, registry, views), registry, views
    )
    set_aside = pa.concat_tables([rejected, unknown.select(rejected.column_names).cast(rejected.schema)])
    pq.write_table(set_aside, rejected_path)
    sizes = {}
    for name, part in split(joined, windows).items():
        pq.write_table(part, out[name])
        sizes[name] = {"rows": part.num_rows, "columns": part.num_columns}
    return json.dumps({**windows.as_dict(), "impression_files": files, "splits": sizes})


def train_model(train: Path, valid: Path, entities: str, objective: str, model: Path) -> dict[str, Any]:
    """The old train step: float64 matrices of every row, LightGBM datasets built from them."""
    from app.featurestore.registry import default_registry
    from app.ranking.dataset import BASELINE_LABEL, GROUP, LABEL, columns
    from app.ranking.features import all_feature_names, feature_matrix, parse_entities
    from app.ranking.model import train_lambdarank, train_pointwise

    registry, views = default_registry(), parse_entities(entities)
    names = all_feature_names(registry, views)
    tr, va = columns(pq.read_table(train)), columns(pq.read_table(valid))
    x, xv = feature_matrix(tr, names), feature_matrix(va, names)
    if objective == "pointwise":
        booster = train_pointwise(x, tr[LABEL], xv, va[LABEL], names, {})
    else:
        booster = train_lambdarank(x, tr[BASELINE_LABEL], tr[GROUP], xv, va[BASELINE_LABEL], va[GROUP], names, {})
    booster.save_model(str(model))
    return {"best_iteration": booster.best_iteration}


def evaluate_models(test: Path, model: Path, baseline: Path) -> dict[str, float]:
    """The old evaluate step: the whole test split as one matrix, every model scored at once."""
    import lightgbm as lgb

    from app.ranking.dataset import LABEL, columns
    from app.ranking.evaluation import evaluate
    from app.ranking.features import feature_matrix

    cols = columns(pq.read_table(test))
    scores = {}
    for who, path in {"model": model, "baseline": baseline}.items():
        booster = lgb.Booster(model_file=str(path))
        scores[who] = booster.predict(feature_matrix(cols, booster.feature_name()))
    figures, _ = evaluate(cols, scores)
    figures["model_calibration_gap"] = float(abs(np.mean(scores["model"]) - np.mean(cols[LABEL])))
    return figures
