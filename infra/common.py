"""What every component shares: the stack context, resource options and one way to make topics,
subscriptions, service accounts and grants from the app's topology."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import pulumi
import pulumi_command as command
import pulumi_gcp as gcp
import pulumi_kubernetes as k8s

from app.naming import Names
from app.settings import StackSettings
from app.topology import SubscriptionSpec, TopicSpec, Topology, build_topology
from infra.policy.rules import PERMA_DIFFS


@dataclass(frozen=True)
class StackContext:
    """The stack's settings and names plus the few facts every component asks for."""

    settings: StackSettings
    # The Pulumi-created Pub/Sub service agent (``gcp.projects.ServiceIdentity``): it moves dead
    # letters and writes BigQuery subscriptions. On a fresh project it exists only once something
    # asks for it, so grants take its member from that resource, never from a spelled-out address.
    pubsub_agent: pulumi.Input[str]
    # The project's service APIs. Every GCP resource waits for them: a component's own
    # depends_on does not reach its children (pulumi/pulumi#8721).
    apis: tuple[pulumi.Resource, ...] = ()

    @cached_property
    def names(self) -> Names:
        return Names.of(self.settings)

    @cached_property
    def topology(self) -> Topology:
        return build_topology(self.settings)

    @property
    def project(self) -> str:
        return self.settings.gcp.project

    @property
    def region(self) -> str:
        return self.settings.gcp.region

    @property
    def labels(self) -> dict[str, str]:
        return self.settings.label_set()

    def topic_spec(self, name: str) -> TopicSpec:
        return next(t for t in self.topology.topics if t.name == name)

    def subscriptions_of(self, topic: str) -> list[SubscriptionSpec]:
        return [s for s in self.topology.subscriptions if s.topic == topic]

    def retention(self, days: int) -> str:
        return f"{days * 86400}s"

    def opts(self, parent: pulumi.Resource, depends_on: list[pulumi.Resource] | None = None) -> pulumi.ResourceOptions:
        """A GCP child of ``parent``, after the APIs (and ``depends_on``)."""
        return pulumi.ResourceOptions(parent=parent, depends_on=[*self.apis, *(depends_on or [])])

    def protect(
        self, parent: pulumi.Resource, depends_on: list[pulumi.Resource] | None = None
    ) -> pulumi.ResourceOptions:
        """As ``opts``, and in prod protected from ``pulumi destroy`` and accidental replacement."""
        return pulumi.ResourceOptions.merge(
            self.opts(parent, depends_on), pulumi.ResourceOptions(protect=self.settings.protected)
        )


# Ordering is not propagation: a grant or an API is "created" before Google's backends all see it
# (Functions gen2 with an Eventarc trigger fails a fresh project's first apply even with its
# grants in place, terraform-provider-google#25294; the provider's own Cloud Functions builder
# example waits 60 s for builder permissions). Whatever consumes a fresh grant or API waits for a
# settle step after it: twice that example's wait. The ordering rules (policy/rules.py) check it.
SETTLE_SECONDS = 120


def settle(
    name: str, after: list[pulumi.Resource], opts: pulumi.ResourceOptions | None = None
) -> command.local.Command:
    """A step that waits SETTLE_SECONDS once ``after`` exist, and again only when one of them is
    replaced (its id is a trigger), so a second `up` waits for nothing."""
    ids = [r.id for r in after if isinstance(r, pulumi.CustomResource)]
    return command.local.Command(
        name,
        create=f"sleep {SETTLE_SECONDS}",
        triggers=ids,
        opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=after)),
    )


def perma_diffs(type_token: str) -> list[str]:
    """The input properties of ``type_token`` to list in ``ignore_changes``: the provider reports
    them back differently from what was declared (``policy/rules.py`` PERMA_DIFFS, with the
    provider issues). A change to one of them needs ``pulumi up --replace`` on the resource."""
    return sorted(PERMA_DIFFS.get(type_token, {}))


def days_ms(days: int | None) -> int | None:
    """A retention in days as BigQuery's milliseconds (None: kept for ever)."""
    return days * 86_400_000 if days else None


def content_digest(data: bytes) -> str:
    """What names an uploaded spec or source: a new content is a new object, so its consumers'
    inputs change with it."""
    return hashlib.sha256(data).hexdigest()[:16]


def member(account: gcp.serviceaccount.Account) -> pulumi.Output[str]:
    return account.email.apply(lambda e: f"serviceAccount:{e}")


def topic(ctx: StackContext, spec: TopicSpec, parent: pulumi.Resource) -> gcp.pubsub.Topic:
    return gcp.pubsub.Topic(
        spec.name,
        name=spec.name,
        project=ctx.project,
        labels=ctx.labels,
        message_retention_duration=ctx.retention(ctx.settings.feature_store.message_retention_days),
        opts=ctx.opts(parent),
    )


def subscription(
    ctx: StackContext,
    spec: SubscriptionSpec,
    topics: dict[str, gcp.pubsub.Topic],
    parent: pulumi.Resource,
    bigquery_table: pulumi.Input[str] | None = None,
    depends_on: list[pulumi.Resource] | None = None,
    consumer: str | None = None,
) -> gcp.pubsub.Subscription:
    """A subscription as the topology describes it. With a dead-letter topic, the Pub/Sub service
    agent gets exactly what dead-lettering needs: publish to that topic, subscribe to this one.

    ``consumer="dataflow"``: Dataflow's Pub/Sub source does not support dead-letter topics or
    exponential-backoff retry policies on its subscription (it manages ack deadlines itself), so
    that subscription has neither; the job dead-letters rejects itself, with a reason. The
    ``consumer`` label tells the policy pack why (``infra/policy/rules.py``)."""
    managed = consumer == "dataflow"
    dead_letter = (
        gcp.pubsub.SubscriptionDeadLetterPolicyArgs(
            dead_letter_topic=topics[spec.dead_letter_topic].id,
            max_delivery_attempts=spec.max_delivery_attempts,
        )
        if spec.dead_letter_topic and not managed
        else None
    )
    sub = gcp.pubsub.Subscription(
        spec.name,
        name=spec.name,
        project=ctx.project,
        topic=topics[spec.topic].id,
        filter=spec.filter,
        ack_deadline_seconds=spec.ack_deadline_seconds,
        dead_letter_policy=dead_letter,
        retry_policy=None
        if managed or spec.minimum_backoff_seconds is None
        else gcp.pubsub.SubscriptionRetryPolicyArgs(
            minimum_backoff=f"{spec.minimum_backoff_seconds}s", maximum_backoff=f"{spec.maximum_backoff_seconds}s"
        ),
        # Never expire: an idle variant or dead-letter queue must keep its subscription.
        expiration_policy=gcp.pubsub.SubscriptionExpirationPolicyArgs(ttl=""),
        message_retention_duration=ctx.retention(ctx.settings.feature_store.message_retention_days),
        bigquery_config=gcp.pubsub.SubscriptionBigqueryConfigArgs(
            table=bigquery_table, use_table_schema=True, drop_unknown_fields=True
        )
        if bigquery_table is not None
        else None,
        labels={**ctx.labels, "consumer": consumer} if consumer else ctx.labels,
        opts=ctx.opts(parent, depends_on),
    )
    if dead_letter is not None and spec.dead_letter_topic:
        dlq, agent = topics[spec.dead_letter_topic].name, ctx.pubsub_agent
        grant(
            ctx,
            gcp.pubsub.TopicIAMMember,
            f"{spec.name}-dlq-publisher",
            sub,
            agent,
            "roles/pubsub.publisher",
            project=ctx.project,
            topic=dlq,
        )
        grant(
            ctx,
            gcp.pubsub.SubscriptionIAMMember,
            f"{spec.name}-dlq-forwarder",
            sub,
            agent,
            "roles/pubsub.subscriber",
            project=ctx.project,
            subscription=sub.name,
        )
    return sub


def grant(
    ctx: StackContext,
    iam_member: type[pulumi.CustomResource],
    resource_name: str,
    parent: pulumi.Resource,
    who: pulumi.Input[str],
    role: str,
    **scope: Any,
) -> pulumi.CustomResource:
    """One role for one member on one resource: ``iam_member`` is the resource's IAM member type
    and ``scope`` its own arguments (``topic=...``). ``gcp.projects.IAMMember`` is kept for what
    GCP offers no narrower grant (writing logs, running Dataflow jobs)."""
    return iam_member(resource_name, role=role, member=who, opts=ctx.opts(parent), **scope)


def private_bucket(
    ctx: StackContext, resource_name: str, bucket_name: str, parent: pulumi.Resource, temp_prefix: str | None = None
) -> gcp.storage.Bucket:
    """A bucket in the stack's region that can never be public; in prod protected (and versioned,
    unless it is scratch space), elsewhere emptied on destroy. Objects under ``temp_prefix`` go
    after a week."""
    versioned = ctx.settings.protected and temp_prefix is None
    expire = []
    if temp_prefix:
        expire.append(
            gcp.storage.BucketLifecycleRuleArgs(
                action=gcp.storage.BucketLifecycleRuleActionArgs(type="Delete"),
                condition=gcp.storage.BucketLifecycleRuleConditionArgs(age=7, matches_prefixes=[temp_prefix]),
            )
        )
    if versioned:
        # Versions guard against a bad overwrite or delete; a month is long enough to notice one.
        expire.append(
            gcp.storage.BucketLifecycleRuleArgs(
                action=gcp.storage.BucketLifecycleRuleActionArgs(type="Delete"),
                condition=gcp.storage.BucketLifecycleRuleConditionArgs(days_since_noncurrent_time=30),
            )
        )
    return gcp.storage.Bucket(
        resource_name,
        name=bucket_name,
        project=ctx.project,
        location=ctx.region,
        uniform_bucket_level_access=True,
        public_access_prevention="enforced",
        versioning=gcp.storage.BucketVersioningArgs(enabled=versioned),
        force_destroy=not ctx.settings.protected,
        lifecycle_rules=expire or None,
        labels=ctx.labels,
        opts=ctx.protect(parent),
    )


def workload_identity(
    ctx: StackContext,
    name: str,
    account: gcp.serviceaccount.Account,
    namespace: str,
    ksa: str,
    parent: pulumi.Resource,
    cluster: gcp.container.Cluster,
) -> pulumi.CustomResource:
    """Let one Kubernetes service account act as ``account`` (GKE workload identity; no key).

    The pool ``<project>.svc.id.goog`` exists only once a workload-identity cluster does, so the
    member is read from the cluster: IAM refuses it before ("Identity Pool does not exist")."""
    ksa_member = cluster.workload_identity_config.apply(
        lambda c: f"serviceAccount:{c.workload_pool if c else ''}[{namespace}/{ksa}]"
    )
    return grant(
        ctx,
        gcp.serviceaccount.IAMMember,
        name,
        parent,
        ksa_member,
        "roles/iam.workloadIdentityUser",
        service_account_id=account.name,
    )


# Pod Security Standard "restricted" (the namespace enforces it): a non-root user, the runtime's
# seccomp profile, no capabilities, no privilege escalation, a read-only root with /tmp beside it.
POD_SECURITY = {
    "runAsNonRoot": True,
    "runAsUser": 10001,
    "runAsGroup": 10001,
    "fsGroup": 10001,
    "seccompProfile": {"type": "RuntimeDefault"},
}
CONTAINER_SECURITY = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "runAsNonRoot": True,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}
SCRATCH_VOLUME = {"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}}
SCRATCH_MOUNT = {"name": "tmp", "mountPath": "/tmp"}
PSS_LABELS = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/enforce-version": "latest",
    "pod-security.kubernetes.io/warn": "restricted",
}

# Node pools by the label their nodes carry. With an on-demand system pool beside it (prod), the
# Spot pool is tainted: only pods that tolerate the taint (workers, drift checks) land there, so
# kube-dns, metrics and KEDA run on the system pool and outlive a Spot preemption.
POOL_LABEL = "rerank.dev/pool"
WORKERS_POOL, SYSTEM_POOL = "workers", "system"
SPOT_TAINT = {"key": "cloud.google.com/gke-spot", "value": "true"}
ON_SPOT_POOL = {
    "nodeSelector": {POOL_LABEL: WORKERS_POOL},
    "tolerations": [{**SPOT_TAINT, "operator": "Equal", "effect": "NoSchedule"}],
}


def spread(match_labels: dict[str, str]) -> list[dict[str, Any]]:
    """Topology spread over zones and nodes: one preemption or zone outage takes a fraction of the
    replicas. ScheduleAnyway, so a short Spot supply delays balance, never a pod."""
    return [
        {
            "maxSkew": 1,
            "topologyKey": key,
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": match_labels},
        }
        for key in ("topology.kubernetes.io/zone", "kubernetes.io/hostname")
    ]


# The pipeline bucket as files in a pod, at the /gcs/<bucket> path Vertex AI gives pipeline steps
# (the pod also needs the annotation GCS_FUSE_ANNOTATION and read access to the bucket).
GCS_FUSE_ANNOTATION = {"gke-gcsfuse/volumes": "true"}


def bucket_volume(name: str, bucket: pulumi.Input[str]) -> dict[str, Any]:
    attributes = {"bucketName": bucket, "mountOptions": "implicit-dirs"}
    return {
        "name": name,
        "csi": {"driver": "gcsfuse.csi.storage.gke.io", "readOnly": True, "volumeAttributes": attributes},
    }


def bucket_mount(name: str, bucket: pulumi.Input[str]) -> dict[str, Any]:
    return {"name": name, "mountPath": pulumi.Output.concat("/gcs/", bucket), "readOnly": True}


def pod_identity(
    ctx: StackContext,
    name: str,
    account: gcp.serviceaccount.Account,
    ksa: str,
    parent: pulumi.Resource,
    opts: pulumi.ResourceOptions,
    cluster: gcp.container.Cluster,
) -> k8s.core.v1.ServiceAccount:
    """A Kubernetes service account in the stack's namespace that acts as ``account``. Pods reach
    Google through the GKE metadata server, never the Kubernetes API: no token is mounted."""
    workload_identity(ctx, f"{name}-identity", account, ctx.names.k8s_namespace, ksa, parent, cluster)
    return k8s.core.v1.ServiceAccount(
        name,
        metadata={
            "name": ksa,
            "namespace": ctx.names.k8s_namespace,
            "annotations": {"iam.gke.io/gcp-service-account": account.email},
        },
        automount_service_account_token=False,
        opts=opts,
    )
