"""The training pipeline: dataset -> train (+ baseline) -> evaluate -> register -> deploy.

It needs contract impressions (docs/specs/impressions.md) and the offline store, nothing else:
``oracle_uri`` (a simulation's true probabilities) is optional and only adds figures. The deploy
gate compares the new model with the one the variant serves, on the same test days.

Components are plain functions (``pipelines/components``) made into KFP components here, with
the image to run them in, so ``rerank pipeline compile --image`` can target any registry. The
pipeline only wires steps; every step's logic lives in ``app/`` and is tested there.
"""

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

from kfp import compiler, dsl

from app.ranking.sizing import StepSize, allowed_machines
from app.settings import TrainingResourcesConfig
from pipelines.components.dataset import make_dataset
from pipelines.components.deploy import deploy_model
from pipelines.components.evaluate import evaluate_models
from pipelines.components.register import lookup_latest_model, register_model
from pipelines.components.sizing import size_training
from pipelines.components.train import train_model

PIPELINE_NAME = "rerank-training"
DEFAULT_IMAGE = "europe-west1-docker.pkg.dev/PROJECT/rerank/training:latest"
BUILD_DIR = Path(__file__).resolve().parent / "build"
# CPU and memory per step on Vertex AI (requests = limits: a training step should not be throttled).
# The dataset step's engine works in bounded memory (it spills), so its size is fixed; train, the
# baseline and evaluate run on the rung of the stack's ladder the sizing step picks at run time
# (app/ranking/sizing.py). Vertex AI documents literal CPU and memory limits only, so every rung is
# a branch of the spec with its own literal resources (``_rungs``), not a placeholder filled from
# the sizing step's output.
RESOURCES = {
    "dataset": ("4", "16G"),
    "sizing": ("1", "2G"),
    "register": ("1", "2G"),
    "deploy": ("1", "2G"),
}


class TrainingRun(NamedTuple):
    model_id: str
    metrics_json: str
    dataset_json: str
    approved: bool
    serving_model_id: str
    deployed: bool
    deploy_reason: str


def _component(fn: Callable[..., Any], image: str) -> Any:
    # Dependencies come with the image; nothing is pip-installed when a step starts.
    return dsl.component(fn, base_image=image, packages_to_install=[])


def _sized(task: Any, name: str, cpu: str, memory: str) -> Any:
    return (
        task.set_display_name(name)
        .set_cpu_request(cpu)
        .set_cpu_limit(cpu)
        .set_memory_request(memory)
        .set_memory_limit(memory)
    )


def _rungs(rung: Any, machines: list[StepSize]) -> Iterator[tuple[Any, StepSize]]:
    """One branch per machine, taken when the sizing step's ``rung`` names it: ``dsl.If`` for the
    smallest, ``dsl.Elif`` up the ladder and ``dsl.Else`` for the largest (the sizing step names
    nothing else: past the largest it fails). A one-machine ladder needs no branch."""
    if len(machines) == 1:
        yield contextlib.nullcontext(), machines[0]
        return
    for i, machine in enumerate(machines):
        # Created one at a time, after the previous branch has closed: Elif/Else follow it.
        name = f"on {machine.cpu} CPU and {machine.memory}"
        if i == 0:
            yield dsl.If(rung == machine.memory, name=name), machine
        elif i < len(machines) - 1:
            yield dsl.Elif(rung == machine.memory, name=name), machine
        else:
            yield dsl.Else(name=name), machine


def _collect(outputs: list[Any]) -> Any:
    """The output of whichever branch ran."""
    return outputs[0] if len(outputs) == 1 else dsl.OneOf(*outputs)


class _Branch(NamedTuple):
    evaluation: Any
    registered: Any
    deployed: Any


def _train_to_deploy(
    machine: StepSize, train_op: Any, evaluate_op: Any, register_op: Any, deploy_op: Any, data: Any, **p: Any
) -> _Branch:
    """Train, baseline and evaluate on ``machine`` (literal resources), then register and deploy."""
    on = f" ({machine.cpu} CPU, {machine.memory})"
    model = _sized(
        train_op(
            train=data.outputs["train"],
            valid=data.outputs["valid"],
            hyperparameters=p["hyperparameters"],
            features=p["features"],
            entities=p["entities"],
            objective="pointwise",
            task=p["task"],
            env=p["env"],
            negative_rate=p["negative_rate"],
        ),
        "train pointwise LightGBM" + on,
        machine.cpu,
        machine.memory,
    )
    baseline = _sized(
        train_op(
            train=data.outputs["train"],
            valid=data.outputs["valid"],
            hyperparameters=p["baseline_hyperparameters"],
            features=p["features"],
            entities=p["entities"],
            objective="lambdarank",
            task=f"{p['task']}-baseline",
            env=p["env"],
        ),
        "train LambdaRank baseline" + on,
        machine.cpu,
        machine.memory,
    )
    evaluation = _sized(
        evaluate_op(
            test=data.outputs["test"],
            model=model.outputs["model"],
            baseline=baseline.outputs["model"],
            registry_uri=p["registry_uri"],
            variant=p["variant"],
            oracle_uri=p["oracle_uri"],
            gate_margin=p["gate_margin"],
            min_oracle_ratio=p["min_oracle_ratio"],
        ),
        "evaluate vs baseline and serving model" + on,
        machine.cpu,
        machine.memory,
    )
    registered = _sized(
        register_op(
            model=model.outputs["model"],
            metrics_json=evaluation.outputs["metrics_json"],
            approved=evaluation.outputs["approved"],
            reason=evaluation.outputs["reason"],
            serving_model_id=evaluation.outputs["serving_model_id"],
            variant=p["variant"],
            registry_uri=p["registry_uri"],
            code_version=p["code_version"],
        ),
        "register model",
        *RESOURCES["register"],
    )
    deployed = _sized(
        deploy_op(
            model_id=registered.outputs["model_id"],
            approved=evaluation.outputs["approved"],
            reason=evaluation.outputs["reason"],
            serving_model_id=evaluation.outputs["serving_model_id"],
            registry_uri=p["registry_uri"],
            variant=p["variant"],
            worker_deployment=p["worker_deployment"],
            followers=p["followers"],
        ),
        "deploy gate",
        *RESOURCES["deploy"],
    )
    return _Branch(evaluation, registered, deployed)


def build_pipeline(image: str = DEFAULT_IMAGE, resources: TrainingResourcesConfig | None = None) -> Any:
    """``resources``: the stack's ``training.resources`` (default: the settings' defaults). Its
    ladder is compiled into the spec, one branch per machine it allows."""
    ladder = resources or TrainingResourcesConfig()
    machines = [StepSize("sized", 0.0, m) for m in allowed_machines(ladder)]
    dataset_op = _component(make_dataset, image)
    sizing_op = _component(size_training, image)
    train_op = _component(train_model, image)
    evaluate_op = _component(evaluate_models, image)
    register_op = _component(register_model, image)
    deploy_op = _component(deploy_model, image)

    @dsl.pipeline(name=PIPELINE_NAME, description="Pointwise LightGBM re-ranker on mutual matches")
    def training_pipeline(
        offline_uri: str,
        impressions_uri: str,
        registry_uri: str,
        env: str,
        variant: str,
        worker_deployment: str,
        followers: str = "{}",
        task: str = "rerank-pointwise",
        window_start: str = "",
        window_end: str = "",
        window_days: int = 0,
        valid_days: int = 4,
        test_days: int = 4,
        hyperparameters: str = "{}",
        baseline_hyperparameters: str = "{}",
        features: str = "",
        entities: str = "",
        gate_margin: float = 0.005,
        negative_rate: float = 1.0,
        oracle_uri: str = "",
        min_oracle_ratio: float = 0.0,
        code_version: str = "",
        entity_ttl_days: str = "",
    ) -> TrainingRun:
        data = _sized(
            dataset_op(
                offline_uri=offline_uri,
                impressions_uri=impressions_uri,
                window_start=window_start,
                window_end=window_end,
                window_days=window_days,
                valid_days=valid_days,
                test_days=test_days,
                entities=entities,
                entity_ttl_days=entity_ttl_days,
            ),
            "point-in-time dataset",
            *RESOURCES["dataset"],
        )
        sizing = _sized(
            sizing_op(dataset_json=data.outputs["Output"], resources=ladder.model_dump_json(), sampling=negative_rate),
            "size the training steps from the data",
            *RESOURCES["sizing"],
        )
        runs = []
        for branch, machine in _rungs(sizing.output, machines):
            with branch:
                runs.append(
                    _train_to_deploy(
                        machine,
                        train_op,
                        evaluate_op,
                        register_op,
                        deploy_op,
                        data=data,
                        hyperparameters=hyperparameters,
                        baseline_hyperparameters=baseline_hyperparameters,
                        features=features,
                        entities=entities,
                        task=task,
                        env=env,
                        negative_rate=negative_rate,
                        registry_uri=registry_uri,
                        variant=variant,
                        oracle_uri=oracle_uri,
                        gate_margin=gate_margin,
                        min_oracle_ratio=min_oracle_ratio,
                        code_version=code_version,
                        worker_deployment=worker_deployment,
                        followers=followers,
                    )
                )
        return TrainingRun(
            _collect([r.registered.outputs["model_id"] for r in runs]),
            _collect([r.evaluation.outputs["metrics_json"] for r in runs]),
            data.outputs["Output"],
            _collect([r.evaluation.outputs["approved"] for r in runs]),
            _collect([r.evaluation.outputs["serving_model_id"] for r in runs]),
            _collect([r.deployed.outputs["deployed"] for r in runs]),
            _collect([r.deployed.outputs["reason"] for r in runs]),
        )

    return training_pipeline


def build_lookup_pipeline(image: str = DEFAULT_IMAGE) -> Any:
    """How another pipeline picks up the latest approved model: a lookup, then an importer."""
    lookup_op = _component(lookup_latest_model, image)

    @dsl.pipeline(name="rerank-latest-model")
    def latest_model_pipeline(registry_uri: str, task: str, env: str) -> dsl.Model:
        uri = lookup_op(registry_uri=registry_uri, task=task, env=env).set_display_name("latest approved model")
        return dsl.importer(artifact_uri=uri.output, artifact_class=dsl.Model, reimport=False).output

    return latest_model_pipeline


def compile_pipeline(
    out: Path = BUILD_DIR / f"{PIPELINE_NAME}.yaml",
    image: str = DEFAULT_IMAGE,
    resources: TrainingResourcesConfig | None = None,
) -> Path:
    """``resources``: the stack's ``training.resources``, whose machines the spec's branches run on."""
    out.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(build_pipeline(image, resources), str(out))
    return out
