"""Component: the train and evaluate steps' machines, from the dataset step's figures."""

from typing import NamedTuple


def size_training(dataset_json: str, resources: str, sampling: float = 1.0) -> NamedTuple(
    "Sizes", [("train_cpu", str), ("train_memory", str), ("evaluate_cpu", str), ("evaluate_memory", str)]
):
    """``resources`` is the stack's ``training.resources`` as JSON ("" for the defaults); past the
    largest machine it allows the run stops here with one line saying what to change."""
    import json
    from collections import namedtuple

    from app.ranking.sizing import size_steps
    from app.settings import TrainingResourcesConfig

    ladder = TrainingResourcesConfig.model_validate_json(resources) if resources else TrainingResourcesConfig()
    sizes = size_steps(json.loads(dataset_json)["splits"], ladder, sampling)
    for s in sizes.values():
        print(f"{s.step}: needs about {s.need_gb:.1f} GB, gets {s.cpu} CPU and {s.memory}", flush=True)
    out = namedtuple("Sizes", ["train_cpu", "train_memory", "evaluate_cpu", "evaluate_memory"])
    return out(sizes["train"].cpu, sizes["train"].memory, sizes["evaluate"].cpu, sizes["evaluate"].memory)
