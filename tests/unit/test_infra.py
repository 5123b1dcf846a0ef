"""The Pulumi program under Pulumi's mocks (no CLI, no credentials): what dev, prod and a review
stack declare, their IAM, protections and failure on bad configuration."""

from __future__ import annotations

import json
from typing import Any

import pulumi
import pytest
import yaml

from app.naming import Names
from app.settings import REPO_ROOT, StackConfigError, load_stack, settings_from_mapping
from infra.config import settings_from_config, stack_config_mapping
from infra.plan import Plan, PlannedResource, StackMocks, plan_entry
from infra.program import APIS
from tests.unit.infra_plans import planned

pytestmark = pytest.mark.timeout(180)

IAM_TYPES = (
    "gcp:projects/iAMMember:IAMMember",
    "gcp:pubsub/topicIAMMember:TopicIAMMember",
    "gcp:pubsub/subscriptionIAMMember:SubscriptionIAMMember",
    "gcp:storage/bucketIAMMember:BucketIAMMember",
    "gcp:bigquery/datasetIamMember:DatasetIamMember",
    "gcp:bigquery/iamMember:IamMember",
    "gcp:artifactregistry/repositoryIamMember:RepositoryIamMember",
    "gcp:serviceaccount/iAMMember:IAMMember",
    "gcp:cloudrunv2/serviceIamMember:ServiceIamMember",
)
KEY_TYPES = ("gcp:serviceaccount/key:Key", "gcp:storage/hmacKey:HmacKey", "aws:iam/accessKey:AccessKey")


def stack_yaml(stack: str) -> dict[str, Any]:
    return yaml.safe_load((REPO_ROOT / f"stacks/Pulumi.{stack}.yaml").read_text())["config"]


def custom(plan: Plan, type_token: str) -> list[PlannedResource]:
    return [r for r in plan.of_type(type_token) if r.custom]


def email(plan: Plan, role: str) -> str:
    return f"serviceAccount:{plan.outputs['service_accounts'][role]}"


# --- inventory -------------------------------------------------------------------------------


# Schedules: the trained variants (primary and b; the shadow follows b) times the stack's schedules.
@pytest.mark.parametrize("stack, schedules", [("dev", 2), ("prod", 4), ("pr-7", 0)])
def test_each_stack_declares_the_whole_system(stack: str, schedules: int) -> None:
    plan, settings = planned(stack), load_stack(stack)
    n, variants = Names.of(settings), settings.serving.variants
    count = {t: len(custom(plan, t)) for t in {r.type for r in plan.resources}}
    assert count["gcp:pubsub/topic:Topic"] == 7
    assert {r.inputs["name"] for r in custom(plan, "gcp:pubsub/subscription:Subscription")} == {
        n.feature_ingest_subscription,
        n.feature_dead_letter_subscription,
        n.requests_dead_letter_subscription,
        n.predictions_subscription,
        n.predictions_dead_letter_subscription,
        *(n.variant_subscription(v.name) for v in variants),
    }
    assert {r.inputs["tableId"] for r in custom(plan, "gcp:bigquery/table:Table")} == {
        "user_profile_v1",
        "user_profile_v2",
        "user_activity_v1",
        "predictions",
    }
    # Review stacks run no streaming ingest job unless dev's file asks for one.
    assert count.get("gcp:dataflow/flexTemplateJob:FlexTemplateJob", 0) == (0 if stack.startswith("pr-") else 1)
    for one in (
        "gcp:redis/instance:Instance",
        "gcp:container/cluster:Cluster",
        "gcp:cloudfunctionsv2/function:Function",
        "gcp:artifactregistry/repository:Repository",
        "aws:dynamodb/table:Table",
        "aws:iam/role:Role",
        "kubernetes:helm.sh/v3:Release",
    ):
        assert count.get(one) == 1, one
    # prod: the Spot workers' pool and the on-demand system pool.
    assert count["gcp:container/nodePool:NodePool"] == (2 if stack == "prod" else 1)
    assert count.get("gcp:cloudscheduler/job:Job", 0) == schedules
    assert {r.inputs["metadata"]["name"] for r in custom(plan, "kubernetes:apps/v1:Deployment")} == {
        n.worker_deployment(v.name) for v in variants
    }
    assert count["kubernetes:keda.sh/v1alpha1:ScaledObject"] == len(variants)
    # pr-7 runs no ingest job and no schedules: no ingest-lag or schedule-failures alert.
    assert count["gcp:monitoring/alertPolicy:AlertPolicy"] == (10 if stack.startswith("pr-") else 12)
    components = {r.type for r in plan.resources if not r.custom}
    assert {
        "rerank:feature_store:FeatureStore",
        "rerank:training:Training",
        "rerank:serving:Serving",
        "rerank:cross_cloud:CrossCloud",
        "rerank:monitoring:Monitoring",
    } <= components
    # Every stack output the app needs resolves to a value.
    for key in ("requests_topic", "bigquery_dataset", "redis_host", "results_table", "pipeline_template", "cluster"):
        assert plan.outputs[key], key


def _physical_names(plan: Plan) -> set[str]:
    keys = ("name", "accountId", "datasetId", "repositoryId", "workloadIdentityPoolId")
    # Objects inside the stack's own buckets are left out: their bucket names already differ.
    return {
        str(r.inputs[k])
        for r in plan.resources
        if r.custom and r.type != "gcp:storage/bucketObject:BucketObject"
        for k in keys
        if k in r.inputs
    } - {"keda"}


def test_a_review_stack_shares_no_name_with_dev() -> None:
    dev, review = _physical_names(planned("dev")), _physical_names(planned("pr-7"))
    # Kubernetes objects live in each stack's own cluster; everything else must differ.
    k8s_local = {"online-store", "gcp-workload-identity", "default-deny", "allow-egress", "allow-worker-metrics"}
    assert dev & review - k8s_local == set()


def test_a_review_stack_is_small_and_unprotected() -> None:
    plan = planned("pr-7")
    assert [r.name for r in plan.resources if r.protect] == []
    pool = custom(plan, "gcp:container/nodePool:NodePool")[0].inputs["autoscaling"]
    assert pool["totalMaxNodeCount"] <= 2
    redis = custom(plan, "gcp:redis/instance:Instance")[0].inputs
    assert redis["tier"] == "BASIC" and redis["memorySizeGb"] == 1
    assert custom(plan, "gcp:dataflow/flexTemplateJob:FlexTemplateJob") == []
    assert custom(plan, "gcp:iam/workloadIdentityPool:WorkloadIdentityPool") == []
    assert all(b["inputs"]["forceDestroy"] for b in [r.__dict__ for r in custom(plan, "gcp:storage/bucket:Bucket")])


# --- protections -----------------------------------------------------------------------------

PROTECTED = (
    "gcp:bigquery/dataset:Dataset",
    "gcp:bigquery/table:Table",
    "gcp:redis/instance:Instance",
    "gcp:container/cluster:Cluster",
    "gcp:artifactregistry/repository:Repository",
    "aws:dynamodb/table:Table",
)


def test_prod_is_protected_and_highly_available() -> None:
    plan = planned("prod")
    for t in PROTECTED:
        assert all(r.protect for r in custom(plan, t)), t
    assert all(r.inputs["deletionProtection"] for r in custom(plan, "gcp:bigquery/table:Table"))
    assert custom(plan, "gcp:container/cluster:Cluster")[0].inputs["deletionProtection"] is True
    redis = custom(plan, "gcp:redis/instance:Instance")[0].inputs
    assert redis["tier"] == "STANDARD_HA" and redis["authEnabled"] is True
    assert redis["transitEncryptionMode"] == "SERVER_AUTHENTICATION"
    assert redis["persistenceConfig"]["persistenceMode"] == "RDB"
    table = custom(plan, "aws:dynamodb/table:Table")[0].inputs
    assert table["pointInTimeRecovery"]["enabled"] is True and table["deletionProtectionEnabled"] is True
    assert table["ttl"] == {"attributeName": "expires_at", "enabled": True}
    bucket = next(r for r in custom(plan, "gcp:storage/bucket:Bucket") if r.name == "training-pipeline-root")
    assert bucket.inputs["versioning"]["enabled"] is True and bucket.inputs["forceDestroy"] is False
    assert custom(plan, "gcp:bigquery/dataset:Dataset")[0].inputs["maxTimeTravelHours"] == "168"


def test_dev_is_not_protected_but_keeps_point_in_time_recovery() -> None:
    plan = planned("dev")
    assert [r.name for r in plan.resources if r.protect] == []
    assert custom(plan, "aws:dynamodb/table:Table")[0].inputs["pointInTimeRecovery"]["enabled"] is True


# --- identity and access ---------------------------------------------------------------------


@pytest.mark.parametrize("stack", ["dev", "prod", "pr-7"])
def test_no_long_lived_keys_anywhere(stack: str) -> None:
    plan = planned(stack)
    assert [r.name for r in plan.resources if r.type in KEY_TYPES] == []
    dumped = json.dumps([r.inputs for r in plan.resources])
    assert "AWS_SECRET_ACCESS_KEY" not in dumped and "private_key" not in dumped


def test_project_wide_roles_are_only_the_ones_without_a_narrower_grant() -> None:
    plan = planned("dev")
    granted: dict[str, set[str]] = {}
    for r in custom(plan, "gcp:projects/iAMMember:IAMMember"):
        granted.setdefault(r.inputs["member"], set()).add(r.inputs["role"])
    assert granted == {
        email(plan, "ingest"): {"roles/dataflow.worker"},
        # readSessionUser: the BigQuery Storage Read API, which query results come through.
        email(plan, "pipeline"): {"roles/aiplatform.user", "roles/bigquery.jobUser", "roles/bigquery.readSessionUser"},
        email(plan, "trigger"): {"roles/aiplatform.user"},
        email(plan, "nodes"): {
            "roles/logging.logWriter",
            "roles/monitoring.metricWriter",
            "roles/monitoring.viewer",
            "roles/stackdriver.resourceMetadata.writer",
        },
        email(plan, "keda"): {"roles/monitoring.viewer"},
        email(plan, "drift"): {"roles/bigquery.jobUser", "roles/bigquery.readSessionUser"},
        email(plan, "build"): {"roles/logging.logWriter"},
        # The Eventarc service agent's own role, granted because a fresh project's agent lacks it.
        "serviceAccount:service-123456789012@gcp-sa-eventarc.iam.gserviceaccount.com": {"roles/eventarc.serviceAgent"},
    }
    roles = {r.inputs["role"] for t in IAM_TYPES for r in custom(plan, t)}
    assert not {"roles/owner", "roles/editor", "roles/viewer"} & roles
    assert not [role for role in roles if role.endswith(".admin")]


def test_each_variant_pulls_only_its_subscription_and_publishes_only_predictions_and_poison() -> None:
    plan, n = planned("dev"), Names.of(load_stack("dev"))
    variants = ("primary", "b", "shadow")
    workers = {v: email(plan, f"worker-{v}") for v in variants}
    assert len(set(workers.values())) == 3
    for v, worker in workers.items():
        pulls = {
            r.inputs["subscription"]
            for r in custom(plan, "gcp:pubsub/subscriptionIAMMember:SubscriptionIAMMember")
            if r.inputs["member"] == worker
        }
        assert pulls == {n.variant_subscription(v)}
        publishes = {
            r.inputs["topic"]
            for r in custom(plan, "gcp:pubsub/topicIAMMember:TopicIAMMember")
            if r.inputs["member"] == worker
        }
        assert publishes == {n.predictions_topic, n.requests_dead_letter_topic}
    # Workload identity: each variant's Kubernetes account acts as its own variant's account only.
    bindings = sorted(
        (r.inputs["serviceAccountId"].rsplit("/", 1)[-1], r.inputs["member"])
        for r in custom(plan, "gcp:serviceaccount/iAMMember:IAMMember")
        if r.inputs["role"] == "roles/iam.workloadIdentityUser"
    )
    pool = "serviceAccount:rerank-dev-123456.svc.id.goog"
    accounts = plan.outputs["service_accounts"]
    assert bindings == sorted(
        [(accounts[f"worker-{v}"], f"{pool}[rerank-dev/worker-{v}]") for v in variants]
        + [
            (accounts["keda"], f"{pool}[rerank-dev-keda/keda-operator]"),
            (accounts["drift"], f"{pool}[rerank-dev/drift]"),
        ]
    )


def test_the_aws_role_trusts_only_the_primary_and_arm_workers_google_identities() -> None:
    plan = planned("dev")
    role = custom(plan, "aws:iam/role:Role")[0].inputs
    trust = json.loads(role["assumeRolePolicy"])["Statement"]
    assert len(trust) == 1 and trust[0]["Principal"] == {"Federated": "accounts.google.com"}
    mocks = StackMocks(load_stack("dev"))
    unique_ids = {
        r.inputs["accountId"]: mocks.new_resource(pulumi.runtime.MockResourceArgs(r.type, r.name, r.inputs))[1][
            "uniqueId"
        ]
        for r in custom(plan, "gcp:serviceaccount/account:Account")
    }
    equals = trust[0]["Condition"]["StringEquals"]
    writers = sorted([unique_ids["rerank-dev-w-primary"], unique_ids["rerank-dev-w-b"]])
    assert equals["accounts.google.com:sub"] == equals["accounts.google.com:aud"] == writers
    assert unique_ids["rerank-dev-w-shadow"] not in json.dumps(trust)
    policy = json.loads(custom(plan, "aws:iam/rolePolicy:RolePolicy")[0].inputs["policy"])["Statement"]
    assert policy == [
        {
            "Effect": "Allow",
            "Action": ["dynamodb:PutItem", "dynamodb:GetItem"],
            "Resource": plan.outputs["results_table_arn"],
        }
    ]
    assert plan.outputs["results_writer_role_arn"] == "arn:aws:iam::111111111111:role/rerank-dev-results-writer"


def test_the_core_service_may_only_publish_requests_and_drop_impressions_through_its_role() -> None:
    plan = planned("prod")
    provider = custom(plan, "gcp:iam/workloadIdentityPoolProvider:WorkloadIdentityPoolProvider")[0].inputs
    assert provider["aws"] == {"accountId": "222222222222"}
    assert (
        provider["attributeCondition"] == "attribute.aws_role == 'arn:aws:sts::222222222222:assumed-role/core-service'"
    )
    grants = [r.inputs for t in IAM_TYPES for r in custom(plan, t) if r.inputs["member"].startswith("principalSet://")]
    assert sorted((g["role"], g.get("topic") or g.get("bucket")) for g in grants) == [
        ("roles/pubsub.publisher", "rerank-prod-rerank-requests"),
        ("roles/storage.objectCreator", "rerank-prod-123456-rerank-prod-pipelines"),
    ]
    impressions = next(g for g in grants if g["role"] == "roles/storage.objectCreator")["condition"]["expression"]
    assert impressions == (
        'resource.name.startsWith("projects/_/buckets/rerank-prod-123456-rerank-prod-pipelines/objects/impressions/")'
    )


# --- serving -----------------------------------------------------------------------------------


@pytest.mark.parametrize("stack", ["dev", "prod", "pr-7"])
def test_the_worker_pool_is_spot_and_autoscaled_on_a_private_workload_identity_cluster(stack: str) -> None:
    plan, settings = planned(stack), load_stack(stack)
    node = next(p for p in custom(plan, "gcp:container/nodePool:NodePool") if p.name == "serving-workers").inputs
    assert node["nodeConfig"]["spot"] is True or node["nodeConfig"]["preemptible"] is True
    assert node["nodeConfig"]["workloadMetadataConfig"] == {"mode": "GKE_METADATA"}
    assert node["nodeConfig"]["serviceAccount"] == plan.outputs["service_accounts"]["nodes"]
    assert node["autoscaling"]["totalMaxNodeCount"] == settings.serving.node_pool.max_nodes
    cluster = custom(plan, "gcp:container/cluster:Cluster")[0].inputs
    assert cluster["privateClusterConfig"]["enablePrivateNodes"] is True
    assert cluster["workloadIdentityConfig"] == {"workloadPool": f"{settings.gcp.project}.svc.id.goog"}
    assert cluster["removeDefaultNodePool"] is True


def test_prod_keeps_add_ons_and_keda_on_an_on_demand_system_pool_and_workers_on_spot() -> None:
    from infra.common import SPOT_TAINT

    prod, dev = planned("prod"), planned("dev")
    pools = {p.name: p.inputs["nodeConfig"] for p in custom(prod, "gcp:container/nodePool:NodePool")}
    assert set(pools) == {"serving-workers", "serving-system"}
    assert not pools["serving-system"].get("spot") and not pools["serving-system"].get("preemptible")
    assert pools["serving-system"]["labels"] == {"rerank.dev/pool": "system"}
    assert pools["serving-workers"]["taints"] == [{**SPOT_TAINT, "effect": "NO_SCHEDULE"}]
    (keda,) = custom(prod, "kubernetes:helm.sh/v3:Release")
    values = keda.inputs["values"]
    assert values["nodeSelector"] == {"rerank.dev/pool": "system"} and values["podDisruptionBudget"]
    assert all(values[part]["replicaCount"] == 2 for part in ("operator", "metricsServer", "webhooks"))
    # Workers and drift checks tolerate the Spot taint and select the Spot pool; workers spread.
    pods = [r.inputs["spec"]["template"]["spec"] for r in custom(prod, "kubernetes:apps/v1:Deployment")]
    pods += [
        r.inputs["spec"]["jobTemplate"]["spec"]["template"]["spec"] for r in custom(prod, "kubernetes:batch/v1:CronJob")
    ]
    assert pods and all(p["nodeSelector"] == {"rerank.dev/pool": "workers"} and p["tolerations"] for p in pods)
    spread = [p.get("topologySpreadConstraints") for p in pods if "restartPolicy" not in p]
    assert spread and all(
        {c["topologyKey"] for c in s} == {"topology.kubernetes.io/zone", "kubernetes.io/hostname"} for s in spread
    )
    # dev: one Spot pool, untainted (nothing else to run system pods on).
    (dev_pool,) = custom(dev, "gcp:container/nodePool:NodePool")
    assert not dev_pool.inputs["nodeConfig"].get("taints")
    assert "nodeSelector" not in custom(dev, "kubernetes:helm.sh/v3:Release")[0].inputs["values"]


def test_prod_soaks_gke_behind_dev_with_maintenance_windows_on_the_cluster_and_memorystore() -> None:
    from app.settings import RELEASE_CHANNELS

    channels = {}
    for stack in ("dev", "prod"):
        plan = planned(stack)
        (cluster,) = custom(plan, "gcp:container/cluster:Cluster")
        channels[stack] = cluster.inputs["releaseChannel"]["channel"]
        assert cluster.inputs["maintenancePolicy"]["recurringWindow"] == {
            "startTime": "2025-01-01T02:00:00Z",
            "endTime": "2025-01-01T08:00:00Z",
            "recurrence": "FREQ=WEEKLY;BYDAY=SA,SU",
        }
        (redis,) = custom(plan, "gcp:redis/instance:Instance")
        assert redis.inputs["maintenancePolicy"]["weeklyMaintenanceWindows"] == [
            {"day": "SATURDAY", "startTime": {"hours": 2, "minutes": 0, "seconds": 0, "nanos": 0}}
        ]
    assert channels == {"dev": "REGULAR", "prod": "STABLE"}
    assert RELEASE_CHANNELS.index(channels["prod"]) > RELEASE_CHANNELS.index(channels["dev"])


def test_the_pinned_keda_chart_is_tested_on_every_version_each_channel_runs() -> None:
    from app.settings import RELEASE_CHANNELS
    from infra.kubernetes_versions import GKE_CHANNELS, KEDA_KUBERNETES, uncovered
    from infra.serving import KEDA_CHART_VERSION

    assert set(GKE_CHANNELS) == set(RELEASE_CHANNELS)  # every channel a stack may choose
    assert [p for ch in RELEASE_CHANNELS for p in uncovered(KEDA_CHART_VERSION, ch)] == []
    # What the issue found: 2.16 is tested on 1.29-1.31 only.
    assert uncovered("2.16.1", "STABLE") == [
        "KEDA 2.16 is tested on Kubernetes 1.29-1.31; the STABLE channel runs 1.34",
        "KEDA 2.16 is tested on Kubernetes 1.29-1.31; the STABLE channel runs 1.35",
    ]
    assert uncovered("2.20.2", "REGULAR") == [
        "KEDA 2.20 is tested on Kubernetes 1.33-1.35; the REGULAR channel runs 1.36"
    ]
    assert "not in the compatibility table" in uncovered("3.0.0", "STABLE")[0]
    assert all(low <= high for low, high in KEDA_KUBERNETES.values())


def _alert_keys(plan: Plan) -> set[str]:
    return {r.inputs["userLabels"]["alert"] for r in custom(plan, "gcp:monitoring/alertPolicy:AlertPolicy")}


@pytest.mark.parametrize("stack", ["dev", "prod", "pr-7"])
def test_every_component_that_can_fail_has_an_alert_and_every_alert_a_runbook_line(stack: str) -> None:
    from infra.monitoring import FAILURE_MODES, unwatched

    plan = planned(stack)
    assert (
        unwatched(
            {r.type for r in plan.resources if r.custom or r.type.startswith("pulumi:providers:")}, _alert_keys(plan)
        )
        == []
    )
    runbook = (REPO_ROOT / "infra/README.md").read_text().split("## Runbook", 1)[1]
    rows = {line.split("|")[1].strip().strip("`") for line in runbook.splitlines() if line.startswith("| `")}
    assert {a for m in FAILURE_MODES for a in m.alerts} <= rows
    assert _alert_keys(plan) <= rows


def test_the_alert_table_catches_a_new_component_and_a_missing_alert() -> None:
    from infra.monitoring import unwatched

    plan = planned("dev")
    types = {r.type for r in plan.resources if r.custom or r.type.startswith("pulumi:providers:")}
    keys = _alert_keys(plan)
    assert unwatched(types | {"gcp:sql/databaseInstance:DatabaseInstance"}, keys) == [
        "gcp:sql/databaseInstance:DatabaseInstance: no failure mode in infra/monitoring.py FAILURE_MODES "
        "and not in NO_FAILURE_MODE"
    ]
    assert unwatched(types, keys - {"online-store-memory"}) == [
        "Memorystore, the online store: memory pressure and evictions: no alert online-store-memory"
    ]
    assert unwatched(types, keys - {"aws-credentials"}) == [
        "AWS STS: the workers' exchange of their Google identity for the results role: no alert aws-credentials"
    ]


def test_the_worker_alerts_count_the_lines_the_workers_log() -> None:
    from app.serving.observability import AWS_CREDENTIALS_FAILED, RESULTS_WRITE_FAILED

    plan = planned("prod")
    metrics = {r.inputs["name"]: r.inputs["filter"] for r in custom(plan, "gcp:logging/metric:Metric")}
    assert f'textPayload : "{RESULTS_WRITE_FAILED}"' in metrics["rerank-prod-results-write-failures"]
    assert f'textPayload : "{AWS_CREDENTIALS_FAILED}"' in metrics["rerank-prod-aws-credential-failures"]
    assert all('resource.labels.namespace_name = "rerank-prod"' in f for f in metrics.values())
    watched = json.dumps([p.inputs["conditions"] for p in custom(plan, "gcp:monitoring/alertPolicy:AlertPolicy")])
    assert all(f"logging.googleapis.com/user/{name}" in watched for name in metrics)


def test_variant_subscriptions_are_filtered_and_dead_lettered() -> None:
    plan, n = planned("dev"), Names.of(load_stack("dev"))
    subs = {r.inputs["name"]: r.inputs for r in custom(plan, "gcp:pubsub/subscription:Subscription")}
    dlq = f"projects/rerank-dev-123456/topics/{n.requests_dead_letter_topic}"
    for variant, expected_filter in (
        ("primary", 'NOT attributes.arm = "b"'),
        ("b", 'attributes.arm = "b"'),
        ("shadow", None),
    ):
        sub = subs[n.variant_subscription(variant)]
        assert sub.get("filter") == expected_filter
        assert sub["deadLetterPolicy"] == {"deadLetterTopic": dlq, "maxDeliveryAttempts": 5}
    # Dataflow's Pub/Sub source supports no dead-letter or backoff policy on its subscription: the
    # job dead-letters rejects itself, to the feature dead-letter topic.
    ingest = subs[n.feature_ingest_subscription]
    assert "deadLetterPolicy" not in ingest and "retryPolicy" not in ingest
    assert ingest["labels"]["consumer"] == "dataflow"
    # The Pub/Sub service agent can move dead letters: publish to each DLQ, consume each source.
    agent = "serviceAccount:service-123456789012@gcp-sa-pubsub.iam.gserviceaccount.com"
    forwarders = {
        r.name
        for r in custom(plan, "gcp:pubsub/subscriptionIAMMember:SubscriptionIAMMember")
        if r.inputs["member"] == agent
    }
    assert forwarders == {f"{s}-dlq-forwarder" for s, v in subs.items() if "deadLetterPolicy" in v}
    predictions = subs[n.predictions_subscription]["bigqueryConfig"]
    assert predictions["table"] == "rerank-dev-123456.rerank_dev_features.predictions" and predictions["useTableSchema"]


def test_each_variant_runs_its_own_workers_scaled_on_its_backlog() -> None:
    plan, settings = planned("dev"), load_stack("dev")
    n = Names.of(settings)
    deployments = {
        r.inputs["metadata"]["name"]: r.inputs["spec"] for r in custom(plan, "kubernetes:apps/v1:Deployment")
    }
    scalers = {
        r.inputs["metadata"]["name"]: r.inputs["spec"] for r in custom(plan, "kubernetes:keda.sh/v1alpha1:ScaledObject")
    }
    for v in settings.serving.variants:
        pod = deployments[n.worker_deployment(v.name)]["template"]["spec"]
        container = pod["containers"][0]
        assert container["args"][:7] == ["serve", "--stack", "dev", "--variant", v.name, "--endpoints", "env"]
        env_values = {e["name"]: e.get("value") for e in container["env"]}
        assert env_values["MODEL_REGISTRY"] == "/gcs/rerank-dev-123456-rerank-dev-pipelines/registry"
        models = next(vol for vol in pod["volumes"] if vol["name"] == "models")["csi"]
        assert models["volumeAttributes"]["bucketName"] == "rerank-dev-123456-rerank-dev-pipelines"
        assert container["image"] == f"{plan.outputs['image_repository']}/app:{plan.outputs['image_tags']['app']}"
        assert pod["serviceAccountName"] == f"worker-{v.name}"
        env = {e["name"] for e in container["env"]}
        assert ("AWS_ROLE_ARN" in env) == (v.kind != "shadow")  # shadows never write served results
        # KEDA owns the replica count.
        assert "replicas" not in deployments[n.worker_deployment(v.name)]
        trigger = scalers[n.worker_deployment(v.name)]["triggers"][0]
        assert trigger["type"] == "gcp-pubsub"
        assert trigger["metadata"]["subscriptionName"] == plan.outputs["variant_subscriptions"][v.name]
        assert trigger["metadata"]["value"] == str(settings.serving.worker.backlog_per_replica)


def test_schedules_publish_a_payload_the_trigger_function_accepts() -> None:
    import base64

    from app.trigger.payload import parse_payload, with_schedule_id

    plan = planned("prod")
    jobs = {r.inputs["name"]: r.inputs for r in custom(plan, "gcp:cloudscheduler/job:Job")}
    # One job per trained variant and schedule; the shadow follows b's model and has none.
    assert {k: v["schedule"] for k, v in jobs.items()} == {
        "rerank-prod-train-primary-nightly": "0 3 * * *",
        "rerank-prod-train-primary-weekly-full": "0 3 * * 1",
        "rerank-prod-train-b-nightly": "0 3 * * *",
        "rerank-prod-train-b-weekly-full": "0 3 * * 1",
    }
    b = parse_payload(
        with_schedule_id(
            json.loads(base64.b64decode(jobs["rerank-prod-train-b-nightly"]["pubsubTarget"]["data"])),
            "2026-11-27T03:00:02Z",
        )
    )
    # Each payload deploys to its own variant (and to the variants that follow it).
    assert (b.parameters["variant"], b.parameters["worker_deployment"]) == ("b", "rerank-prod-worker-b")
    assert json.loads(b.parameters["followers"]) == {"shadow": "rerank-prod-worker-shadow"}
    assert b.trigger_id == "b-nightly-2026112703"
    doc = json.loads(base64.b64decode(jobs["rerank-prod-train-primary-nightly"]["pubsubTarget"]["data"]))
    payload = parse_payload(with_schedule_id(doc, "2026-11-27T03:00:02Z"))
    assert payload.template_uri == plan.outputs["pipeline_template"]
    assert payload.trigger_id == "primary-nightly-2026112703" and payload.parameters["env"] == "prod"
    assert (payload.parameters["variant"], json.loads(payload.parameters["followers"])) == ("primary", {})
    # The pipeline reads impressions as Parquet through Vertex's Cloud Storage FUSE mount.
    assert payload.parameters["impressions_uri"] == "/gcs/rerank-prod-123456-rerank-prod-pipelines/impressions"
    # The dataset and train steps refuse to run without the stack's entities at their served versions.
    from app.ranking.features import parse_entities

    assert parse_entities(payload.parameters["entities"]) == (("user_profile", "v1"), ("user_activity", "v1"))
    function = custom(plan, "gcp:cloudfunctionsv2/function:Function")[0].inputs
    assert function["eventTrigger"]["pubsubTopic"] == plan.outputs["training_triggers_topic"]
    assert function["buildConfig"]["entryPoint"] == "pubsub_trigger"


def test_the_ingest_job_gets_the_stacks_parameters_and_no_password() -> None:
    plan = planned("dev")
    job = custom(plan, "gcp:dataflow/flexTemplateJob:FlexTemplateJob")[0].inputs
    params = job["parameters"]
    assert params["subscription"] == "projects/rerank-dev-123456/subscriptions/rerank-dev-feature-events-ingest"
    assert params["bigquery_dataset"] == "rerank-dev-123456.rerank_dev_features"
    assert params["redis_prefix"] == "rerank:dev"
    # AUTH and TLS: the job names a secret version; the password is only in the secret.
    assert params["redis_url"] == "projects/123456789012/secrets/rerank-dev-online-connection/versions/1"
    assert "mock-auth-string" not in json.dumps(job)
    version = custom(plan, "gcp:secretmanager/secretVersion:SecretVersion")[0].inputs
    from app.featurestore.redis_connect import redis_target

    target = redis_target(params["redis_url"], access_secret=lambda name: version["secretData"])
    assert target.url == "rediss://:mock-auth-string@10.128.0.3:6378/0" and "BEGIN CERTIFICATE" in str(target.ca_pem)
    readers = [
        r.inputs["member"]
        for r in custom(plan, "gcp:secretmanager/secretIamMember:SecretIamMember")
        if r.inputs["role"] == "roles/secretmanager.secretAccessor"
    ]
    assert readers == [email(plan, "ingest")]
    assert job["ipConfiguration"] == "WORKER_IP_PRIVATE" and job["onDelete"] == "drain"
    template = next(
        r for r in custom(plan, "gcp:storage/bucketObject:BucketObject") if r.name == "feature-store-template"
    )
    assert (
        json.loads(template.inputs["content"])["image"]
        == f"{plan.outputs['image_repository']}/ingest:{plan.outputs['image_tags']['ingest']}"
    )


# --- configuration errors --------------------------------------------------------------------


def _problems(config: dict[str, Any], stack: str = "dev") -> list[str]:
    with pytest.raises(StackConfigError) as err:
        settings_from_config(stack_config_mapping(config), stack)
    return err.value.problems


@pytest.mark.parametrize(
    "change, stack, needle",
    [
        ({"rerank-platform:image_tag": None}, "dev", "rerank-platform:image_tag: missing"),
        ({"rerank-platform:cross_cloud": None}, "dev", "rerank-platform:cross_cloud: missing"),
        ({"rerank-platform:serving": {"pull_mode": "unary"}}, "dev", "serving.pull_mode: unary pulls are a local"),
        ({"rerank-platform:feature_store": {"redis": {"tier": "BASIC"}}}, "prod", "prod needs STANDARD_HA"),
        (
            {"rerank-platform:feature_store": {"redis": {"transit_encryption": False}}},
            "prod",
            "auth_enabled and transit_encryption",
        ),
        ({"rerank-platform:monitoring": {"notification_emails": []}}, "prod", "prod alerts need someone"),
        ({"rerank-platform:network": {"master_authorized_networks": ["0.0.0.0/0"]}}, "dev", "open the control plane"),
        (
            {"rerank-platform:serving": {"node_pool": {"min_nodes": 9, "max_nodes": 3}}},
            "dev",
            "min_nodes 9 is above max_nodes 3",
        ),
        ({"rerank-platform:cross_cloud": {"aws_account_id": "12ab"}}, "dev", "cross_cloud.aws_account_id"),
        ({"rerank-platform:labels": {"Team": "x"}}, "dev", "labels need lowercase keys"),
        ({"rerank-platform:name_prefix": "rerankplat"}, "integration-eu-west1", "cloud names allow 21"),
        ({"rerank-platform:gcp": {"region": "mars"}}, "dev", "rerank-platform:gcp.region"),
        ({"rerank-platform:serving": {"system_pool": {"enabled": False}}}, "prod", "prod needs an on-demand pool"),
        ({"rerank-platform:maintenance": {"days": ["SUNDAY"], "hours": 6}}, "prod", "GKE needs 48 h in any 32 days"),
        ({"rerank-platform:serving": {"release_channel": "EXTENDED"}}, "dev", "serving.release_channel"),
    ],
)
def test_bad_stack_config_is_refused_with_the_key_named(change: dict[str, Any], stack: str, needle: str) -> None:
    base = stack_yaml("prod" if stack == "prod" else "dev")
    config = dict(base)
    for key, value in change.items():
        if value is None:
            config.pop(key)
        elif isinstance(value, dict) and isinstance(base.get(key), dict):
            config[key] = _merge(base[key], value)
        else:
            config[key] = value
    found = _problems(config, stack)
    assert any(needle in p for p in found), found


def _merge(base: dict[str, Any], change: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in change.items():
        out[k] = _merge(base[k], v) if isinstance(v, dict) and isinstance(base.get(k), dict) else v
    return out


def test_a_review_stack_takes_devs_config_and_becomes_ephemeral() -> None:
    s = settings_from_config(stack_config_mapping(stack_yaml("dev")), "pr-42")
    assert (s.stack, s.env, s.training.schedules) == ("pr-42", "ephemeral", [])
    assert settings_from_mapping(stack_yaml("dev"), "dev", "x").env == "dev"


def test_the_program_entry_stops_with_the_problems_and_no_traceback() -> None:
    """``infra/__main__.py`` as ``pulumi up`` runs it, with a broken config: a RunError naming the key."""
    config = stack_config_mapping({**stack_yaml("dev"), "rerank-platform:feature_store": "{}"})
    with pytest.raises(pulumi.RunError) as err:
        plan_entry(load_stack("dev"), config)
    assert "rerank-platform:feature_store.entities: missing required value" in str(err.value)


def test_every_image_the_stack_runs_is_one_cloud_build_makes() -> None:
    from infra.images import IMAGES

    plan = planned("dev")
    prefix, tags = plan.outputs["image_repository"], plan.outputs["image_tags"]
    dumped = json.dumps([r.inputs for r in plan.resources])
    used = {name for name, tag in tags.items() if f"{prefix}/{name}:{tag}" in dumped}
    build = yaml.safe_load((REPO_ROOT / "cloudbuild.yaml").read_text())
    assert build["images"] == ["${_IMAGE_PREFIX}/${_IMAGE}:${_TAG}"]
    assert build["steps"][0]["args"][:3] == ["build", "-f", "${_DOCKERFILE}"]
    assert used == set(IMAGES) == {"app", "ingest"}
    assert all((REPO_ROOT / d).exists() for d in IMAGES.values())


def test_the_program_entry_plans_the_same_stack_from_pulumi_config() -> None:
    """``infra/__main__.py`` as ``pulumi up`` runs it: the config arrives as the engine passes it
    (objects as JSON text) and yields the same resources as ``build`` on the loaded stack file."""
    entry = plan_entry(load_stack("pr-5"), stack_config_mapping(stack_yaml("dev")))
    from_entry = sorted((r.type, r.name) for r in entry.resources)
    from_build = sorted((r.type, r.name) for r in planned("pr-5").resources)
    assert from_entry == from_build and len(from_entry) > 100


def test_the_drift_check_runs_daily_with_the_scheduled_triggers_parameters() -> None:
    import base64

    plan = planned("dev")
    crons = {r.inputs["metadata"]["name"]: r.inputs["spec"] for r in custom(plan, "kubernetes:batch/v1:CronJob")}
    # One per trained variant: the shadow serves b's model, which b's check covers.
    assert set(crons) == {"rerank-dev-drift-primary", "rerank-dev-drift-b"}
    jobs = {r.inputs["name"]: r.inputs for r in custom(plan, "gcp:cloudscheduler/job:Job")}
    for variant in ("primary", "b"):
        spec = crons[f"rerank-dev-drift-{variant}"]
        assert spec["schedule"] == "0 6 * * *" and spec["concurrencyPolicy"] == "Forbid"
        pod = spec["jobTemplate"]["spec"]["template"]["spec"]
        container = pod["containers"][0]
        assert container["args"][:8] == ["drift", "check", "--stack", "dev", "--variant", variant, "--endpoints", "env"]
        env = {e["name"]: e["value"] for e in container["env"]}
        job = jobs[f"rerank-dev-train-{variant}-nightly"]
        scheduled = json.loads(base64.b64decode(job["pubsubTarget"]["data"]))
        assert json.loads(env["PIPELINE_PARAMETERS"]) == scheduled["parameters"]
        assert scheduled["parameters"]["variant"] == variant
        assert env["PIPELINE_TEMPLATE"] == scheduled["template_uri"] == plan.outputs["pipeline_template"]
    assert pod["serviceAccountName"] == "drift"
    drift = email(plan, "drift")
    publishes = [
        r.inputs["topic"]
        for r in custom(plan, "gcp:pubsub/topicIAMMember:TopicIAMMember")
        if r.inputs["member"] == drift
    ]
    assert publishes == ["rerank-dev-training-triggers"]


def test_every_gcp_resource_waits_for_the_project_apis() -> None:
    """A fresh project has the APIs off; a component's depends_on does not reach its children."""
    plan = planned("dev")
    apis = {r.urn for r in custom(plan, "gcp:projects/service:Service")}
    assert len(apis) == len(APIS)
    early = [
        r.name
        for r in plan.resources
        if r.custom and r.type.startswith("gcp:") and r.type != "gcp:projects/service:Service"
        if not apis <= set(r.dependencies)
    ]
    assert early == []
