"""The cloud trigger function submits only its own stack's pipeline: the spec the program uploaded
(by its URI, and its bytes by the digest), for its own stack, with each trained variant's
parameters as the program published them and only the training window chosen by the sender.
Everything else answers 400 with a one-line reason and submits nothing. The function's
environment is the one dev's plan gives it, so what is checked is what the program deploys."""

from __future__ import annotations

import base64
import hashlib
import html
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.contracts import EnvContractError, TriggerEnv
from app.settings import REPO_ROOT
from app.trigger.admission import TUNABLE, SpecDigestMismatch, StackPipeline, verified_spec
from app.trigger.ledger import FileLedger
from app.trigger.main import trigger_pipeline
from app.trigger.payload import TriggerPayload, with_schedule_id
from app.trigger.submit import VertexSubmitter
from tests.unit.infra_plans import planned, spec

pytestmark = pytest.mark.timeout(180)
BOUNDED = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=10,
)


def function_env() -> dict[str, str]:
    (function,) = planned("dev").of_type("gcp:cloudfunctionsv2/function:Function")
    return dict(function.inputs["serviceConfig"]["environmentVariables"])


def dev() -> StackPipeline:
    return StackPipeline.from_env(TriggerEnv.from_env(function_env()))


def scheduled() -> list[dict[str, Any]]:
    """What dev's Cloud Scheduler jobs publish, with the id the function gives each firing."""
    jobs = planned("dev").of_type("gcp:cloudscheduler/job:Job")
    docs = [json.loads(base64.b64decode(j.inputs["pubsubTarget"]["data"])) for j in jobs]
    return [with_schedule_id(d, "2026-12-04T03:00:04Z") for d in docs]


class Recording:
    def __init__(self) -> None:
        self.runs: list[TriggerPayload] = []

    def submit(self, p: TriggerPayload) -> str:
        self.runs.append(p)
        return f"job-{p.trigger_id}"


def submit(doc: Any, tmp: Path) -> tuple[int, str, list[TriggerPayload]]:
    sub = Recording()
    result = trigger_pipeline(doc, sub, FileLedger(tmp), dev().admit)
    return result.status, str(result.body.get("error", "")), sub.runs


def test_the_function_is_told_its_stack_spec_and_variants_by_the_program() -> None:
    pipeline, plan = dev(), planned("dev")
    assert pipeline.stack == "dev" and pipeline.template_uri == plan.outputs["pipeline_template"]
    uploaded = [
        r.inputs["content"]
        for r in plan.of_type("gcp:storage/bucketObject:BucketObject")
        if r.inputs["name"].startswith("pipelines/")
    ]
    assert uploaded == [spec()] and pipeline.spec_sha256 == hashlib.sha256(spec().encode()).hexdigest()
    assert sorted(pipeline.parameters) == ["b", "primary"]  # the trained variants; the shadow follows b
    assert pipeline.parameters["b"]["worker_deployment"] == "rerank-dev-worker-b"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"PIPELINE_TEMPLATE": "gs://attacker-bucket/pipelines/p.yaml"}, "PIPELINE_TEMPLATE: not under gs://"),
        ({"PIPELINE_SPEC_SHA256": "abc"}, "PIPELINE_SPEC_SHA256"),
        ({"VARIANT_PARAMETERS": "[]"}, "VARIANT_PARAMETERS: not a JSON object"),
        ({"VARIANT_PARAMETERS": "{nope"}, "VARIANT_PARAMETERS: Expecting"),
    ],
)
def test_a_function_environment_that_is_not_the_programs_is_refused(change: dict[str, str], message: str) -> None:
    with pytest.raises(EnvContractError, match=message):
        StackPipeline.from_env(TriggerEnv.from_env({**function_env(), **change}))


def test_the_programs_own_schedules_are_admitted_unchanged(tmp_path: Path) -> None:
    docs = scheduled()
    assert len(docs) == 2
    for i, doc in enumerate(docs):
        status, error, runs = submit(doc, tmp_path / str(i))
        assert (status, error) == (200, "")
        assert runs[0].parameters == dev().parameters[doc["parameters"]["variant"]]


def test_a_drift_trigger_chooses_its_window_and_nothing_else(tmp_path: Path) -> None:
    # What app.commands.drift publishes: the variant's published parameters and the retrain window.
    window = {"window_start": "2026-11-20T00:00:00+00:00", "valid_days": 1, "test_days": 3}
    doc = {
        "trigger_id": "drift-0123456789ab",
        "reason": "feature_drift: psi 0.31",
        "stack": "dev",
        "template_uri": dev().template_uri,
        "parameters": {**dev().parameters["primary"], **window},
        "figures": {"psi": {"age": 0.31}},
    }
    status, _, runs = submit(doc, tmp_path)
    assert status == 200 and runs[0].parameters == {**dev().parameters["primary"], **window}
    # A sender that names only the variant gets the rest from the program.
    status, _, runs = submit({**doc, "trigger_id": "drift-2", "parameters": {"variant": "b"}}, tmp_path)
    assert status == 200 and runs[0].parameters == dev().parameters["b"]


def _good() -> dict[str, Any]:
    return {**scheduled()[0], "trigger_id": "nightly-1"}


def _with_parameter(key: str, value: Any) -> dict[str, Any]:
    good = _good()
    return {**good, "parameters": {**good["parameters"], key: value}}


# The issue's tries, and each parameter that moves where data is read, where models are registered
# or which Deployments they go to (pipelines/training.py's signature).
ATTACKS = [
    ({"stack": "prod"}, "stack: this function submits for stack dev only"),
    ({"template_uri": "gs://attacker-bucket/evil.yaml"}, "template_uri: only this stack's pipeline spec"),
    ({"template_uri": "/etc/passwd"}, "template_uri: only this stack's pipeline spec"),
    (
        {
            "template_uri": None,
            "pipeline_spec": {"deploymentSpec": {"executors": {"x": {"container": {"image": "evil"}}}}},
        },
        "pipeline_spec: inline specs are refused",
    ),
]
MOVES = [
    ("registry_uri", "/gcs/attacker-bucket/registry"),
    ("worker_deployment", "rerank-prod-worker-primary"),
    ("followers", json.dumps({"primary": "rerank-dev-worker-primary"})),
    ("variant", "shadow"),
    ("env", "prod"),
    ("offline_uri", "bq://attacker.dataset"),
    ("impressions_uri", "/gcs/attacker-bucket/impressions"),
    ("gate_margin", -1.0),
    ("task", "rerank-other"),
    ("oracle_uri", "/etc/passwd"),
    ("code_version", "x"),
    ("window_start", "yesterday"),
    ("test_days", 10_000),
    ("valid_days", True),
]


@pytest.mark.parametrize(("change", "reason"), ATTACKS)
def test_the_issues_tries_are_refused_with_a_reason(tmp_path: Path, change: dict[str, Any], reason: str) -> None:
    doc = {k: v for k, v in {**_good(), **change}.items() if v is not None}
    status, error, runs = submit(doc, tmp_path)
    assert (status, runs) == (400, []) and error.startswith(reason) and "\n" not in error


@pytest.mark.parametrize(("key", "value"), MOVES)
def test_no_parameter_moves_where_models_are_read_registered_or_deployed(tmp_path: Path, key: str, value: Any) -> None:
    status, error, runs = submit(_with_parameter(key, value), tmp_path)
    assert (status, runs) == (400, []) and error.startswith(f"parameters.{key}:"), error


@BOUNDED
@given(st.sampled_from(["stack", "template_uri", "pipeline_spec", "schedule", "reason"]), json_values)
def test_whatever_a_field_is_sent_as_only_the_stacks_pipeline_is_submitted(
    tmp_path_factory: pytest.TempPathFactory, field: str, value: Any
) -> None:
    status, error, runs = submit({**_good(), field: value}, tmp_path_factory.mktemp("l"))
    assert status in (200, 400) and (status == 400) == (runs == []) and (status == 200 or error)
    for run in runs:
        assert (run.stack, run.template_uri, run.pipeline_spec) == ("dev", dev().template_uri, None)
        assert run.parameters == dev().parameters[run.parameters["variant"]]


@BOUNDED
@given(st.data(), json_values | st.sampled_from(["2026-11-20", "", 3, 90, 91, 0]))
def test_whatever_a_parameter_is_sent_as_the_published_ones_hold(
    tmp_path_factory: pytest.TempPathFactory, data: st.DataObject, value: Any
) -> None:
    key = data.draw(st.sampled_from([*dev().parameters["primary"], *TUNABLE, "registry", "image"]))
    status, error, runs = submit(_with_parameter(key, value), tmp_path_factory.mktemp("l"))
    assert (status == 400) == (runs == []) and (status == 200 or error.startswith("parameters."))
    for run in runs:
        published = dev().parameters[run.parameters["variant"]]
        assert {k: run.parameters[k] for k in published} == published
        assert set(run.parameters) - set(published) <= set(TUNABLE)


@BOUNDED
@given(st.data())
def test_only_the_exact_spec_uri_is_accepted(tmp_path_factory: pytest.TempPathFactory, data: st.DataObject) -> None:
    own = dev().template_uri
    uri = data.draw(
        st.text(max_size=60)
        | st.builds(lambda a, b: a + own + b, st.text(max_size=3), st.text(max_size=3))
        | st.sampled_from(["gs://attacker-bucket/evil.yaml", "/etc/passwd", own.upper(), own.replace("dev", "prod")])
    )
    status, _, _ = submit({**_good(), "template_uri": uri}, tmp_path_factory.mktemp("l"))
    assert status == (200 if uri == dev().template_uri else 400)


def test_a_rewritten_spec_object_never_runs_and_its_trigger_is_retried(tmp_path: Path) -> None:
    published = spec().encode()
    assert verified_spec(dev().template_uri, dev().spec_sha256, lambda uri: published) == published
    with pytest.raises(SpecDigestMismatch, match="the program published"):
        verified_spec(dev().template_uri, dev().spec_sha256, lambda uri: published + b"\n# evil\n")
    reads: list[str] = []

    def tampered(uri: str) -> bytes:
        reads.append(uri)
        return published.replace(b"training:0.1.0", b"evil:latest")

    submitter = VertexSubmitter("p", "r", "sa@p", "gs://b/root", dev(), tampered)
    ledger = FileLedger(tmp_path)
    result = trigger_pipeline(_good(), submitter, ledger, dev().admit)
    assert result.status == 503 and "SpecDigestMismatch" in result.body["error"]
    assert reads == [dev().template_uri] and ledger.claim("nightly-1", {}) == "claimed"  # released


@pytest.fixture(scope="module")
def cloud_entries() -> Any:
    import functions_framework

    main = str(REPO_ROOT / "app/trigger/main.py")
    http = functions_framework.create_app("http_trigger", main).test_client()
    event = functions_framework.create_app("pubsub_trigger", main, "cloudevent").test_client()
    return http, event


@pytest.mark.parametrize(("change", "reason"), [*ATTACKS, ({"parameters": {"variant": "b", "registry_uri": "/x"}}, "")])
def test_both_cloud_entries_refuse_before_touching_a_cloud_client(
    cloud_entries: Any, monkeypatch: pytest.MonkeyPatch, change: dict[str, Any], reason: str
) -> None:
    for key, value in function_env().items():
        monkeypatch.setenv(key, value)
    http, event = cloud_entries
    doc = {k: v for k, v in {**_good(), **change}.items() if v is not None}
    resp = http.post("/", json=doc)
    assert resp.status_code == 400 and resp.get_json()["error"].startswith(reason or "parameters.registry_uri:")
    data = {"message": {"data": base64.b64encode(json.dumps(doc).encode()).decode()}}
    headers = {
        "ce-id": "1",
        "ce-source": "//pubsub.googleapis.com/projects/p/topics/t",
        "ce-type": "google.cloud.pubsub.topic.v1.messagePublished",
        "ce-specversion": "1.0",
        "Content-Type": "application/json",
    }
    resp = event.post("/", headers=headers, data=json.dumps(data))
    assert resp.status_code == 400 and (reason or "parameters.registry_uri:") in html.unescape(resp.data.decode())
