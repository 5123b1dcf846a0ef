"""LightGBM's binned datasets built from a dataset artifact batch by batch, never one dense matrix.

A first pass reads only the label, the row key and the session (what sampling and LambdaRank's
group sizes need); LightGBM then reads the feature rows through a ``lightgbm.Sequence`` twice,
each time forward (its bin sample, in increasing row order, then every row in ``batch_size``
slices), and keeps its own binned copy: about one byte per feature per row (``max_bin`` <= 255),
the model's own data structure. What Python holds at once is one batch of float32 features.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from app.ranking.batches import BATCH_ROWS, batches, run_lengths
from app.ranking.dataset import GROUP, columns
from app.ranking.features import feature_matrix
from app.ranking.impressions import KEY
from app.ranking.sampling import check_rate, keep

if TYPE_CHECKING:
    import lightgbm as lgb

Progress = Callable[[int], None]  # rows just read


@dataclass(frozen=True)
class Scan:
    """What the first pass learns: the kept rows' labels and (for ranking) the sessions' sizes."""

    rows: int
    labels: np.ndarray  # float32, one per kept row
    group_sizes: np.ndarray  # int32, one per session, in row order (empty unless asked for)

    @property
    def positives(self) -> int:
        return int(np.count_nonzero(self.labels))


def _kept(t: pa.Table, label: str, rate: float) -> pa.Table:
    return t if rate == 1.0 else t.filter(pa.array(keep(t, label, rate)))


def scan(path: str | Path, label: str, rate: float = 1.0, groups: bool = False, rows: int = BATCH_ROWS) -> Scan:
    check_rate(rate)
    if groups and rate != 1.0:
        raise ValueError("LambdaRank learns from whole sessions: train it without negative sampling")
    wanted = list(dict.fromkeys([label, *KEY, GROUP]))
    labels: list[np.ndarray] = []
    sizes: list[int] = []
    last = None
    for t in batches(path, wanted, rows):
        t = _kept(t, label, rate)
        labels.append(np.asarray(t.column(label).to_numpy(zero_copy_only=False), dtype=np.float32))
        if groups and t.num_rows:
            runs, first, end = run_lengths(t.column(GROUP))
            if sizes and first == last:  # a session the batch boundary cut
                sizes[-1] += int(runs[0])
                runs = runs[1:]
            sizes.extend(int(r) for r in runs)
            last = end
    y = np.concatenate(labels) if labels else np.empty(0, dtype=np.float32)
    return Scan(len(y), y, np.asarray(sizes, dtype=np.int32))


class FeatureRows:
    """The model's float32 feature rows of the kept rows, as a ``lightgbm.Sequence``: random access
    that is fast when indices only grow (LightGBM's pattern); going back restarts the read."""

    def __init__(
        self,
        path: str | Path,
        names: Sequence[str],
        total: int,
        label: str,
        rate: float = 1.0,
        rows: int = BATCH_ROWS,
        progress: Progress | None = None,
    ) -> None:
        self.path, self.names, self.total, self.label, self.rate = path, list(names), total, label, rate
        self.batch_size, self.progress = rows, progress
        self._blocks: Iterator[np.ndarray] | None = None
        self._lo, self._x = 0, np.empty((0, len(self.names)), dtype=np.float32)
        self._x64: np.ndarray | None = None  # the current batch as doubles, for single-row reads

    def __len__(self) -> int:
        return self.total

    def _read(self) -> Iterator[np.ndarray]:
        for t in batches(self.path, rows=self.batch_size):
            t = _kept(t, self.label, self.rate)
            if t.num_rows:
                yield feature_matrix(columns(t), self.names)
                if self.progress is not None:
                    self.progress(t.num_rows)

    def _cover(self, i: int) -> None:
        if self._blocks is None or i < self._lo:
            self._blocks, self._lo, self._x64 = self._read(), 0, None
            self._x = np.empty((0, len(self.names)), dtype=np.float32)
        while i >= self._lo + len(self._x):
            self._lo += len(self._x)
            try:
                self._x, self._x64 = next(self._blocks), None
            except StopIteration:
                raise IndexError(f"row {i} of {self.total}: {self.path} has fewer rows than its first pass") from None

    def __getitem__(self, idx: int | slice) -> np.ndarray:
        if isinstance(idx, slice):
            start, stop, step = idx.indices(self.total)
            if step != 1:
                raise IndexError("FeatureRows reads contiguous slices only")
            parts = []
            while start < stop:
                self._cover(start)
                end = min(stop, self._lo + len(self._x))
                parts.append(self._x[start - self._lo : end - self._lo])
                start = end
            return parts[0] if len(parts) == 1 else np.concatenate(parts) if parts else self._x[:0]
        i = int(idx)
        if not 0 <= i < self.total:
            raise IndexError(f"row {i} of {self.total}")
        self._cover(i)
        if self._x64 is None:  # single rows are LightGBM's bin sample, which it wants in doubles
            self._x64 = self._x.astype(np.float64)
        return self._x64[i - self._lo]


def binned(
    path: str | Path,
    names: Sequence[str],
    label: str,
    rate: float = 1.0,
    ranking: bool = False,
    reference: lgb.Dataset | None = None,
    init_score: float | None = None,
    rows: int = BATCH_ROWS,
    progress: Progress | None = None,
) -> tuple[lgb.Dataset, Scan]:
    """The LightGBM Dataset of ``path`` (validation: with the training set as ``reference``, so it
    shares its bins), and its first pass. ``init_score`` is a constant raw-score offset per row."""
    import lightgbm as lgb

    s = scan(path, label, rate, ranking, rows)
    if s.rows == 0:
        raise ValueError(f"{path}: no rows to train on")

    class _Seq(FeatureRows, lgb.Sequence):
        pass

    seq = _Seq(path, names, s.rows, label, rate, rows, progress)
    data = lgb.Dataset(
        [seq],
        label=s.labels,
        group=s.group_sizes if ranking else None,
        init_score=None if init_score is None else np.full(s.rows, init_score, dtype=np.float64),
        feature_name=list(names),
        reference=reference,
        free_raw_data=True,
    )
    return data, s
