"""The sizing rule: each step gets the smallest machine of the stack's ladder that holds its data;
past the largest allowed one the run stops with one line saying what to change."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from app.ranking.sizing import SizingError, machine_for, need_gb, size_steps, step_rows
from app.settings import MachineConfig, TrainingResourcesConfig
from pipelines.components.sizing import size_training

LADDER = TrainingResourcesConfig()


def splits(train: int, positives: int = 0, columns: int = 45, test: int | None = None) -> dict:
    return {
        "train": {"rows": train, "columns": columns, "positives": positives},
        "valid": {"rows": train // 10, "columns": columns, "positives": 0},
        "test": {"rows": test if test is not None else train // 10, "columns": columns, "positives": 0},
    }


def test_small_data_gets_the_smallest_machine_and_ten_times_more_a_bigger_one() -> None:
    small = size_steps(splits(1_000_000), LADDER)
    assert small["train"].machine == LADDER.ladder[0] and small["evaluate"].machine == LADDER.ladder[0]
    big = size_steps(splits(300_000_000), LADDER)
    assert big["train"].machine.memory_gb > small["train"].machine.memory_gb
    assert big["train"].memory == f"{big['train'].machine.memory_gb}G" and big["train"].cpu.isdigit()
    assert big["train"].need_gb <= big["train"].machine.memory_gb


def test_sampling_shrinks_what_training_holds_but_not_the_baseline_or_evaluation() -> None:
    full = size_steps(splits(300_000_000, positives=6_000_000), LADDER)
    sampled = size_steps(splits(300_000_000, positives=6_000_000), LADDER, sampling=0.1)
    assert sampled["train"].need_gb < full["train"].need_gb / 4  # validation rows are never sampled
    assert sampled["baseline"] == full["baseline"]  # LambdaRank learns from every row
    assert (full["baseline"].need_gb, full["baseline"].machine) == (full["train"].need_gb, full["train"].machine)
    assert sampled["evaluate"] == full["evaluate"]
    rows = step_rows(splits(1_000, positives=100), sampling=0.5)
    assert rows == {"train": 100 + 450 + 100, "baseline": 1_100, "evaluate": 100}


@pytest.mark.parametrize(
    ("step", "data", "sampling", "says", "not_said"),
    [
        ("train", splits(300_000_000), 1.0, "training.sampling.negative_rate", None),
        ("baseline", splits(300_000_000, positives=6_000_000), 0.05, "never sampled", "negative_rate"),
        ("evaluate", splits(1_000_000, test=300_000_000), 1.0, "test_days", "negative_rate"),
    ],
)
def test_each_step_past_the_largest_machine_names_what_shrinks_it(
    step: str, data: dict, sampling: float, says: str, not_said: str | None
) -> None:
    with pytest.raises(SizingError) as err:
        size_steps(data, TrainingResourcesConfig(max_memory_gb=32), sampling)
    text = str(err.value)
    assert text.startswith(f"the {step} step needs about") and "\n" not in text
    assert says in text and "training.resources.ladder, max_memory_gb" in text
    assert not_said is None or not_said not in text


def test_past_the_largest_allowed_machine_one_line_says_what_to_change() -> None:
    capped = TrainingResourcesConfig(max_memory_gb=32)
    with pytest.raises(SizingError) as err:
        size_steps(splits(300_000_000), capped)
    text = str(err.value)
    assert "\n" not in text and "32 GB of the largest machine" in text
    for remedy in ("training.sampling", "training.window_days", "training.resources"):
        assert remedy in text
    size_steps(splits(300_000_000), LADDER)  # the whole default ladder holds it


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2_000_000_000), st.integers(1, 400), st.integers(1, 3))
def test_more_rows_never_get_a_smaller_machine(rows: int, columns: int, factor: int) -> None:
    def memory(n: int) -> int:
        try:
            return machine_for("train", n, columns, LADDER).machine.memory_gb
        except SizingError:
            return 10**9

    assert memory(rows) <= memory(rows * factor)
    assert need_gb("train", rows, columns) >= need_gb("train", rows // 2, columns)


def test_a_ladder_must_ascend_and_fit_its_max() -> None:
    with pytest.raises(ValidationError, match="smallest first"):
        TrainingResourcesConfig(ladder=[MachineConfig(cpu=8, memory_gb=32), MachineConfig(cpu=4, memory_gb=16)])
    with pytest.raises(ValidationError, match="allows no machine"):
        TrainingResourcesConfig(max_memory_gb=8)


def test_the_sizing_component_names_the_rung_that_holds_both_steps() -> None:
    """Its output picks the pipeline's branch: the memory of the rung, the larger of the two needs."""
    assert size_training(json.dumps({"splits": splits(1_000_000)}), LADDER.model_dump_json()) == "16G"
    # evaluation's need decides when the test days hold more than training does
    wide_test = size_steps(splits(1_000_000, test=300_000_000), LADDER)
    assert wide_test["evaluate"].machine.memory_gb > wide_test["train"].machine.memory_gb
    assert (
        size_training(json.dumps({"splits": splits(1_000_000, test=300_000_000)}), "") == wide_test["evaluate"].memory
    )
    with pytest.raises(SizingError):
        size_training(json.dumps({"splits": splits(10**10)}), "")
