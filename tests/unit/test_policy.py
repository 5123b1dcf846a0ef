"""The CrossGuard policy pack: its rules pass every stack the program declares, catch each kind of
bad resource, and load in the pack's own environment as ``pulumi preview --policy-pack`` runs it."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest

from app.settings import REPO_ROOT
from infra.policy.rules import (
    RULES,
    STACK_RULES,
    alerts_for_subscriptions,
    as_stack,
    pipeline_resources_literal,
    violations,
)
from tests.unit.infra_plans import planned

pytestmark = pytest.mark.timeout(180)
LABELS = {"app": "rerank-platform", "stack": "dev", "env": "dev"}
PROD = {**LABELS, "env": "prod"}
NODES = {"serviceAccount": "nodes@p.iam.gserviceaccount.com", "diskType": "pd-balanced", "diskSizeGb": 50}
SPOT_POOL = {
    "nodeConfig": {**NODES, "spot": True, "workloadMetadataConfig": {"mode": "GKE_METADATA"}},
    "autoscaling": {"totalMaxNodeCount": 3},
}


@pytest.mark.parametrize("stack", ["dev", "prod", "pr-7"])
def test_every_stack_passes_the_guardrails(stack: str) -> None:
    plan = planned(stack)
    assert violations([r for r in plan.resources if r.custom]) == []


# (rule, resource type, bad inputs, words the message must contain, the same resource made good)
CASES: list[tuple[str, str, dict[str, Any], str, dict[str, Any]]] = [
    ("no-long-lived-keys", "gcp:serviceaccount/key:Key", {"serviceAccountId": "x"}, "service account key", None),
    ("no-long-lived-keys", "aws:iam/accessKey:AccessKey", {"user": "ci"}, "access key", None),
    (
        "no-public-access",
        "gcp:storage/bucketIAMMember:BucketIAMMember",
        {"member": "allUsers", "role": "roles/storage.objectViewer"},
        "allUsers",
        {"member": "serviceAccount:a@p.iam.gserviceaccount.com", "role": "roles/storage.objectViewer"},
    ),
    (
        "no-public-access",
        "gcp:storage/bucket:Bucket",
        {"uniformBucketLevelAccess": True, "labels": LABELS},
        "publicAccessPrevention",
        {"uniformBucketLevelAccess": True, "publicAccessPrevention": "enforced", "labels": LABELS},
    ),
    (
        "no-public-access",
        "gcp:container/cluster:Cluster",
        {"workloadIdentityConfig": {"workloadPool": "p.svc.id.goog"}, "resourceLabels": LABELS},
        "private",
        {
            "workloadIdentityConfig": {"workloadPool": "p.svc.id.goog"},
            "privateClusterConfig": {"enablePrivateNodes": True},
            "nodeConfig": NODES,
            "resourceLabels": LABELS,
        },
    ),
    (
        "no-public-access",
        "gcp:cloudfunctionsv2/function:Function",
        {"serviceConfig": {"ingressSettings": "ALLOW_ALL"}, "labels": LABELS},
        "internet",
        {
            "serviceConfig": {
                "ingressSettings": "ALLOW_INTERNAL_ONLY",
                "serviceAccountEmail": "t@p.iam.gserviceaccount.com",
            },
            "buildConfig": {"serviceAccount": "projects/p/serviceAccounts/b@p.iam.gserviceaccount.com"},
            "labels": LABELS,
        },
    ),
    (
        "least-privilege-iam",
        "gcp:projects/iAMMember:IAMMember",
        {"role": "roles/editor", "member": "serviceAccount:w@p"},
        "primitive role",
        {"role": "roles/logging.logWriter", "member": "serviceAccount:w@p"},
    ),
    (
        "least-privilege-iam",
        "gcp:projects/iAMMember:IAMMember",
        {"role": "roles/pubsub.admin", "member": "serviceAccount:w@p"},
        "whole project",
        {"role": "roles/pubsub.subscriber", "member": "serviceAccount:w@p"},
    ),
    (
        "required-labels",
        "gcp:pubsub/topic:Topic",
        {"name": "t", "labels": {"app": "rerank-platform"}},
        "['stack', 'env']",
        {"name": "t", "labels": LABELS},
    ),
    (
        "subscriptions-dead-lettered",
        "gcp:pubsub/subscription:Subscription",
        {"topic": "projects/p/topics/requests", "labels": LABELS},
        "dead-letter policy",
        {
            "topic": "projects/p/topics/requests",
            "labels": LABELS,
            "deadLetterPolicy": {"deadLetterTopic": "projects/p/topics/dlq", "maxDeliveryAttempts": 5},
        },
    ),
    (
        "subscriptions-dead-lettered",
        "gcp:pubsub/subscription:Subscription",
        {
            "topic": "projects/p/topics/requests",
            "labels": LABELS,
            "deadLetterPolicy": {"deadLetterTopic": "projects/p/topics/dlq", "maxDeliveryAttempts": 2},
        },
        "at least 5",
        None,
    ),
    (
        "worker-pool-preemptible",
        "gcp:container/nodePool:NodePool",
        {**SPOT_POOL, "nodeConfig": {**NODES, "workloadMetadataConfig": {"mode": "GKE_METADATA"}}},
        "spot or preemptible",
        SPOT_POOL,
    ),
    (
        "worker-pool-preemptible",
        "gcp:container/nodePool:NodePool",
        {**SPOT_POOL, "nodeConfig": {**NODES, "preemptible": True}},
        "GKE_METADATA",
        {
            **SPOT_POOL,
            "nodeConfig": {**NODES, "preemptible": True, "workloadMetadataConfig": {"mode": "GKE_METADATA"}},
        },
    ),
    (
        "worker-pool-preemptible",
        "gcp:container/nodePool:NodePool",
        {**SPOT_POOL, "nodeConfig": {**SPOT_POOL["nodeConfig"], "labels": {"rerank.dev/pool": "system"}}},
        "system pool runs on-demand",
        {
            **SPOT_POOL,
            "nodeConfig": {
                **NODES,
                "workloadMetadataConfig": {"mode": "GKE_METADATA"},
                "labels": {"rerank.dev/pool": "system"},
            },
        },
    ),
    (
        "gke-workload-identity",
        "gcp:container/cluster:Cluster",
        {"privateClusterConfig": {"enablePrivateNodes": True}, "resourceLabels": LABELS},
        "workload identity",
        None,
    ),
    (
        "prod-protected",
        "gcp:redis/instance:Instance",
        {
            "labels": PROD,
            "tier": "BASIC",
            "deletionProtection": True,
            "authEnabled": True,
            "transitEncryptionMode": "SERVER_AUTHENTICATION",
        },
        "STANDARD_HA",
        {
            "labels": PROD,
            "tier": "STANDARD_HA",
            "deletionProtection": True,
            "authEnabled": True,
            "transitEncryptionMode": "SERVER_AUTHENTICATION",
        },
    ),
    (
        "prod-protected",
        "gcp:bigquery/table:Table",
        {"labels": PROD, "deletionProtection": False},
        "deletionProtection: true",
        {"labels": {**PROD, "env": "dev"}, "deletionProtection": False},
    ),
    (
        "prod-protected",
        "aws:dynamodb/table:Table",
        {
            "tags": PROD,
            "deletionProtectionEnabled": True,
            "ttl": {"enabled": True},
            "serverSideEncryption": {"enabled": True},
        },
        "point-in-time recovery",
        {
            "tags": PROD,
            "deletionProtectionEnabled": True,
            "pointInTimeRecovery": {"enabled": True},
            "ttl": {"enabled": True},
            "serverSideEncryption": {"enabled": True},
        },
    ),
    (
        "results-expire",
        "aws:dynamodb/table:Table",
        {"tags": LABELS, "serverSideEncryption": {"enabled": True}},
        "TTL",
        {"tags": LABELS, "ttl": {"enabled": True}, "serverSideEncryption": {"enabled": True}},
    ),
]
BY_NAME = {r.name: r for r in RULES}
CLUSTER = {
    "workloadIdentityConfig": {"workloadPool": "p.svc.id.goog"},
    "privateClusterConfig": {"enablePrivateNodes": True},
    "resourceLabels": LABELS,
}
BUCKET = {"labels": LABELS, "publicAccessPrevention": "enforced", "uniformBucketLevelAccess": True}
STREAMING_JOB = {
    "labels": LABELS,
    "serviceAccountEmail": "ingest@p.iam.gserviceaccount.com",
    "enableStreamingEngine": True,
}


POD = {
    "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
    "automountServiceAccountToken": False,
    "containers": [
        {
            "name": "w",
            "image": "r-docker.pkg.dev/p/r/app@sha256:ab",
            "securityContext": {
                "allowPrivilegeEscalation": False,
                "readOnlyRootFilesystem": True,
                "capabilities": {"drop": ["ALL"]},
            },
        }
    ],
}
BOUNDARY = "arn:aws:iam::111111111111:policy/rerank-boundary-dev"
TRUST = {
    "Statement": [
        {
            "Principal": {"Federated": "accounts.google.com"},
            "Condition": {
                "StringEquals": {
                    "accounts.google.com:aud": "1",
                    "accounts.google.com:oaud": "arn:aws:iam::1:role/r",
                    "accounts.google.com:sub": "1",
                }
            },
        }
    ]
}
CASES += [
    (
        "subscriptions-dead-lettered",
        "gcp:pubsub/subscription:Subscription",
        {"labels": LABELS, "topic": "x-dead-letter", "retryPolicy": {"minimumBackoff": "5s"}},
        "redeliver at once",
        {"labels": LABELS, "topic": "x-dead-letter"},
    ),
    (
        "pods-restricted",
        "kubernetes:apps/v1:Deployment",
        {"metadata": {"labels": PROD}, "spec": {"template": {"spec": {**POD, "automountServiceAccountToken": True}}}},
        "automountServiceAccountToken",
        {"metadata": {"labels": PROD}, "spec": {"template": {"spec": POD}}},
    ),
    (
        "pods-restricted",
        "kubernetes:batch/v1:CronJob",
        {
            "metadata": {"labels": PROD},
            "spec": {
                "jobTemplate": {
                    "spec": {
                        "template": {"spec": {**POD, "containers": [{**POD["containers"][0], "image": "r/app:1.0"}]}}
                    }
                }
            },
        },
        "pinned by digest",
        {"metadata": {"labels": PROD}, "spec": {"jobTemplate": {"spec": {"template": {"spec": POD}}}}},
    ),
    (
        "pods-restricted",
        "kubernetes:apps/v1:Deployment",
        {
            "metadata": {"labels": LABELS},
            "spec": {
                "template": {
                    "spec": {
                        **POD,
                        "containers": [
                            {
                                **POD["containers"][0],
                                "env": [{"name": "P", "valueFrom": {"secretKeyRef": {"key": "p"}}}],
                            }
                        ],
                    }
                }
            },
        },
        "mount them as files",
        None,
    ),
    (
        "alert-condition-limit",
        "gcp:monitoring/alertPolicy:AlertPolicy",
        {"userLabels": LABELS, "conditions": [{}] * 7},
        "at most 6",
        {"userLabels": LABELS, "conditions": [{}] * 6},
    ),
    (
        "alert-condition-limit",
        "gcp:monitoring/alertPolicy:AlertPolicy",
        {"userLabels": LABELS, "conditions": [{"conditionMatchedLog": {"filter": "f"}}, {}]},
        "only condition",
        {
            "userLabels": LABELS,
            "conditions": [{"conditionMatchedLog": {"filter": "f"}}],
            "alertStrategy": {"notificationRateLimit": {"period": "300s"}},
        },
    ),
    (
        "alert-condition-limit",
        "gcp:monitoring/alertPolicy:AlertPolicy",
        {"userLabels": LABELS, "conditions": [{"conditionMatchedLog": {"filter": "f"}}]},
        "notificationRateLimit",
        None,
    ),
    (
        "federated-trust-pinned",
        "aws:iam/role:Role",
        {
            "tags": LABELS,
            "assumeRolePolicy": json.dumps(
                {
                    "Statement": [
                        {**TRUST["Statement"][0], "Condition": {"StringEquals": {"accounts.google.com:aud": "1"}}}
                    ]
                }
            ),
        },
        "oaud",
        {"tags": LABELS, "assumeRolePolicy": json.dumps(TRUST), "permissionsBoundary": BOUNDARY},
    ),
    (
        "roles-bounded",
        "aws:iam/role:Role",
        {"tags": LABELS, "assumeRolePolicy": json.dumps(TRUST)},
        "the dev deployer's boundary",
        {"tags": LABELS, "assumeRolePolicy": json.dumps(TRUST), "permissionsBoundary": BOUNDARY},
    ),
    (
        "roles-bounded",
        "aws:iam/role:Role",
        {"tags": {**LABELS, "env": "ephemeral"}, "permissionsBoundary": BOUNDARY},
        "the review deployer's boundary",
        {"tags": {**LABELS, "env": "ephemeral"}, "permissionsBoundary": BOUNDARY.replace("-dev", "-review")},
    ),
    (
        "review-stack-destroyable",
        "gcp:storage/bucket:Bucket",
        {
            "labels": {**LABELS, "env": "ephemeral"},
            "publicAccessPrevention": "enforced",
            "uniformBucketLevelAccess": True,
            "forceDestroy": False,
        },
        "forceDestroy",
        {
            "labels": {**LABELS, "env": "ephemeral"},
            "publicAccessPrevention": "enforced",
            "uniformBucketLevelAccess": True,
            "forceDestroy": True,
        },
    ),
    (
        "service-networking-removable",
        "gcp:servicenetworking/connection:Connection",
        {"service": "servicenetworking.googleapis.com", "deletionPolicy": "ABANDON"},
        "REMOVE_PEERING",
        {"service": "servicenetworking.googleapis.com", "deletionPolicy": "REMOVE_PEERING"},
    ),
    (
        "no-default-accounts",
        "gcp:container/cluster:Cluster",
        {**CLUSTER, "nodeConfig": {"diskType": "pd-standard", "diskSizeGb": 20}},
        "nodeConfig.serviceAccount is unset",
        {**CLUSTER, "nodeConfig": {**NODES, "diskType": "pd-standard", "diskSizeGb": 20}},
    ),
    (
        "no-default-accounts",
        "gcp:dataflow/flexTemplateJob:FlexTemplateJob",
        {"labels": LABELS, "serviceAccountEmail": "123-compute@developer.gserviceaccount.com"},
        "is a default account",
        {"labels": LABELS, "serviceAccountEmail": "ingest@p.iam.gserviceaccount.com"},
    ),
    (
        "no-default-accounts",
        "gcp:projects/iAMMember:IAMMember",
        {"role": "roles/logging.logWriter", "member": "serviceAccount:p@appspot.gserviceaccount.com"},
        "is a default account",
        None,
    ),
    (
        "nodes-stated",
        "gcp:container/nodePool:NodePool",
        {**SPOT_POOL, "nodeConfig": {**SPOT_POOL["nodeConfig"], "diskType": None}},
        "nodeConfig.diskType is unset",
        SPOT_POOL,
    ),
    (
        "storage-bounded",
        "gcp:bigquery/table:Table",
        {"labels": LABELS, "timePartitioning": {"type": "DAY", "field": "t"}},
        "partitions never expire",
        {"labels": LABELS, "timePartitioning": {"type": "DAY", "field": "t", "expirationMs": 86400000}},
    ),
    (
        "storage-bounded",
        "gcp:artifactregistry/repository:Repository",
        {
            "labels": LABELS,
            "cleanupPolicies": [
                {"id": "keep", "action": "KEEP", "mostRecentVersions": {"keepCount": 20}},
                {"id": "old", "action": "DELETE", "condition": {"tagState": "UNTAGGED", "olderThan": "2592000s"}},
            ],
        },
        "grows without bound",
        {
            "labels": LABELS,
            "cleanupPolicies": [
                {"id": "keep", "action": "KEEP", "mostRecentVersions": {"keepCount": 20}},
                {"id": "old", "action": "DELETE", "condition": {"tagState": "ANY", "olderThan": "2592000s"}},
            ],
        },
    ),
    (
        "storage-bounded",
        "gcp:storage/bucket:Bucket",
        {**BUCKET, "versioning": {"enabled": True}},
        "noncurrent",
        {
            **BUCKET,
            "versioning": {"enabled": True},
            "lifecycleRules": [{"action": {"type": "Delete"}, "condition": {"daysSinceNoncurrentTime": 30}}],
        },
    ),
    (
        "subscriptions-dead-lettered",
        "gcp:pubsub/subscription:Subscription",
        {"labels": {**LABELS, "consumer": "dataflow"}, "topic": "t", "retryPolicy": {"minimumBackoff": "5s"}},
        "Dataflow-consumed",
        {"labels": {**LABELS, "consumer": "dataflow"}, "topic": "t"},
    ),
    (
        "streaming-mode-stated",
        "gcp:dataflow/flexTemplateJob:FlexTemplateJob",
        {**STREAMING_JOB, "additionalExperiments": ["use_network_tags=dataflow"]},
        "state 0 streaming modes",
        {**STREAMING_JOB, "additionalExperiments": ["use_network_tags=dataflow", "streaming_mode_at_least_once"]},
    ),
    (
        "streaming-mode-stated",
        "gcp:dataflow/flexTemplateJob:FlexTemplateJob",
        {**STREAMING_JOB, "additionalExperiments": ["streaming_mode_at_least_once", "streaming_mode_exactly_once"]},
        "state 2 streaming modes",
        {**STREAMING_JOB, "additionalExperiments": ["streaming_mode_exactly_once"]},
    ),
    (
        "service-account-ids-fit",
        "gcp:serviceaccount/account:Account",
        {"accountId": "rerank-staging-w-a-very-long-variant"},
        "6-30",
        {"accountId": "rerank-staging-w-a-very-8c1e"},
    ),
    (
        "pipeline-resources-literal",
        "gcp:storage/bucketObject:BucketObject",
        {"name": "pipelines/t.yaml", "content": "deploymentSpec:\n  x:\n    resourceMemoryLimit: '{{$.inputs.p}}'\n"},
        "resourceMemoryLimit from placeholders",
        {"name": "pipelines/t.yaml", "content": "deploymentSpec:\n  x:\n    resourceMemoryLimit: 16G\n"},
    ),
]


@pytest.mark.parametrize("rule, type_token, bad, needle, good", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_each_rule_catches_its_bad_resource_and_passes_the_fixed_one(
    rule: str, type_token: str, bad: dict[str, Any], needle: str, good: dict[str, Any] | None
) -> None:
    messages = BY_NAME[rule].check(type_token, bad)
    assert len(messages) == 1 and needle in messages[0], messages
    if good is not None:
        assert [m for r in RULES for m in r.check(type_token, good)] == []


def test_every_rule_has_a_case() -> None:
    assert {c[0] for c in CASES} == set(BY_NAME)


def test_a_dead_lettered_subscription_without_an_alert_fails_the_stack_rule() -> None:
    sub = ("gcp:pubsub/subscription:Subscription", {"name": "s1", "deadLetterPolicy": {"deadLetterTopic": "d"}})
    alert = (
        "gcp:monitoring/alertPolicy:AlertPolicy",
        {"conditions": [{"conditionThreshold": {"filter": 'resource.labels.subscription_id = "s1"'}}]},
    )
    assert alerts_for_subscriptions(as_stack([sub])) == ["no alert watches subscription s1"]
    assert alerts_for_subscriptions(as_stack([sub, alert])) == []


PACK_CHECK = r"""
import json, runpy, sys
import pulumi_policy
captured = {}
class Capture:
    def __init__(self, name, policies, **kw):
        captured.update(name=name, policies=policies, level=kw.get("enforcement_level"))
pulumi_policy.PolicyPack = Capture
sys.path.insert(0, sys.argv[1])
runpy.run_path(sys.argv[1] + "/__main__.py", run_name="__main__")

class Args:
    def __init__(self, t, props):
        self.resource_type, self.props, self.urn, self.name = t, props, "urn:pulumi:dev::p::" + t + "::x", "x"
out = {"name": captured["name"], "level": str(captured["level"]), "policies": {}}
cases = json.loads(sys.argv[2])
for policy in captured["policies"]:
    if isinstance(policy, pulumi_policy.ResourceValidationPolicy):
        reports = []
        for t, props in cases:
            policy.validate(Args(t, props), lambda msg, urn=None: reports.append(msg))
        out["policies"][policy.name] = reports
out["stack_policies"] = [p.name for p in captured["policies"] if isinstance(p, pulumi_policy.StackValidationPolicy)]
print(json.dumps(out))
"""


def test_the_pack_reports_violations_through_crossguard() -> None:
    """``__main__.py`` in its own environment (.venv-policy, as ``pulumi preview --policy-pack``
    runs it), with PolicyPack captured instead of served: each policy reports through CrossGuard's
    ``report_violation``."""
    python = REPO_ROOT / ".venv-policy/bin/python"
    assert python.exists(), "run scripts/bootstrap.sh: it makes the policy pack's environment"
    cases = [
        ("gcp:serviceaccount/key:Key", {}),
        ("gcp:projects/iAMMember:IAMMember", {"role": "roles/owner", "member": "user:x"}),
    ]
    done = subprocess.run(
        [str(python), "-c", PACK_CHECK, str(REPO_ROOT / "infra/policy"), json.dumps(cases)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["name"] == "rerank-guardrails" and "MANDATORY" in out["level"]
    assert set(out["policies"]) == set(BY_NAME)
    assert set(out["stack_policies"]) == set(STACK_RULES)
    assert out["policies"]["no-long-lived-keys"] == [
        "a service account key is a long-lived credential; use workload identity or OIDC federation"
    ]
    assert out["policies"]["least-privilege-iam"] == [
        "roles/owner is a primitive role; grant the predefined role the workload uses"
    ]
    assert out["policies"]["required-labels"] == []


def test_a_spec_sizing_a_step_from_a_placeholder_breaks_the_pipeline_rule() -> None:
    """dev's published spec, its train step's memory made a task output's placeholder, as it once was."""
    spec = next(
        r
        for r in planned("dev").resources
        if r.type == "gcp:storage/bucketObject:BucketObject" and "deploymentSpec:" in str(r.inputs.get("content"))
    )
    assert pipeline_resources_literal(spec.type, spec.inputs) == []
    content = spec.inputs["content"]
    assert "resourceMemoryLimit: 16G" in content
    broken = content.replace(
        "resourceMemoryLimit: 16G",
        "resourceMemoryLimit: '{{$.inputs.parameters[''pipelinechannel--size-training-Output'']}}'",
        1,
    )
    messages = pipeline_resources_literal(spec.type, {**spec.inputs, "content": broken})
    assert len(messages) == 1 and "resourceMemoryLimit" in messages[0], messages
