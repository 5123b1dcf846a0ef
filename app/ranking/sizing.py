"""How big a machine the train and evaluate steps need, from the dataset step's figures.

Training builds LightGBM's binned dataset from the shards (one byte per feature value) plus a few
float arrays per row (label, gradient, hessian, score); evaluation keeps a few numbers per test row
(labels, session codes, each model's score) and scores in batches. So a step's memory is a base (the
interpreter, libraries, one batch) plus a per-row cost, and ``HEADROOM`` covers what the model of it
misses (the bench, ``rerank bench training``, measures the real peaks against it). Each step gets
the smallest machine of the stack's ladder (``training.resources``) that holds its need; past the
largest allowed, ``SizingError`` says in one line what to change.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.settings import MachineConfig, TrainingResourcesConfig

GB = 1024**3
BASE_BYTES = 1 * GB
HEADROOM = 2.0
TRAIN_ROW_BYTES = 24  # label, gradient, hessian (float32) and the score (float64), per row
EVALUATE_ROW_BYTES = 64  # label, session code and three models' scores, with the sort the metrics need


class SizingError(ValueError):
    """The data is bigger than the stack lets a step have; the message is one line."""


@dataclass(frozen=True)
class StepSize:
    step: str
    need_gb: float
    machine: MachineConfig

    @property
    def cpu(self) -> str:
        return str(self.machine.cpu)

    @property
    def memory(self) -> str:
        return f"{self.machine.memory_gb}G"


def train_rows(split: dict[str, Any], sampling: float) -> int:
    """The rows training keeps: every positive and ``sampling`` of the negatives."""
    rows, positives = int(split["rows"]), int(split.get("positives", 0))
    return positives + round(sampling * (rows - positives))


def need_gb(step: str, rows: int, columns: int) -> float:
    per_row = columns + TRAIN_ROW_BYTES if step in ("train", "baseline") else EVALUATE_ROW_BYTES
    return (BASE_BYTES + HEADROOM * rows * per_row) / GB


def allowed_machines(resources: TrainingResourcesConfig) -> list[MachineConfig]:
    """The rungs of the ladder a step may get, smallest first."""
    return [m for m in resources.ladder if m.memory_gb <= resources.max_memory_gb]


def machine_for(step: str, rows: int, columns: int, resources: TrainingResourcesConfig) -> StepSize:
    need = need_gb(step, rows, columns)
    allowed = allowed_machines(resources)
    for machine in allowed:
        if machine.memory_gb >= need:
            return StepSize(step, need, machine)
    largest = allowed[-1].memory_gb
    raise SizingError(
        f"the {step} step needs about {need:,.0f} GB for {rows:,} rows x {columns} columns, more than the "
        f"{largest} GB of the largest machine training.resources allows: {REMEDIES[step]}, or allow a larger "
        "machine (training.resources.ladder, max_memory_gb)"
    )


# What shrinks each step's rows: sampling thins only the pointwise model's training rows; the
# baseline learns from whole sessions of the window; evaluation reads the test days alone.
REMEDIES = {
    "train": "lower training.sampling.negative_rate, shorten the variant's training.window_days",
    "baseline": "shorten the variant's training.window_days (the LambdaRank baseline is never sampled)",
    "evaluate": "evaluate on fewer test days (the pipeline's test_days)",
}


def step_rows(splits: dict[str, dict[str, Any]], sampling: float = 1.0) -> dict[str, int]:
    """The rows each sized step holds, from the dataset step's per-split figures (rows, positives):
    training reads train and valid (the pointwise model the sampled train rows, the LambdaRank
    baseline every row: it learns from whole sessions), evaluation the test split."""
    train, valid, test = splits["train"], splits["valid"], splits["test"]
    return {
        "train": train_rows(train, sampling) + int(valid["rows"]),
        "baseline": int(train["rows"]) + int(valid["rows"]),
        "evaluate": int(test["rows"]),
    }


def size_steps(
    splits: dict[str, dict[str, Any]], resources: TrainingResourcesConfig, sampling: float = 1.0
) -> dict[str, StepSize]:
    """The machine of each sized step (``step_rows``) from the dataset step's per-split figures."""
    columns = int(splits["train"]["columns"])
    return {step: machine_for(step, rows, columns, resources) for step, rows in step_rows(splits, sampling).items()}
