"""`rerank infra plan`: the inventory as text and JSON, and the diff a reviewer reads beside
`pulumi preview`."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from app.cli import main
from app.commands.infra import diff_inventories, diff_text
from app.settings import VariantConfig, load_stack
from infra.plan import plan_stack
from tests.unit.infra_plans import planned, spec

pytestmark = pytest.mark.timeout(300)


def test_a_change_shows_as_additions_and_alterations() -> None:
    base = load_stack("dev")
    sv = base.serving
    variants = [v.model_copy(update={"traffic_share": 0.7}) if v.name == "primary" else v for v in sv.variants] + [
        VariantConfig(name="c", kind="arm", traffic_share=0.1)
    ]
    node_pool = sv.node_pool.model_copy(update={"max_nodes": 6})
    changed = base.model_copy(update={"serving": sv.model_copy(update={"variants": variants, "node_pool": node_pool})})
    d = diff_inventories(planned("dev").to_json(), plan_stack(changed, pipeline_spec=spec()).to_json())
    added = {(r["type"], r["name"]) for r in d["added"]}
    assert ("gcp:pubsub/subscription:Subscription", "rerank-dev-rerank-requests-c") in added
    assert ("kubernetes:apps/v1:Deployment", "serving-worker-c") in added
    assert ("kubernetes:keda.sh/v1alpha1:ScaledObject", "serving-worker-c-scaler") in added
    assert ("gcp:pubsub/subscriptionIAMMember:SubscriptionIAMMember", "serving-worker-c-pull") in added
    assert d["removed"] == []
    pool = next(c for c in d["changed"] if c["name"] == "serving-workers")
    assert pool["changes"] == {"autoscaling.totalMaxNodeCount": {"before": 3, "after": 6}}
    alerts = {c["name"] for c in d["changed"] if c["type"] == "gcp:monitoring/alertPolicy:AlertPolicy"}
    assert alerts == {"monitoring-oldest-unacked", "monitoring-backlog"}  # the new subscription is watched
    text = diff_text({**d, "stack": "dev", "base": "HEAD", "violations": []})
    assert "+ gcp:pubsub/subscription:Subscription  rerank-dev-rerank-requests-c" in text
    assert "~ gcp:container/nodePool:NodePool  serving-workers" in text


def test_the_same_plan_twice_differs_in_nothing() -> None:
    again = plan_stack(load_stack("dev"), pipeline_spec=spec()).to_json()
    assert again == planned("dev").to_json()
    assert diff_inventories(planned("dev").to_json(), again) == {"added": [], "removed": [], "changed": []}


def test_documents_are_shown_parsed_and_the_diff_names_the_changed_leaf() -> None:
    """A trust policy (over 300 characters) is read as the document it is, so a change shows as the
    one condition that changed; a compiled pipeline stays a digest."""
    inventory = {(r["type"], r["name"]): r for r in planned("dev").to_json()["inventory"]}
    trust = inventory[("aws:iam/role:Role", "cross-cloud-results-writer")]["inputs"]["assumeRolePolicy"]
    assert trust["Statement"][0]["Principal"] == {"Federated": "accounts.google.com"}
    spec_object = inventory[("gcp:storage/bucketObject:BucketObject", "training-pipeline-spec")]["inputs"]
    assert spec_object["content"].startswith("sha256:") and "characters" in spec_object["content"]

    base = load_stack("dev")
    cross = base.cross_cloud.model_copy(update={"aws_account_id": "333333333333"})  # type: ignore[union-attr]
    moved = plan_stack(base.model_copy(update={"cross_cloud": cross}), pipeline_spec=spec()).to_json()
    d = diff_inventories(planned("dev").to_json(), moved)
    role = next(c for c in d["changed"] if c["name"] == "cross-cloud-results-writer")
    leaf = 'assumeRolePolicy.Statement[0].Condition.StringEquals."accounts.google.com:oaud"'
    assert leaf in role["changes"] and "333333333333" in role["changes"][leaf]["after"]
    assert not any(k == "assumeRolePolicy" for k in role["changes"])
    text = diff_text({**d, "stack": "dev", "base": "HEAD", "violations": []})
    assert f"    {leaf}: " in text


def test_plan_prints_one_json_object_with_the_inventory(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["infra", "plan", "--stack", "pr-9", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["stack"] == "pr-9" and out["resources"] == sum(out["by_type"].values())
    assert out["violations"] == []
    assert out["by_type"]["kubernetes:apps/v1:Deployment"] == 3
    assert not [r for r in out["inventory"] if r["protect"]]
    redis = next(r for r in out["inventory"] if r["type"] == "gcp:redis/instance:Instance")
    assert redis["settings"]["name"] == "rerank-pr-9-online" and redis["settings"]["tier"] == "BASIC"


def test_diff_against_a_commit_runs_that_commits_program(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["infra", "plan", "--stack", "dev", "--diff", "HEAD", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["base"] == "HEAD" and {"added", "removed", "changed"} <= set(out)
    assert out["violations"] == []


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["infra", "plan"], "the local stack has no cloud resources"),
        (["infra", "plan", "--stack", "qa"], "no such stack file"),
        (["infra", "plan", "--stack", "dev", "--diff", "no-such-ref"], "'no-such-ref' is not a commit"),
    ],
)
def test_bad_input_exits_2_with_one_line(argv: list[str], needle: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1


@pytest.mark.parametrize("extra", [[], ["--diff", "HEAD"]], ids=["inventory", "diff"])
def test_a_policy_violation_fails_the_plan(
    extra: list[str], cached_plans: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import infra.policy.rules as rules

    real = rules.violations

    def with_public_bucket(resources: list) -> list[str]:
        # The dev inventory with its buckets made public: the real rules must object.
        return real(
            [replace(r, props={**r.props, "publicAccessPrevention": "inherited"})
             if r.type == "gcp:storage/bucket:Bucket" else r
             for r in rules.as_stack(resources)]
        )  # fmt: skip

    monkeypatch.setattr(rules, "violations", with_public_bucket)
    assert main(["infra", "plan", "--stack", "dev", *extra]) == 1
    captured = capsys.readouterr()
    assert "! no-public-access: gcp:storage/bucket:Bucket: buckets must set publicAccessPrevention" in captured.out
    assert "3 policy violation(s)" in captured.err
