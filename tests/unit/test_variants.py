"""Variants end to end from the stack file: how each trains (parameters, features, window,
schedules, or the model of another variant it follows), validated with the key named, and a new
arm that gets everything it needs in the cloud from its stack entry alone."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from app.naming import Names
from app.ranking.variant_training import FollowerError, training_parameters
from app.settings import STACKS_DIR, StackConfigError, load_stack
from infra.plan import PlannedResource, plan_stack
from infra.policy import rules
from tests.unit.infra_plans import spec

pytestmark = pytest.mark.timeout(180)
SERVING = "rerank-platform:serving"


def stack_with(tmp_path: Path, base: str, change: Any) -> Path:
    """``stacks/Pulumi.<base>.yaml`` with ``change(serving)`` applied, as a stack file in ``tmp_path``."""
    doc = yaml.safe_load((STACKS_DIR / f"Pulumi.{base}.yaml").read_text())
    change(doc["config"][SERVING])
    (tmp_path / f"Pulumi.{base}.yaml").write_text(yaml.safe_dump(doc))
    return tmp_path


def refused(tmp_path: Path, change: Any) -> list[str]:
    with pytest.raises(StackConfigError) as err:
        load_stack("dev", stack_with(tmp_path, "dev", change))
    return err.value.problems


def custom(resources: list[PlannedResource], type_token: str = "") -> list[PlannedResource]:
    return [r for r in resources if r.custom and r.type.startswith(type_token)]


def test_a_fourth_variant_added_to_the_dev_stack_file_gets_everything_with_no_code_change(tmp_path: Path) -> None:
    def add_c(serving: dict[str, Any]) -> None:
        serving["variants"][0]["traffic_share"] = 0.7
        serving["variants"].append(
            {
                "name": "c",
                "kind": "arm",
                "traffic_share": 0.1,
                "training": {
                    "parameters": {"num_leaves": 31, "learning_rate": 0.05},
                    "features": ["viewer_age", "candidate_age"],
                    "window_days": 14,
                    "schedules": [{"name": "hourly", "every": "cron", "cron": "0 * * * *"}],
                },
            }
        )

    settings = load_stack("dev", stack_with(tmp_path, "dev", add_c))
    n, project = Names.of(settings), settings.gcp.project
    plan = plan_stack(settings, pipeline_spec=spec())
    res = plan.resources

    # Its subscription: filtered on its arm and dead-lettered; the primary no longer takes its requests.
    subs = {r.inputs["name"]: r.inputs for r in custom(res, "gcp:pubsub/subscription:")}
    mine = subs[n.variant_subscription("c")]
    assert mine["filter"] == 'attributes.arm = "c"'
    assert mine["deadLetterPolicy"]["deadLetterTopic"] == f"projects/{project}/topics/{n.requests_dead_letter_topic}"
    assert 'NOT attributes.arm = "c"' in subs[n.variant_subscription(settings.serving.primary.name)]["filter"]
    # The workers may pull it.
    pulls = [r.inputs for r in custom(res, "gcp:pubsub/subscriptionIAMMember:")]
    assert any(
        p["subscription"] == n.variant_subscription("c") and p["role"] == "roles/pubsub.subscriber" for p in pulls
    )
    # Its worker Deployment, with the results role (an arm's results are served), scaled by KEDA on its backlog.
    deployments = {r.inputs["metadata"]["name"]: r.inputs["spec"] for r in custom(res, "kubernetes:apps/v1:Deployment")}
    container = deployments[n.worker_deployment("c")]["template"]["spec"]["containers"][0]
    assert container["args"][3:5] == ["--variant", "c"]
    assert "AWS_ROLE_ARN" in {e["name"] for e in container["env"]}
    scalers = {
        r.inputs["metadata"]["name"]: r.inputs["spec"] for r in custom(res, "kubernetes:keda.sh/v1alpha1:ScaledObject")
    }
    trigger = scalers[n.worker_deployment("c")]["triggers"][0]
    assert trigger["metadata"]["subscriptionName"] == plan.outputs["variant_subscriptions"]["c"]
    assert scalers[n.worker_deployment("c")]["maxReplicaCount"] == settings.serving.worker.max_replicas
    # Alerts watch its subscription.
    watched = json.dumps([p.inputs["conditions"] for p in custom(res, "gcp:monitoring/alertPolicy:")])
    assert f'\\"{n.variant_subscription("c")}\\"' in watched
    # Its own schedule: a payload that trains with its parameters, features and window and deploys to it.
    jobs = {r.inputs["name"]: r.inputs for r in custom(res, "gcp:cloudscheduler/job:")}
    job = jobs[n.schedule_job("c", "hourly")]
    assert job["schedule"] == "0 * * * *" and job["pubsubTarget"]["attributes"]["variant"] == "c"
    payload = json.loads(base64.b64decode(job["pubsubTarget"]["data"]))
    p = payload["parameters"]
    assert (p["variant"], p["worker_deployment"], json.loads(p["followers"])) == ("c", n.worker_deployment("c"), {})
    assert json.loads(p["hyperparameters"]) == {"num_leaves": 31, "learning_rate": 0.05}
    assert (p["features"], p["window_days"]) == ("viewer_age,candidate_age", 14)
    assert payload["schedule"] == "c-hourly" and payload["template_uri"] == plan.outputs["pipeline_template"]
    # The other variants' schedules did not change: still the stack's nightly one each.
    assert {k for k in jobs if k != n.schedule_job("c", "hourly")} == {
        n.schedule_job(v, "nightly") for v in ("primary", "b")
    }
    # Its drift check, with the same parameters as its scheduled payload.
    crons = {r.inputs["metadata"]["name"]: r.inputs["spec"] for r in custom(res, "kubernetes:batch/v1:CronJob")}
    drift = crons[n.drift_job("c")]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    assert drift["args"][4:6] == ["--variant", "c"]
    assert json.loads({e["name"]: e["value"] for e in drift["env"]}["PIPELINE_PARAMETERS"]) == p
    # And the stack still passes every guardrail.
    assert rules.violations(custom(res)) == []


def test_a_shadow_follows_an_arms_model_and_trains_nothing() -> None:
    dev = load_stack("dev")
    assert [v.name for v in dev.serving.trained] == ["primary", "b"]
    assert json.loads(training_parameters(dev, "b")["followers"]) == {"shadow": "rerank-dev-worker-shadow"}
    assert dev.schedules_of("shadow") == []
    with pytest.raises(FollowerError, match="variant shadow serves the model of b"):
        training_parameters(dev, "shadow")
    # Without a name: the stack's variant of kind primary.
    assert training_parameters(dev)["variant"] == dev.serving.primary.name


def test_a_review_stack_schedules_no_variant(tmp_path: Path) -> None:
    def own_schedule(serving: dict[str, Any]) -> None:
        serving["variants"][1]["training"] = {"schedules": [{"name": "often", "every": "daily"}]}

    stacks = stack_with(tmp_path, "dev", own_schedule)
    assert [s.name for s in load_stack("dev", stacks).schedules_of("b")] == ["often"]
    review = load_stack("pr-3", stacks)
    assert all(review.schedules_of(v.name) == [] for v in review.serving.variants)


@pytest.mark.parametrize(
    "training, line",
    [
        (
            {"follows": "nobody"},
            "serving.variants[2].training.follows: unknown variant 'nobody' (variants: primary, b, shadow)",
        ),
        ({"follows": "shadow"}, "serving.variants[2].training.follows: a cycle (shadow -> shadow)"),
        (
            {"follows": "b", "parameters": {"num_leaves": 7}},
            "serving.variants[2].training: parameters do not apply to a variant that follows 'b'",
        ),
        (
            {"schedules": [{"name": "x", "every": "cron", "cron": "61 * *"}]},
            "serving.variants[2].training.schedules[0]: schedule 'x': every: cron needs a five-field cron",
        ),
        (
            {"schedules": [{"name": "x", "every": "cron", "cron": "0 3 * * ; rm"}]},
            "serving.variants[2].training.schedules[0]: schedule 'x': every: cron needs a five-field cron",
        ),
        ({"schedules": "follows b"}, "serving.variants[2].training.schedules:"),
        ({"window_days": -1}, "serving.variants[2].training.window_days:"),
        (
            {"parameters": {"leaves": 3}},
            "serving.variants[2].training.parameters: unknown hyper-parameter(s) ['leaves']",
        ),
        (
            {"features": ["viewer_shoe_size"]},
            "serving.variants[2].training.features: unknown feature(s) ['viewer_shoe_size']",
        ),
    ],
)
def test_bad_variant_training_is_refused_one_line_naming_the_key(tmp_path: Path, training: dict, line: str) -> None:
    def change(serving: dict[str, Any]) -> None:
        serving["variants"][2]["training"] = training

    problems = refused(tmp_path, change)
    assert any(p.startswith(f"rerank-platform:{line}") for p in problems), problems
    assert all("\n" not in p for p in problems)


def test_a_cycle_through_two_variants_is_named_once_per_variant(tmp_path: Path) -> None:
    def change(serving: dict[str, Any]) -> None:
        serving["variants"][1]["training"] = {"follows": "shadow"}  # b follows the shadow, which follows b

    problems = refused(tmp_path, change)
    assert (
        "rerank-platform:serving.variants[1].training.follows: a cycle (b -> shadow -> b); one of them must train"
        in problems
    )
    assert (
        "rerank-platform:serving.variants[2].training.follows: a cycle (shadow -> b -> shadow); one of them must train"
        in problems
    )


def test_a_variants_window_is_its_last_days_up_to_the_newest_impression() -> None:
    from datetime import UTC, datetime

    import pyarrow as pa

    from app.ranking.dataset import DatasetError, last_days

    times = [datetime(2026, 3, d, 15, tzinfo=UTC) for d in (1, 5, 9, 10)]
    table = pa.table({"impression_time": pa.array(times, pa.timestamp("us", tz="UTC"))})
    # 3 whole days ending with the 10th: the 8th, 9th and 10th.
    assert last_days(table, 3) == datetime(2026, 3, 8, tzinfo=UTC)
    # Up to an end: the newest impression before it is on the 5th.
    assert last_days(table, 2, datetime(2026, 3, 9, tzinfo=UTC)) == datetime(2026, 3, 4, tzinfo=UTC)
    with pytest.raises(DatasetError, match="no impressions before"):
        last_days(table, 2, datetime(2026, 3, 1, tzinfo=UTC))


def test_follows_primary_may_be_spelled_out(tmp_path: Path) -> None:
    def spelled(serving: dict[str, Any]) -> None:
        serving["variants"][1]["training"] = {"schedules": "follows primary", "window_days": 7}

    dev = load_stack("dev", stack_with(tmp_path, "dev", spelled))
    assert dev.schedules_of("b") == dev.training.schedules and dev.serving.variant("b").training.window_days == 7
