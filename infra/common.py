"""What every component shares: the stack context, resource options and one way to make topics,
subscriptions, service accounts and grants from the app's topology."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_gcp as gcp

from app.naming import Names
from app.settings import StackSettings
from app.topology import SubscriptionSpec, TopicSpec, Topology, build_topology


@dataclass(frozen=True)
class StackContext:
    """The stack's settings and names plus the few facts every component asks for."""

    settings: StackSettings
    project_number: pulumi.Input[str]

    @property
    def names(self) -> Names:
        return Names.of(self.settings)

    @property
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

    @property
    def pubsub_agent(self) -> pulumi.Output[str]:
        """The Pub/Sub service agent: it moves dead letters and writes BigQuery subscriptions."""
        return pulumi.Output.concat(
            "serviceAccount:service-", self.project_number, "@gcp-sa-pubsub.iam.gserviceaccount.com"
        )

    def topic_spec(self, name: str) -> TopicSpec:
        return next(t for t in self.topology.topics if t.name == name)

    def subscriptions_of(self, topic: str) -> list[SubscriptionSpec]:
        return [s for s in self.topology.subscriptions if s.topic == topic]

    def retention(self, days: int) -> str:
        return f"{days * 86400}s"

    def protect(self, parent: pulumi.Resource) -> pulumi.ResourceOptions:
        """Children of ``parent``; in prod protected from ``pulumi destroy`` and accidental replacement."""
        return pulumi.ResourceOptions(parent=parent, protect=self.settings.protected)


def member(account: gcp.serviceaccount.Account) -> pulumi.Output[str]:
    return account.email.apply(lambda e: f"serviceAccount:{e}")


def topic(ctx: StackContext, spec: TopicSpec, parent: pulumi.Resource) -> gcp.pubsub.Topic:
    return gcp.pubsub.Topic(
        spec.name,
        name=spec.name,
        project=ctx.project,
        labels=ctx.labels,
        message_retention_duration=ctx.retention(ctx.settings.feature_store.message_retention_days),
        opts=pulumi.ResourceOptions(parent=parent),
    )


def subscription(
    ctx: StackContext,
    spec: SubscriptionSpec,
    topics: dict[str, gcp.pubsub.Topic],
    parent: pulumi.Resource,
    bigquery_table: pulumi.Input[str] | None = None,
    depends_on: list[pulumi.Resource] | None = None,
) -> gcp.pubsub.Subscription:
    """A subscription as the topology describes it. With a dead-letter topic, the Pub/Sub service
    agent gets exactly what dead-lettering needs: publish to that topic, subscribe to this one."""
    dead_letter = (
        gcp.pubsub.SubscriptionDeadLetterPolicyArgs(
            dead_letter_topic=topics[spec.dead_letter_topic].id,
            max_delivery_attempts=spec.max_delivery_attempts,
        )
        if spec.dead_letter_topic
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
        retry_policy=gcp.pubsub.SubscriptionRetryPolicyArgs(minimum_backoff="5s", maximum_backoff="300s"),
        # Never expire: an idle variant or dead-letter queue must keep its subscription.
        expiration_policy=gcp.pubsub.SubscriptionExpirationPolicyArgs(ttl=""),
        message_retention_duration=ctx.retention(ctx.settings.feature_store.message_retention_days),
        bigquery_config=gcp.pubsub.SubscriptionBigqueryConfigArgs(
            table=bigquery_table, use_table_schema=True, drop_unknown_fields=True
        )
        if bigquery_table is not None
        else None,
        labels=ctx.labels,
        opts=pulumi.ResourceOptions(parent=parent, depends_on=depends_on),
    )
    if spec.dead_letter_topic:
        gcp.pubsub.TopicIAMMember(
            f"{spec.name}-dlq-publisher",
            project=ctx.project,
            topic=topics[spec.dead_letter_topic].name,
            role="roles/pubsub.publisher",
            member=ctx.pubsub_agent,
            opts=pulumi.ResourceOptions(parent=sub),
        )
        gcp.pubsub.SubscriptionIAMMember(
            f"{spec.name}-dlq-forwarder",
            project=ctx.project,
            subscription=sub.name,
            role="roles/pubsub.subscriber",
            member=ctx.pubsub_agent,
            opts=pulumi.ResourceOptions(parent=sub),
        )
    return sub


def project_role(
    ctx: StackContext, name: str, account: gcp.serviceaccount.Account, role: str, parent: pulumi.Resource
) -> gcp.projects.IAMMember:
    """A project-wide role, for what GCP offers no narrower grant (writing logs, running Dataflow)."""
    return gcp.projects.IAMMember(
        name, project=ctx.project, role=role, member=member(account), opts=pulumi.ResourceOptions(parent=parent)
    )
