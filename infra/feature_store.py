"""Feature store: ingest topics with dead letters, the BigQuery offline store, the Memorystore
online store and the streaming Dataflow job (flex template) between them."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_gcp as gcp

from app.featurestore.bigquery_store import bigquery_tables
from app.featurestore.redis_connect import secret_payload
from app.featurestore.registry import default_registry
from app.featurestore.template_spec import render_spec, stack_parameters
from infra.common import (
    StackContext,
    content_digest,
    days_ms,
    grant,
    member,
    perma_diffs,
    private_bucket,
    settle,
    subscription,
    topic,
)
from infra.dataflow_options import streaming_options
from infra.images import Images
from infra.network import DATAFLOW_TAG, Network


@dataclass
class FeatureStoreArgs:
    context: StackContext
    network: Network
    ingest_account: gcp.serviceaccount.Account
    images: Images


class FeatureStore(pulumi.ComponentResource):
    def __init__(self, name: str, args: FeatureStoreArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("rerank:feature_store:FeatureStore", name, None, opts)
        ctx, fs, n = args.context, args.context.settings.feature_store, args.context.names
        child = ctx.opts(self)
        sa = args.ingest_account

        # Pub/Sub: events in, rejects (with a reason attribute) out.
        topics = {t: topic(ctx, ctx.topic_spec(t), self) for t in (n.feature_events_topic, n.feature_dead_letter_topic)}
        subs = {
            s.name: subscription(
                ctx, s, topics, self, consumer="dataflow" if s.name == n.feature_ingest_subscription else None
            )
            for t in topics
            for s in ctx.subscriptions_of(t)
        }
        self.events_topic = topics[n.feature_events_topic]
        self.dead_letter_topic = topics[n.feature_dead_letter_topic]
        self.ingest_subscription = subs[n.feature_ingest_subscription]
        self.dead_letter_subscription = subs[n.feature_dead_letter_subscription]

        # Offline store: one partitioned table per entity version the stack lists.
        partition_ms = days_ms(fs.offline_partition_expiration_days)
        self.dataset = gcp.bigquery.Dataset(
            f"{name}-offline",
            dataset_id=n.bigquery_dataset,
            project=ctx.project,
            location=ctx.region,
            description=f"rerank {ctx.settings.stack}: feature events per entity version and predictions",
            default_partition_expiration_ms=partition_ms,
            max_time_travel_hours="168" if ctx.settings.protected else "48",
            delete_contents_on_destroy=not ctx.settings.protected,
            labels=ctx.labels,
            opts=ctx.protect(self),
        )
        schemas = bigquery_tables(default_registry())
        self.tables = {
            t.table: gcp.bigquery.Table(
                f"{name}-{t.table}",
                project=ctx.project,
                dataset_id=self.dataset.dataset_id,
                table_id=t.table,
                description=f"{t.entity} {t.version} feature events (append-only; read point-in-time)",
                schema=json.dumps(schemas[t.table]),
                time_partitioning=gcp.bigquery.TableTimePartitioningArgs(
                    type="DAY", field="event_time", expiration_ms=partition_ms
                ),
                clusterings=["entity_id"],
                deletion_protection=ctx.settings.protected,
                labels=ctx.labels,
                opts=ctx.protect(self),
            )
            for t in ctx.topology.offline_tables
        }

        # Online store: Memorystore on private service access; AUTH and TLS where the stack asks.
        redis = fs.redis
        self.redis = gcp.redis.Instance(
            f"{name}-online",
            name=n.redis_instance,
            project=ctx.project,
            region=ctx.region,
            tier=redis.tier,
            memory_size_gb=redis.memory_size_gb,
            redis_version="REDIS_7_2",
            connect_mode="PRIVATE_SERVICE_ACCESS",
            authorized_network=args.network.vpc.id,
            auth_enabled=redis.auth_enabled,
            transit_encryption_mode="SERVER_AUTHENTICATION" if redis.transit_encryption else "DISABLED",
            persistence_config=gcp.redis.InstancePersistenceConfigArgs(
                persistence_mode="RDB", rdb_snapshot_period="SIX_HOURS"
            )
            if ctx.settings.protected
            else None,
            # One weekly hour (the API takes one window): the stack's first maintenance day, in UTC.
            maintenance_policy=gcp.redis.InstanceMaintenancePolicyArgs(
                weekly_maintenance_windows=[
                    gcp.redis.InstanceMaintenancePolicyWeeklyMaintenanceWindowArgs(
                        day=ctx.settings.maintenance.days[0],
                        start_time=gcp.redis.InstanceMaintenancePolicyWeeklyMaintenanceWindowStartTimeArgs(
                            hours=ctx.settings.maintenance.start_hour, minutes=0, seconds=0, nanos=0
                        ),
                    )
                ]
            ),
            deletion_protection=ctx.settings.protected,
            labels=ctx.labels,
            opts=ctx.protect(self, depends_on=[args.network.private_services]),
        )
        self.redis_url = pulumi.Output.secret(
            pulumi.Output.all(self.redis.host, self.redis.port, self.redis.auth_string).apply(
                lambda a: redis_url(a[0], a[1], a[2] if redis.auth_enabled else None, redis.transit_encryption)
            )
        )

        self.redis_ca = self.redis.server_ca_certs.apply(lambda certs: "".join(c.cert or "" for c in certs or []))
        # The ingest job reads URL and CA from Secret Manager: its parameters are visible to anyone
        # who can view jobs, the secret only to its service account.
        self.redis_secret = gcp.secretmanager.Secret(
            f"{name}-online-store",
            secret_id=f"{n.redis_instance}-connection",
            project=ctx.project,
            replication=gcp.secretmanager.SecretReplicationArgs(auto=gcp.secretmanager.SecretReplicationAutoArgs()),
            labels=ctx.labels,
            opts=child,
        )
        self.redis_secret_version = gcp.secretmanager.SecretVersion(
            f"{name}-online-store",
            secret=self.redis_secret.id,
            secret_data=pulumi.Output.secret(
                pulumi.Output.all(self.redis_url, self.redis_ca).apply(lambda a: secret_payload(a[0], a[1]))
            ),
            opts=child,
        )

        # The streaming ingest job, from the flex template whose spec is rendered from the app.
        self.bucket = private_bucket(ctx, f"{name}-dataflow", n.dataflow_bucket(ctx.project), self, "tmp/")
        self.ingest_job: gcp.dataflow.FlexTemplateJob | None = None
        if fs.dataflow.enabled:
            # Without the job nothing runs as the ingest account, so it holds nothing (infra/access.py).
            self.ingest_job = self._ingest_job(name, ctx, args, self._grant_ingest(name, ctx, sa, args.images))
        self.register_outputs(
            {
                "events_topic": self.events_topic.id,
                "dataset": self.dataset.dataset_id,
                "redis_host": self.redis.host,
                "ingest_job": self.ingest_job.job_id if self.ingest_job else None,
            }
        )

    def _ingest_job(
        self, name: str, ctx: StackContext, args: FeatureStoreArgs, grants: list[pulumi.Resource]
    ) -> gcp.dataflow.FlexTemplateJob:
        """The streaming ingest job, from a flex template spec named by its content's digest (a new
        image or parameter list is a new spec, so the job sees a changed input and is updated)."""
        fs, n, sa = ctx.settings.feature_store, ctx.names, args.ingest_account
        image = args.images.ref("ingest")
        content = image.apply(lambda i: json.dumps(render_spec(i), indent=2))
        spec = gcp.storage.BucketObject(
            f"{name}-template",
            bucket=self.bucket.name,
            name=content.apply(lambda c: f"templates/ingest-{content_digest(c.encode())}.json"),
            content=content,
            content_type="application/json",
            opts=ctx.opts(self),
        )
        return gcp.dataflow.FlexTemplateJob(
            f"{name}-ingest",
            name=n.ingest_job,
            project=ctx.project,
            region=ctx.region,
            container_spec_gcs_path=pulumi.Output.concat("gs://", self.bucket.name, "/", spec.name),
            parameters={
                "subscription": self.ingest_subscription.id,
                "dead_letter_topic": self.dead_letter_topic.id,
                "redis_url": self.redis_secret_version.name,
                "bigquery_dataset": pulumi.Output.concat(ctx.project, ".", self.dataset.dataset_id),
                **stack_parameters(ctx.settings),
            },
            service_account_email=sa.email,
            temp_location=pulumi.Output.concat("gs://", self.bucket.name, "/tmp"),
            staging_location=pulumi.Output.concat("gs://", self.bucket.name, "/staging"),
            subnetwork=args.network.subnet.self_link,
            ip_configuration="WORKER_IP_PRIVATE",
            machine_type=fs.dataflow.machine_type,
            # Workers run the launcher's image, so they have exactly its code and pins.
            sdk_container_image=image,
            max_workers=fs.dataflow.max_workers,
            enable_streaming_engine=True,
            # The streaming mode, which is Streaming Engine's billing, as the stack sets it: stated
            # here, not left to the template's default mode (`rerank infra cost` prices either).
            additional_experiments=[
                f"use_network_tags={DATAFLOW_TAG}",
                *streaming_options(fs.dataflow.streaming_billing),
            ],
            # Drain on delete or replacement: events already pulled are written, not dropped. A
            # review stack's job is cancelled: its events are test data and a drain can take hours.
            on_delete="cancel" if ctx.settings.env == "ephemeral" else "drain",
            labels=ctx.labels,
            # The spec (named by its content) carries what changes; these fields only perma-diff.
            opts=pulumi.ResourceOptions.merge(
                ctx.opts(self, depends_on=[settle(f"{name}-ingest-settled", grants, ctx.opts(self))]),
                pulumi.ResourceOptions(ignore_changes=perma_diffs("gcp:dataflow/flexTemplateJob:FlexTemplateJob")),
            ),
        )

    def _grant_ingest(
        self, name: str, ctx: StackContext, sa: gcp.serviceaccount.Account, images: Images
    ) -> list[pulumi.Resource]:
        who, p = member(sa), ctx.project
        n = f"{name}-ingest"
        return [
            # The flex-template launcher and the workers run the ingest image as this account.
            images.pull(f"{n}-pull", self, who),
            grant(ctx, gcp.projects.IAMMember, f"{n}-dataflow-worker", self, who, "roles/dataflow.worker", project=p),
            grant(
                ctx,
                gcp.pubsub.SubscriptionIAMMember,
                f"{n}-consume",
                self,
                who,
                "roles/pubsub.subscriber",
                project=p,
                subscription=self.ingest_subscription.name,
            ),
            grant(
                ctx,
                gcp.pubsub.SubscriptionIAMMember,
                f"{n}-inspect",
                self,
                who,
                "roles/pubsub.viewer",
                project=p,
                subscription=self.ingest_subscription.name,
            ),
            grant(
                ctx,
                gcp.pubsub.TopicIAMMember,
                f"{n}-dead-letter",
                self,
                who,
                "roles/pubsub.publisher",
                project=p,
                topic=self.dead_letter_topic.name,
            ),
            grant(
                ctx,
                gcp.bigquery.DatasetIamMember,
                f"{n}-offline",
                self,
                who,
                "roles/bigquery.dataEditor",
                project=p,
                dataset_id=self.dataset.dataset_id,
            ),
            grant(
                ctx,
                gcp.secretmanager.SecretIamMember,
                f"{n}-online-store",
                self,
                who,
                "roles/secretmanager.secretAccessor",
                project=p,
                secret_id=self.redis_secret.id,
            ),
            grant(
                ctx,
                gcp.storage.BucketIAMMember,
                f"{n}-staging",
                self,
                who,
                "roles/storage.objectAdmin",
                bucket=self.bucket.name,
            ),
        ]


def redis_url(host: str, port: int, auth: str | None, tls: bool) -> str:
    """The URL the ingest job and the workers connect with (``rediss`` when in-transit encryption is on)."""
    credentials = f":{auth}@" if auth else ""
    return f"{'rediss' if tls else 'redis'}://{credentials}{host}:{port}/0"
