"""Small training-data artifacts in both forms the dataset step may write: one Parquet file, or a
folder of ``part-*.parquet`` shards with every session whole inside one shard."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

FEATURES = ["viewer_signal", "candidate_signal", "viewer_noise"]


def sessions_table(sessions: int = 300, per: int = 10, seed: int = 0, base: float = -3.0) -> pa.Table:
    """Rows of ``sessions`` sessions of ``per`` candidates; a match is likelier with more signal."""
    rng = np.random.default_rng(seed)
    n = sessions * per
    a, b, noise = rng.normal(size=n), rng.normal(size=n), rng.normal(size=n)
    p = 1 / (1 + np.exp(-(base + 1.5 * a + 1.0 * b)))
    match = rng.random(n) < p
    like = match | (rng.random(n) < 1 / (1 + np.exp(-(a - 1))))
    sid = np.repeat([f"s{seed}-{i:05d}" for i in range(sessions)], per)
    return pa.table(
        {
            "session_id": sid,
            "candidate_id": [f"c{i}" for i in range(n)],
            "viewer_signal": a,
            "candidate_signal": b,
            "viewer_noise": noise.astype(np.float32),
            "match": match,
            "viewer_like": like,
        }
    )


def write_shards(table: pa.Table, folder: Path, shards: int = 3, row_group: int = 700) -> Path:
    """``table`` as ``shards`` files cut at session boundaries, small row groups so batches cut sessions."""
    folder.mkdir(parents=True, exist_ok=True)
    sid = table.column("session_id").to_numpy(zero_copy_only=False)
    starts = np.r_[0, np.flatnonzero(sid[1:] != sid[:-1]) + 1]
    cuts = [int(starts[len(starts) * i // shards]) for i in range(shards)] + [table.num_rows]
    for i, (lo, hi) in enumerate(itertools.pairwise(cuts)):
        pq.write_table(table.slice(lo, hi - lo), folder / f"part-{i:05d}.parquet", row_group_size=row_group)
    return folder


def write_single(table: pa.Table, path: Path) -> Path:
    pq.write_table(table, path)
    return path
