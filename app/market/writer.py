"""Write a simulated market to a folder: what the rest of the system consumes.

- ``feature-events.pb``: every feature event, length-delimited (``rerank ingest --input``);
- ``impressions/<day>.parquet``: each shown pair with its outcomes, exactly the impressions contract
  a core service delivers (docs/specs/impressions.md), one file per day as it would drop them;
- ``oracle.parquet``: the true probabilities keyed by (session_id, candidate_id), apart: only
  evaluation reads it, and only when given (``--oracle``);
- ``users.parquet``: every user's observable and hidden attributes (for replays and checks);
- ``market.json``: the configuration and a summary.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from app.featurestore.events import write_delimited
from app.market.simulate import Market

EVENTS_FILE = "feature-events.pb"
IMPRESSIONS_DIR = "impressions"
ORACLE_FILE = "oracle.parquet"
USERS_FILE = "users.parquet"
SUMMARY_FILE = "market.json"


def summary(market: Market) -> dict[str, Any]:
    imp = market.impressions
    kinds: dict[str, int] = {}
    for entity, version, _, _ in market.events:
        kinds[f"{entity}/{version}"] = kinds.get(f"{entity}/{version}", 0) + 1
    return {
        "users": len(market.population),
        "days": market.config.days,
        "sessions": len(pc.unique(imp.column("session_id"))),
        "impressions": imp.num_rows,
        "viewer_like_rate": round(pc.mean(pc.cast(imp.column("viewer_like"), pa.float64())).as_py(), 4),
        "match_rate": round(pc.mean(pc.cast(imp.column("match"), pa.float64())).as_py(), 4),
        "feature_events": kinds,
        "first_impression": str(pc.min(imp.column("impression_time")).as_py()),
        "last_impression": str(pc.max(imp.column("impression_time")).as_py()),
    }


def write_impressions(market: Market, folder: Path) -> list[Path]:
    """One contract file per market day, named by its date."""
    folder.mkdir(parents=True, exist_ok=True)
    days = market.day_of(market.impressions)
    written = []
    for day in np.unique(days):
        path = folder / f"{(market.config.start + timedelta(days=int(day))).date().isoformat()}.parquet"
        pq.write_table(market.impressions.filter(pa.array(days == day)), path)
        written.append(path)
    return written


def write_market(market: Market, out: Path) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    with open(out / EVENTS_FILE, "wb") as f:
        write_delimited(f, market.events)
    write_impressions(market, out / IMPRESSIONS_DIR)
    pq.write_table(market.oracle, out / ORACLE_FILE)
    pq.write_table(pa.table(market.population.columns()), out / USERS_FILE)
    config = {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in asdict(market.config).items()}
    doc = {"config": config, "summary": summary(market)}
    (out / SUMMARY_FILE).write_text(json.dumps(doc, indent=2) + "\n")
    return doc
