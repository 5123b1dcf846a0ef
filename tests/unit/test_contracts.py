"""One contract between infra and app: the environment each workload gets in a stack's plan is read
back by the class the app reads it with, and nothing else is set."""

from __future__ import annotations

import json
from typing import Any

import pytest

from app.cli import parser
from app.contracts import DriftEnv, EnvContractError, TriggerEnv, WorkerEnv, k8s_env
from app.settings import load_stack
from tests.unit.infra_plans import planned

pytestmark = pytest.mark.timeout(180)
STACKS = ["dev", "prod", "pr-7"]


def containers(stack: str, type_token: str) -> list[dict[str, Any]]:
    out = []
    for r in planned(stack).of_type(type_token):
        spec = r.inputs["spec"]
        pod = spec["jobTemplate"]["spec"]["template"]["spec"] if "jobTemplate" in spec else spec["template"]["spec"]
        out += [{**c, "pod": pod} for c in pod["containers"]]
    return out


def env_of(container: dict[str, Any]) -> dict[str, str]:
    assert all(set(e) == {"name", "value"} for e in container["env"])  # no valueFrom the contract does not know
    return {e["name"]: e["value"] for e in container["env"]}


@pytest.mark.parametrize("stack", STACKS)
def test_every_worker_pod_gets_exactly_what_the_worker_reads(stack: str) -> None:
    settings = load_stack(stack)
    workers = containers(stack, "kubernetes:apps/v1:Deployment")
    assert len(workers) == len(settings.serving.variants)
    for c in workers:
        env = env_of(c)
        read = WorkerEnv.from_env(env)
        assert read.to_env() == env  # every variable set is one the worker reads
        args = parser().parse_args(c["args"])
        variant = settings.serving.variant(args.variant)
        assert (args.command, args.endpoints, args.stack) == ("serve", "env", stack)
        assert (read.aws_role_arn is None) == (variant.kind == "shadow")
        assert read.model_registry == f"/gcs/{settings.gcp.project}-rerank-{stack}-pipelines/registry"
        # The Redis URL and CA files are the secret's items where the pod mounts it.
        mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
        secret = next(v for v in c["pod"]["volumes"] if v["name"] == "online-store")["secret"]
        files = {f"{mounts['online-store']}/{item['path']}" for item in secret["items"]}
        assert {read.redis_url_file, read.redis_ca_file} == files


@pytest.mark.parametrize("stack", STACKS)
def test_every_drift_job_gets_exactly_what_the_drift_check_reads(stack: str) -> None:
    settings = load_stack(stack)
    jobs = containers(stack, "kubernetes:batch/v1:CronJob")
    assert sorted(parser().parse_args(c["args"]).variant for c in jobs) == sorted(
        v.name for v in settings.serving.trained
    )
    for c in jobs:
        env = env_of(c)
        read = DriftEnv.from_env(env)
        assert read.to_env() == env
        args = parser().parse_args(c["args"])
        assert (args.command, args.action, args.endpoints, args.stack) == ("drift", "check", "env", stack)
        parameters = read.parameters()
        # What app.commands.drift.env_inputs reads, and the variant the retrain deploys to.
        assert {"offline_uri", "impressions_uri", "registry_uri"} <= set(parameters)
        assert parameters["variant"] == args.variant
        assert read.pipeline_template == planned(stack).outputs["pipeline_template"]


@pytest.mark.parametrize("stack", STACKS)
def test_the_trigger_function_gets_exactly_what_it_reads(stack: str) -> None:
    (function,) = planned(stack).of_type("gcp:cloudfunctionsv2/function:Function")
    env = function.inputs["serviceConfig"]["environmentVariables"]
    read = TriggerEnv.from_env(env)
    assert read.to_env() == env
    assert read.project == load_stack(stack).gcp.project
    assert read.pipeline_root == planned(stack).outputs["pipeline_root"]
    # What it agrees to submit: its own stack's spec and the parameters its schedules publish.
    assert read.stack == stack and read.pipeline_template == planned(stack).outputs["pipeline_template"]
    trained = {v.name for v in load_stack(stack).serving.trained}
    assert set(json.loads(read.variant_parameters)) == trained


def test_to_env_passes_values_through_untouched_and_leaves_out_the_unset() -> None:
    marker = object()  # stands for a Pulumi Output: never converted or inspected
    env = WorkerEnv(model_registry=marker, redis_url_file="/f").to_env()
    assert env == {"REDIS_URL_FILE": "/f", "MODEL_REGISTRY": marker}
    assert k8s_env(env) == [{"name": "REDIS_URL_FILE", "value": "/f"}, {"name": "MODEL_REGISTRY", "value": marker}]


@pytest.mark.parametrize(
    "cls, env, message",
    [
        (WorkerEnv, {}, "--endpoints env needs environment variable(s) REDIS_URL_FILE, MODEL_REGISTRY"),
        (WorkerEnv, {"REDIS_URL": "redis://127.0.0.1:1"}, "needs environment variable(s) MODEL_REGISTRY"),
        (DriftEnv, {"PIPELINE_TEMPLATE": "gs://b/p.yaml"}, "needs environment variable(s) PIPELINE_PARAMETERS"),
        (TriggerEnv, {"PROJECT": "p", "REGION": "r"}, "PIPELINE_SERVICE_ACCOUNT, PIPELINE_ROOT, LEDGER_BUCKET"),
    ],
)
def test_a_missing_variable_is_named(cls: Any, env: dict[str, str], message: str) -> None:
    with pytest.raises(EnvContractError, match=message.replace("(", r"\(").replace(")", r"\)")):
        cls.from_env(env)


@pytest.mark.parametrize(
    "text, message", [("{not json", "PIPELINE_PARAMETERS: Expecting"), ("[1]", "not a JSON object")]
)
def test_drift_parameters_that_are_not_a_json_object_are_named(text: str, message: str) -> None:
    with pytest.raises(EnvContractError, match=message):
        DriftEnv(pipeline_parameters=text, pipeline_template="gs://b/p.yaml").parameters()
