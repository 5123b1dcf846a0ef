"""The training pipeline: dataset -> train (+ baseline) -> evaluate -> register -> deploy.

It needs contract impressions (docs/specs/impressions.md) and the offline store, nothing else:
``oracle_uri`` (a simulation's true probabilities) is optional and only adds figures. The deploy
gate compares the new model with the one the variant serves, on the same test days.

Components are plain functions (``pipelines/components``) made into KFP components here, with
the image to run them in, so ``rerank pipeline compile --image`` can target any registry. The
pipeline only wires steps; every step's logic lives in ``app/`` and is tested there.
"""

from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from kfp import compiler, dsl

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
# baseline and evaluate get theirs at run time from the sizing step (app/ranking/sizing.py).
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


def _sized(task: Any, step: str, name: str, size: tuple[Any, Any, Any] | None = None) -> Any:
    """``size``: (the sizing task, cpu, memory) from its outputs; else the step's row of ``RESOURCES``."""
    if size is not None:
        # Resources read from another task's outputs do not make a dependency by themselves.
        sizer, cpu, memory = size
        task.after(sizer)
    else:
        cpu, memory = RESOURCES[step]
    return (
        task.set_display_name(name)
        .set_cpu_request(cpu)
        .set_cpu_limit(cpu)
        .set_memory_request(memory)
        .set_memory_limit(memory)
    )


def build_pipeline(image: str = DEFAULT_IMAGE) -> Any:
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
        training_resources: str = "",
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
            "dataset",
            "point-in-time dataset",
        )
        sizing = _sized(
            sizing_op(dataset_json=data.outputs["Output"], resources=training_resources, sampling=negative_rate),
            "sizing",
            "size the training steps from the data",
        )
        train_size = (sizing, sizing.outputs["train_cpu"], sizing.outputs["train_memory"])
        evaluate_size = (sizing, sizing.outputs["evaluate_cpu"], sizing.outputs["evaluate_memory"])
        model = _sized(
            train_op(
                train=data.outputs["train"],
                valid=data.outputs["valid"],
                hyperparameters=hyperparameters,
                features=features,
                entities=entities,
                objective="pointwise",
                task=task,
                env=env,
                negative_rate=negative_rate,
            ),
            "train",
            "train pointwise LightGBM",
            train_size,
        )
        baseline = _sized(
            train_op(
                train=data.outputs["train"],
                valid=data.outputs["valid"],
                hyperparameters=baseline_hyperparameters,
                features=features,
                entities=entities,
                objective="lambdarank",
                task=f"{task}-baseline",
                env=env,
            ),
            "baseline",
            "train LambdaRank baseline",
            train_size,
        )
        evaluation = _sized(
            evaluate_op(
                test=data.outputs["test"],
                model=model.outputs["model"],
                baseline=baseline.outputs["model"],
                registry_uri=registry_uri,
                variant=variant,
                oracle_uri=oracle_uri,
                gate_margin=gate_margin,
                min_oracle_ratio=min_oracle_ratio,
            ),
            "evaluate",
            "evaluate vs baseline and serving model",
            evaluate_size,
        )
        registered = _sized(
            register_op(
                model=model.outputs["model"],
                metrics_json=evaluation.outputs["metrics_json"],
                approved=evaluation.outputs["approved"],
                reason=evaluation.outputs["reason"],
                serving_model_id=evaluation.outputs["serving_model_id"],
                variant=variant,
                registry_uri=registry_uri,
                code_version=code_version,
            ),
            "register",
            "register model",
        )
        deployed = _sized(
            deploy_op(
                model_id=registered.outputs["model_id"],
                approved=evaluation.outputs["approved"],
                reason=evaluation.outputs["reason"],
                serving_model_id=evaluation.outputs["serving_model_id"],
                registry_uri=registry_uri,
                variant=variant,
                worker_deployment=worker_deployment,
                followers=followers,
            ),
            "deploy",
            "deploy gate",
        )
        return TrainingRun(
            registered.outputs["model_id"],
            evaluation.outputs["metrics_json"],
            data.outputs["Output"],
            evaluation.outputs["approved"],
            evaluation.outputs["serving_model_id"],
            deployed.outputs["deployed"],
            deployed.outputs["reason"],
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


def compile_pipeline(out: Path = BUILD_DIR / f"{PIPELINE_NAME}.yaml", image: str = DEFAULT_IMAGE) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(build_pipeline(image), str(out))
    return out
