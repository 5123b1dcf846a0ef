"""The experiment readout: per arm, what its sessions got, and each arm against the primary;
for each shadow, how its order agrees with the primary's and how its scores fare on the outcomes.

Which variant is the primary, which are arms and which are shadows comes from the stack
(``serving.variants[].kind``); the figures come from what was served (``app/experiments/sessions.py``).
Intervals are 95%, by the delta method over sessions (``app/experiments/stats.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from app.experiments import sessions as served
from app.experiments.stats import Ratio, difference, order_agreement, ratio, sample_ratio_mismatch
from app.settings import PRIMARY_KIND, SHADOW_KIND, VariantConfig

TOP_K = 10  # what a viewer looks at: the match rate and overlap are over the top k
INTERVAL = "95%, delta method over sessions"


@dataclass(frozen=True)
class ServedData:
    """A readout's three queries over the landed predictions and the impressions (locally or BigQuery)."""

    sessions: Callable[[Sequence[str], datetime, datetime, int], pa.Table]  # arms, start, end, k -> SESSIONS
    agreement: Callable[[str, str, datetime, datetime], pa.Table]  # primary, shadow, start, end -> AGREEMENT
    outcomes: Callable[[str, datetime, datetime], pa.Table]  # variant, start, end -> served.py's OUTCOMES


def local_data(predictions: pa.Table, impressions: pa.Table) -> ServedData:
    from app.trigger.served import served_outcomes

    return ServedData(
        sessions=lambda arms, start, end, k: served.sessions_local(predictions, impressions, arms, start, end, k),
        agreement=lambda p, s, start, end: served.agreement_local(predictions, p, s, start, end),
        outcomes=lambda v, start, end: served_outcomes(predictions, impressions, v, None, start, end),
    )


def bigquery_data(client: Any, project: str, dataset: str, impressions: pa.Table) -> ServedData:
    """The cloud: the same queries on ``<dataset>.predictions`` (not exercised here: the SQL is tested on DuckDB)."""
    from app.serving.sink import PREDICTIONS_TABLE
    from app.trigger.served import served_outcomes_bigquery, staged_impressions

    table = f"`{project}.{dataset}.{PREDICTIONS_TABLE}`"

    def sessions(arms: Sequence[str], start: datetime, end: datetime, k: int) -> pa.Table:
        with staged_impressions(client, project, dataset, impressions, served.IMPRESSION_COLUMNS) as imp:
            return client.query(served.sessions_sql(table, imp, arms, start, end, k)).to_arrow().cast(served.SESSIONS)

    return ServedData(
        sessions=sessions,
        agreement=lambda p, s, start, end: (
            client.query(served.agreement_sql(table, p, s, start, end)).to_arrow().cast(served.AGREEMENT)
        ),
        outcomes=lambda v, start, end: served_outcomes_bigquery(
            client, project, dataset, impressions, v, None, start, end
        ),
    )


def _ratios(rows: pd.DataFrame) -> dict[str, Ratio]:
    return {
        "matches_per_session": ratio(rows["matches"].to_numpy(), np.ones(len(rows))),
        "match_rate_at_k": ratio(rows["matches_top_k"].to_numpy(), rows["shown_top_k"].to_numpy()),
    }


def _figure(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


def _arm(v: VariantConfig, rows: pd.DataFrame, primary: dict[str, Ratio] | None) -> dict[str, Any]:
    """One primary or arm variant; ``primary`` is the primary's figures (None for the primary itself
    and when the primary had no sessions)."""
    doc: dict[str, Any] = {"kind": v.kind, "traffic_share": v.traffic_share, "sessions": len(rows)}
    if rows.empty:
        return {**doc, "status": "no sessions", "models": []}
    r = _ratios(rows)
    doc.update(
        status="ok",
        models=sorted({m for m in rows["model_id"] if m}),
        matches_per_session=_figure(r["matches_per_session"].value),
        match_rate_at_k=_figure(r["match_rate_at_k"].value),
        fallback_rate=float(rows["fell_back"].mean()),
    )
    if v.kind != PRIMARY_KIND:
        doc["vs_primary"] = None if primary is None else {name: difference(r[name], primary[name]) for name in r}
    return doc


def _offline(outcomes: pa.Table, requests: set[str] | None = None) -> dict[str, Any]:
    """NDCG@10, AUC and calibration gap of a variant's scores against the outcomes of the candidates
    shown. The top of the list was chosen by the variant that served it, so this favours that
    variant: compare a shadow with the primary on the same requests
    (``offline_on_requests_the_primary_scored``). Served scores are probabilities already corrected
    for the model's negative sampling (the worker's ``CalibratedModel``), so the gap is comparable
    between a sampled and an unsampled model."""
    from app.ranking.metrics import classification, ndcg_at_k

    df = outcomes.to_pandas()
    if requests is not None:
        df = df[df["request_id"].isin(requests)]
    if df.empty:
        return {"requests": 0, "ndcg_at_10": None, "auc": None, "calibration_gap": None}
    groups = pd.factorize(df["request_id"])[0]
    labels = df["match"].to_numpy(dtype=bool)
    ndcg, _ = ndcg_at_k(groups, df["score"].to_numpy(), labels, k=10)
    figures = classification(labels, df["score"].to_numpy())
    auc = figures["auc"] if 0 < labels.sum() < len(labels) else None
    return {
        "requests": int(df["request_id"].nunique()),
        "ndcg_at_10": _figure(ndcg),
        "auc": auc,
        "calibration_gap": _figure(figures["calibration_gap"]),
    }


def _shadow(data: ServedData, primary: str, shadow: str, start: datetime, end: datetime, k: int) -> dict[str, Any]:
    pairs = data.agreement(primary, shadow, start, end).to_pylist()
    scored = [
        order_agreement(p["primary_ids"], p["primary_scores"], p["shadow_ids"], p["shadow_scores"], k) for p in pairs
    ]
    figures = np.array([s for s in scored if s is not None], dtype=np.float64).reshape(-1, 3)
    agreement = {
        "requests": len(figures),
        f"overlap_at_{k}": _figure(np.nanmean(figures[:, 0])) if len(figures) else None,
        "kendall_tau": _figure(np.nanmean(figures[:, 1])) if len(figures) else None,
        "spearman": _figure(np.nanmean(figures[:, 2])) if len(figures) else None,
    }
    mine = data.outcomes(shadow, start, end)
    both = set(mine.column("request_id").to_pylist()) & {p["request_id"] for p in pairs}
    return {
        "agreement_with_primary": agreement,
        "offline": _offline(mine),
        "offline_on_requests_the_primary_scored": {
            SHADOW_KIND: _offline(mine, both),
            PRIMARY_KIND: _offline(data.outcomes(primary, start, end), both),
        },
    }


def readout(
    variants: Sequence[VariantConfig], data: ServedData, start: datetime, end: datetime, top_k: int = TOP_K
) -> dict[str, Any]:
    """The readout of every variant of a stack over sessions shown in [start, end)."""
    primary = next(v for v in variants if v.kind == PRIMARY_KIND)
    arms = [v for v in variants if v.kind != SHADOW_KIND]
    table = data.sessions([v.name for v in arms], start, end, top_k)
    df = table.to_pandas()
    by_arm = {v.name: df[df["arm"] == v.name] for v in arms}
    base = _ratios(by_arm[primary.name]) if len(by_arm[primary.name]) else None
    known = {v.name for v in arms}
    other = df[df["arm"].notna() & ~df["arm"].isin(known)]
    doc: dict[str, Any] = {
        "window": {"since": start.isoformat(), "until": end.isoformat()},
        "top_k": top_k,
        "interval": INTERVAL,
        PRIMARY_KIND: primary.name,
        "sessions": {
            "total": len(df),
            "unattributed": int(df["arm"].isna().sum()),  # neither served nor scored by an arm
            "other_variants": {str(a): int(n) for a, n in other["arm"].value_counts().sort_index().items()},
        },
        "variants": {},
    }
    for v in variants:
        if v.kind == SHADOW_KIND:
            doc["variants"][v.name] = {"kind": v.kind, **_shadow(data, primary.name, v.name, start, end, top_k)}
        else:
            doc["variants"][v.name] = _arm(v, by_arm[v.name], None if v.name == primary.name else base)
    doc["sample_ratio_mismatch"] = sample_ratio_mismatch(
        {name: len(rows) for name, rows in by_arm.items()}, {v.name: v.traffic_share for v in arms}
    )
    return doc
