"""Alerts: every part of the stack that can fail silently pages someone, and each alert says what
to look at first (its runbook line is in infra/README.md, "Runbook").

``FAILURE_MODES`` is the table the tests hold the inventory to: each resource type the program
declares either brings a failure mode with the alerts that watch it, or is listed in
``NO_FAILURE_MODE`` with the reason it has none of its own. A new kind of resource without either
fails ``unwatched`` (tests/unit/test_infra.py), over dev, prod and a review stack.

Metric types and filters: Pub/Sub, Dataflow, Memorystore, Cloud Run (the function's service) and
logs-based metrics on the workers' own log lines (app/serving/observability.py markers). Why the
results table is watched from the workers and not by a CloudWatch alarm: one pager for the whole
stack (the channels below), no SNS topic or CloudWatch permissions for the deployer in the core
service's AWS account, and the workers see what CloudWatch cannot (a refused STS exchange, a write
that failed after the SDK's retries). A throttle the SDK's retries absorb is not seen.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_gcp as gcp

from app.serving.observability import AWS_CREDENTIALS_FAILED, RESULTS_WRITE_FAILED
from infra.common import StackContext

ALIGN = "60s"
# Cloud Monitoring takes at most 6 conditions per alert policy; more variants mean more policies.
# A log-match condition must be a policy's only one.
MAX_CONDITIONS = 6
# Memorystore's memory management guidance: above 80% system memory usage the instance is under
# memory pressure and risks running out of memory.
REDIS_MEMORY_RATIO = 0.8


@dataclass(frozen=True)
class FailureMode:
    component: str
    types: tuple[str, ...]  # resource types that bring it: a stack declaring one needs its alerts
    alerts: tuple[str, ...]  # the alert keys (policies carry them as user label "alert")


FAILURE_MODES = (
    FailureMode(
        "consumers of a subscription: worker Deployments, the ingest job, the predictions sink",
        ("gcp:pubsub/subscription:Subscription", "kubernetes:apps/v1:Deployment"),
        ("oldest-unacked", "backlog"),
    ),
    FailureMode(
        "scaling and capacity: KEDA, its ScaledObjects, the cluster and its node pools (a preemption)",
        (
            "kubernetes:helm.sh/v3:Release",
            "kubernetes:keda.sh/v1alpha1:ScaledObject",
            "kubernetes:keda.sh/v1alpha1:TriggerAuthentication",
            "gcp:container/cluster:Cluster",
            "gcp:container/nodePool:NodePool",
        ),
        ("backlog", "oldest-unacked"),
    ),
    FailureMode("messages nobody can handle", ("gcp:pubsub/subscription:Subscription",), ("dead-letters",)),
    FailureMode("the streaming ingest job", ("gcp:dataflow/flexTemplateJob:FlexTemplateJob",), ("ingest-lag",)),
    FailureMode(
        "the training trigger function and the Eventarc subscription that retries it",
        ("gcp:cloudfunctionsv2/function:Function",),
        ("trigger-errors", "trigger-backlog"),
    ),
    FailureMode(
        "Vertex AI pipeline runs (submitted by the function)",
        ("gcp:cloudfunctionsv2/function:Function",),
        ("pipeline-failures",),
    ),
    FailureMode("the retraining schedules", ("gcp:cloudscheduler/job:Job",), ("schedule-failures",)),
    FailureMode("the drift check CronJobs", ("kubernetes:batch/v1:CronJob",), ("drift-failures",)),
    FailureMode(
        "Memorystore, the online store: memory pressure and evictions",
        ("gcp:redis/instance:Instance",),
        ("online-store-memory",),
    ),
    FailureMode(
        "the DynamoDB results table: writes failed or throttled, as the workers see them",
        ("aws:dynamodb/table:Table",),
        ("results-writes",),
    ),
    FailureMode(
        "AWS STS: the workers' exchange of their Google identity for the results role",
        ("aws:iam/role:Role",),
        ("aws-credentials",),
    ),
)

# Types with no failure mode of their own to page on, and why.
NO_FAILURE_MODE = {
    "pulumi:providers:gcp": "configuration",
    "pulumi:providers:aws": "configuration",
    "pulumi:providers:kubernetes": "configuration",
    "gcp:projects/service:Service": "an enabled API",
    "gcp:projects/serviceIdentity:ServiceIdentity": "a service agent's identity",
    "gcp:serviceaccount/account:Account": "an identity; what runs as it is watched",
    "gcp:projects/iAMMember:IAMMember": "a grant (a missing one fails its workload, which is watched)",
    "gcp:serviceaccount/iAMMember:IAMMember": "a grant",
    "gcp:pubsub/topicIAMMember:TopicIAMMember": "a grant",
    "gcp:pubsub/subscriptionIAMMember:SubscriptionIAMMember": "a grant",
    "gcp:storage/bucketIAMMember:BucketIAMMember": "a grant",
    "gcp:bigquery/datasetIamMember:DatasetIamMember": "a grant",
    "gcp:bigquery/iamMember:IamMember": "a grant",
    "gcp:artifactregistry/repositoryIamMember:RepositoryIamMember": "a grant",
    "gcp:secretmanager/secretIamMember:SecretIamMember": "a grant",
    "gcp:cloudrunv2/serviceIamMember:ServiceIamMember": "a grant",
    "gcp:iam/workloadIdentityPool:WorkloadIdentityPool": "federation config; the core service sees refusals",
    "gcp:iam/workloadIdentityPoolProvider:WorkloadIdentityPoolProvider": "federation config",
    "aws:iam/rolePolicy:RolePolicy": "a grant",
    "aws:iam/policy:Policy": "a grant",
    "gcp:pubsub/topic:Topic": "storage for messages; its subscriptions are watched",
    "gcp:storage/bucket:Bucket": "storage; its readers and writers are watched",
    "gcp:storage/bucketObject:BucketObject": "an uploaded spec or source",
    "gcp:bigquery/dataset:Dataset": "storage; the ingest job and the predictions sink are watched",
    "gcp:bigquery/table:Table": "storage; its writers are watched",
    "gcp:artifactregistry/repository:Repository": "storage for images (a pull failure stalls a consumer)",
    "gcp:secretmanager/secret:Secret": "configuration",
    "gcp:secretmanager/secretVersion:SecretVersion": "configuration",
    "gcp:compute/network:Network": "the network (an outage shows at every consumer)",
    "gcp:compute/subnetwork:Subnetwork": "the network",
    "gcp:compute/firewall:Firewall": "the network",
    "gcp:compute/router:Router": "the network",
    "gcp:compute/routerNat:RouterNat": "the network (NAT exhaustion shows as worker errors)",
    "gcp:compute/globalAddress:GlobalAddress": "a reserved range",
    "gcp:servicenetworking/connection:Connection": "the network",
    "command:local:Command": "the image build: it fails the deploy, not silently",
    "gcp:monitoring/alertPolicy:AlertPolicy": "the alerts themselves",
    "gcp:monitoring/notificationChannel:NotificationChannel": "where alerts go",
    "gcp:logging/metric:Metric": "what the alerts count",
    "kubernetes:core/v1:Namespace": "configuration",
    "kubernetes:core/v1:Secret": "configuration",
    "kubernetes:core/v1:ServiceAccount": "an identity",
    "kubernetes:networking.k8s.io/v1:NetworkPolicy": "configuration (a wrong one stalls a consumer)",
    "kubernetes:policy/v1:PodDisruptionBudget": "configuration",
}


def unwatched(types: Iterable[str], alert_keys: Iterable[str]) -> list[str]:
    """What a stack declaring ``types`` and alerting on ``alert_keys`` leaves unwatched."""
    types, keys = set(types), set(alert_keys)
    known = {t for m in FAILURE_MODES for t in m.types} | set(NO_FAILURE_MODE)
    problems = [
        f"{t}: no failure mode in infra/monitoring.py FAILURE_MODES and not in NO_FAILURE_MODE"
        for t in sorted(types - known)
    ]
    for m in FAILURE_MODES:
        if types & set(m.types):
            problems += [f"{m.component}: no alert {a}" for a in m.alerts if a not in keys]
    return problems


@dataclass
class MonitoringArgs:
    context: StackContext
    work_subscriptions: list[str]  # the subscriptions someone consumes (ingest and every variant)
    dead_letter_subscriptions: list[str]
    ingest_job: str | None  # None when the stack runs no streaming ingest job
    namespace: str
    trigger_function: str  # the function's name (its Cloud Run service has the same)
    eventarc_trigger: pulumi.Input[str | None]  # the function's Eventarc trigger (resource name)
    redis_instance: str  # the instance's name
    schedules: bool  # the stack has retraining schedules
    drift_checks: bool  # the stack runs drift CronJobs
    results_writers: bool  # some variant writes served results (primary and arms)


def _threshold(
    title: str,
    metric: pulumi.Input[str],
    resource: str,
    where: pulumi.Input[str],
    threshold: float,
    duration: str,
    aligner: str = "ALIGN_MAX",
    period: str = ALIGN,
) -> gcp.monitoring.AlertPolicyConditionArgs:
    return gcp.monitoring.AlertPolicyConditionArgs(
        display_name=title,
        condition_threshold=gcp.monitoring.AlertPolicyConditionConditionThresholdArgs(
            filter=pulumi.Output.concat('metric.type = "', metric, f'" AND resource.type = "{resource}" AND ', where),
            comparison="COMPARISON_GT",
            threshold_value=threshold,
            duration=duration,
            aggregations=[
                gcp.monitoring.AlertPolicyConditionConditionThresholdAggregationArgs(
                    alignment_period=period, per_series_aligner=aligner
                )
            ],
        ),
    )


def _condition(
    title: str, metric: str, resource: str, label: str, value: str, threshold: float, duration: str
) -> gcp.monitoring.AlertPolicyConditionArgs:
    return _threshold(title, metric, resource, f'resource.labels.{label} = "{value}"', threshold, duration)


def _log_match(title: str, log_filter: pulumi.Input[str]) -> gcp.monitoring.AlertPolicyConditionArgs:
    return gcp.monitoring.AlertPolicyConditionArgs(
        display_name=title,
        condition_matched_log=gcp.monitoring.AlertPolicyConditionConditionMatchedLogArgs(filter=log_filter),
    )


def eventarc_subscription(region: str, trigger: str | None) -> str:
    """A regex for the subscription Eventarc creates for ``trigger``
    (``eventarc-<region>-<trigger id>-sub-<n>``)."""
    trigger_id = (trigger or "").rsplit("/", 1)[-1] or "unknown-trigger"
    return f"eventarc-{region}-{trigger_id}-sub-[0-9]+"


class Monitoring(pulumi.ComponentResource):
    def __init__(self, name: str, args: MonitoringArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("rerank:monitoring:Monitoring", name, None, opts)
        ctx, m = args.context, args.context.settings.monitoring
        child = ctx.opts(self)
        channels = [
            gcp.monitoring.NotificationChannel(
                f"{name}-email-{i}",
                project=ctx.project,
                display_name=f"rerank {ctx.settings.stack} on-call ({address})",
                type="email",
                labels={"email_address": address},
                user_labels=ctx.labels,
                opts=child,
            ).id
            for i, address in enumerate(m.notification_emails)
        ]
        alerts = {**self._pubsub_alerts(args), **self._training_alerts(args), **self._store_alerts(name, args)}
        self.policies = {}
        for key, (title, conditions, runbook, log_based) in alerts.items():
            size = 1 if log_based else MAX_CONDITIONS
            chunks = [conditions[i : i + size] for i in range(0, len(conditions), size)]
            for i, chunk in enumerate(chunks):
                part = key if len(chunks) == 1 else f"{key}-{i + 1}"
                self.policies[part] = gcp.monitoring.AlertPolicy(
                    f"{name}-{part}",
                    project=ctx.project,
                    display_name=f"rerank {ctx.settings.stack}: {title}"
                    + ("" if len(chunks) == 1 else f" ({i + 1}/{len(chunks)})"),
                    combiner="OR",
                    conditions=chunk,
                    notification_channels=channels,
                    documentation=gcp.monitoring.AlertPolicyDocumentationArgs(
                        content=runbook.format(namespace=args.namespace)
                        + f"\n\nRunbook: infra/README.md, alert `{key}`.",
                        mime_type="text/markdown",
                    ),
                    # Log-match policies must say how often they may notify.
                    alert_strategy=gcp.monitoring.AlertPolicyAlertStrategyArgs(
                        notification_rate_limit=gcp.monitoring.AlertPolicyAlertStrategyNotificationRateLimitArgs(
                            period="300s"
                        ),
                        auto_close="1800s",
                    )
                    if log_based
                    else None,
                    severity="ERROR" if ctx.settings.protected else "WARNING",
                    user_labels={**ctx.labels, "alert": key},
                    opts=child,
                )
        self.register_outputs({key: p.name for key, p in self.policies.items()})

    def _pubsub_alerts(self, args: MonitoringArgs) -> dict[str, tuple[str, list[Any], str, bool]]:
        m = args.context.settings.monitoring
        sub_metric = "pubsub.googleapis.com/subscription/"
        alerts = {
            "oldest-unacked": (
                "A message has waited too long (a worker or the ingest job is stuck or gone)",
                [
                    _condition(
                        f"oldest unacked age: {s}",
                        sub_metric + "oldest_unacked_message_age",
                        "pubsub_subscription",
                        "subscription_id",
                        s,
                        m.oldest_unacked_age_seconds,
                        "120s",
                    )
                    for s in args.work_subscriptions
                ],
                "Check the consumer of the subscription named in the incident: worker pods "
                "(kubectl -n {namespace} get pods) or the ingest job (Dataflow console). Requests older than the "
                "core service's patience are served in its default order.",
                False,
            ),
            "backlog": (
                "The backlog keeps growing (consumers cannot keep up)",
                [
                    _condition(
                        f"undelivered messages: {s}",
                        sub_metric + "num_undelivered_messages",
                        "pubsub_subscription",
                        "subscription_id",
                        s,
                        m.backlog_messages,
                        "300s",
                    )
                    for s in args.work_subscriptions
                ],
                "Check that KEDA is scaling the variant's Deployment and that the node pool is not at "
                "its maximum (spot capacity can run out).",
                False,
            ),
            "dead-letters": (
                "Messages reached a dead-letter queue",
                [
                    _condition(
                        f"dead letters: {s}",
                        sub_metric + "num_undelivered_messages",
                        "pubsub_subscription",
                        "subscription_id",
                        s,
                        0,
                        "60s",
                    )
                    for s in args.dead_letter_subscriptions
                ],
                "Pull a few messages from the named subscription: each carries a 'reason' attribute. "
                "Fix the producer or the schema, then replay them to the source topic.",
                False,
            ),
        }
        if args.ingest_job:
            alerts["ingest-lag"] = (
                "The feature ingest job is falling behind",
                [
                    _condition(
                        f"system lag: {args.ingest_job}",
                        "dataflow.googleapis.com/job/system_lag",
                        "dataflow_job",
                        "job_name",
                        args.ingest_job,
                        m.dataflow_lag_seconds,
                        "300s",
                    )
                ],
                "Online features are getting stale. Check the job's workers (max_workers) and the "
                "Memorystore instance's CPU.",
                False,
            )
        return alerts

    def _training_alerts(self, args: MonitoringArgs) -> dict[str, tuple[str, list[Any], str, bool]]:
        ctx, fn = args.context, args.trigger_function
        service = f'resource.labels.service_name = "{fn}"'
        alerts: dict[str, tuple[str, list[Any], str, bool]] = {
            "trigger-errors": (
                "The training trigger function fails or refuses triggers",
                [
                    _threshold(
                        f"{fn}: {code} responses",
                        "run.googleapis.com/request_count",
                        "cloud_run_revision",
                        f'{service} AND metric.labels.response_code_class = "{code}"',
                        0,
                        "0s",
                        aligner="ALIGN_DELTA",
                        period="300s",
                    )
                    for code in ("5xx", "4xx")
                ],
                "5xx: the function failed (its logs: gcloud functions logs read " + fn + "). 4xx: it refused a "
                "trigger with a reason (a payload that is not the stack's own pipeline); find the publisher.",
                False,
            ),
            "trigger-backlog": (
                "Training triggers are not being delivered (Eventarc retries them forever)",
                [
                    _threshold(
                        f"{fn}: oldest undelivered trigger",
                        "pubsub.googleapis.com/subscription/oldest_unacked_message_age",
                        "pubsub_subscription",
                        pulumi.Output.from_input(args.eventarc_trigger).apply(
                            lambda t: (
                                "resource.labels.subscription_id = monitoring.regex.full_match("
                                f'"{eventarc_subscription(ctx.region, t)}")'
                            )
                        ),
                        900,
                        "300s",
                    )
                ],
                "The function keeps failing or refusing the same trigger. Read its logs; a refused payload is "
                "retried until the topic's retention ends: fix or purge it (seek the Eventarc subscription).",
                False,
            ),
            "pipeline-failures": (
                "A Vertex AI training pipeline run failed",
                [
                    _log_match(
                        "pipeline job errors",
                        'resource.type = "aiplatform.googleapis.com/PipelineJob" AND '
                        f'logName = "projects/{ctx.project}/logs/aiplatform.googleapis.com%2Fpipeline_job_events" '
                        "AND severity >= ERROR",
                    )
                ],
                "Open the run in Vertex AI Pipelines (its labels name stack, reason and trigger); the failed "
                "step's logs say why. The serving model is unchanged: nothing was registered.",
                True,
            ),
        }
        if args.schedules:
            alerts["schedule-failures"] = (
                "A retraining schedule failed to publish its trigger",
                [
                    _log_match(
                        "scheduler job errors",
                        'resource.type = "cloud_scheduler_job" AND '
                        f'resource.labels.job_id =~ "^{ctx.names.base}-train-" AND severity >= ERROR',
                    )
                ],
                "The scheduler could not publish to the training-triggers topic: check the job's "
                "service agent's publisher grant and the topic.",
                True,
            )
        if args.drift_checks:
            alerts["drift-failures"] = (
                "A drift check Job failed",
                [
                    _log_match(
                        "drift Job failed",
                        f'logName = "projects/{ctx.project}/logs/events" AND '
                        'jsonPayload.involvedObject.kind = "Job" AND '
                        f'jsonPayload.involvedObject.namespace = "{args.namespace}" AND '
                        'jsonPayload.reason = ("BackoffLimitExceeded" OR "DeadlineExceeded")',
                    )
                ],
                "kubectl -n {namespace} get jobs; the failed pod's logs say why. No retraining is triggered "
                "by drift until the check runs again.",
                True,
            )
        return alerts

    def _store_alerts(self, name: str, args: MonitoringArgs) -> dict[str, tuple[str, list[Any], str, bool]]:
        ctx = args.context
        instance = f"projects/{ctx.project}/locations/{ctx.region}/instances/{args.redis_instance}"
        where = f'resource.labels.instance_id = "{instance}"'
        alerts: dict[str, tuple[str, list[Any], str, bool]] = {
            "online-store-memory": (
                "The online store is short of memory or evicting keys",
                [
                    _threshold(
                        f"{args.redis_instance}: system memory usage ratio",
                        "redis.googleapis.com/stats/memory/system_memory_usage_ratio",
                        "redis_instance",
                        where,
                        REDIS_MEMORY_RATIO,
                        "300s",
                    ),
                    _threshold(
                        f"{args.redis_instance}: evicted keys",
                        "redis.googleapis.com/stats/evicted_keys",
                        "redis_instance",
                        where,
                        0,
                        "0s",
                        aligner="ALIGN_DELTA",
                        period="300s",
                    ),
                ],
                "Evicted features make workers answer with fewer features or dead-letter unknown users. "
                "Raise feature_store.redis.memory_size_gb, or shorten the entities' ttl_days.",
                False,
            ),
        }
        if args.results_writers:
            base = ctx.names.base
            worker_logs = (
                f'resource.type = "k8s_container" AND resource.labels.namespace_name = "{args.namespace}" AND '
                'resource.labels.container_name = "worker" AND '
            )
            counted = {
                "results-writes": (
                    f"{base}-results-write-failures",
                    RESULTS_WRITE_FAILED,
                    "Workers cannot write results to DynamoDB (errors or throttles after retries)",
                    "The log lines (textPayload has " + RESULTS_WRITE_FAILED + ") name the kind: "
                    "results_throttled (the table's on-demand limits), results_credentials (see aws-credentials), "
                    "results_write (the error says which). Requests wait, unacked, while it lasts.",
                ),
                "aws-credentials": (
                    f"{base}-aws-credential-failures",
                    AWS_CREDENTIALS_FAILED,
                    "Workers cannot exchange their Google identity for the AWS results role",
                    "STS refused the token or the metadata server gave none: check the results-writer role's "
                    "trust (its accounts.google.com sub list) against the variants' worker accounts.",
                ),
            }
            for key, (metric_name, marker, title, runbook) in counted.items():
                metric = gcp.logging.Metric(
                    f"{name}-{key}",
                    name=metric_name,
                    project=ctx.project,
                    description=f"Worker log lines with {marker} (app/serving/observability.py)",
                    filter=worker_logs + f'textPayload : "{marker}"',
                    opts=ctx.opts(self),
                )
                alerts[key] = (
                    title,
                    [
                        _threshold(
                            f"{metric_name}: failures in 5 min",
                            pulumi.Output.concat("logging.googleapis.com/user/", metric.name),
                            "k8s_container",
                            f'resource.labels.namespace_name = "{args.namespace}"',
                            0,
                            "0s",
                            aligner="ALIGN_DELTA",
                            period="300s",
                        )
                    ],
                    runbook,
                    False,
                )
        return alerts
