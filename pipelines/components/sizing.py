"""Component: the machine of the train and evaluate steps, from the dataset step's figures."""


def size_training(dataset_json: str, resources: str, sampling: float = 1.0) -> str:
    """The rung of the ladder (its memory, e.g. "32G": unique along a ladder) that holds both the
    train and the evaluate step's need; the pipeline runs the branch compiled for that rung.
    ``resources`` is the stack's ``training.resources`` as JSON ("" for the defaults); past the
    largest machine it allows the run stops here with one line saying what to change."""
    import json

    from app.ranking.sizing import size_steps
    from app.settings import TrainingResourcesConfig

    ladder = TrainingResourcesConfig.model_validate_json(resources) if resources else TrainingResourcesConfig()
    sizes = size_steps(json.loads(dataset_json)["splits"], ladder, sampling)
    # One machine for the sized steps: the branch of a rung runs train, baseline and evaluate.
    rung = max(sizes.values(), key=lambda s: s.machine.memory_gb)
    for s in sizes.values():
        print(f"{s.step}: needs about {s.need_gb:.1f} GB", flush=True)
    print(f"train, baseline and evaluate get {rung.cpu} CPU and {rung.memory}", flush=True)
    return rung.memory
