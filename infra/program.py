"""The whole stack: providers, then each part as a ComponentResource. ``__main__.py`` only reads the
configuration, calls ``build`` and exports; tests and ``rerank infra plan`` call ``build`` under
Pulumi's mocks."""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_gcp as gcp

from app.settings import SHADOW_KIND, StackSettings
from infra.common import StackContext, settle
from infra.cross_cloud import CrossCloud, CrossCloudArgs
from infra.drift import DriftCheck, DriftCheckArgs
from infra.feature_store import FeatureStore, FeatureStoreArgs
from infra.identities import ServiceIdentities, ServiceIdentitiesArgs
from infra.images import Images, ImagesArgs
from infra.monitoring import Monitoring, MonitoringArgs
from infra.network import Network, NetworkArgs
from infra.serving import Serving, ServingArgs
from infra.training import Training, TrainingArgs, compiled_pipeline

# The APIs the stack (and what it runs) calls; enabled by the program, so a fresh project needs
# only billing and Service Usage (on by default in new projects; see README "Deploying").
APIS = (
    "aiplatform.googleapis.com",  # Vertex AI pipelines
    "artifactregistry.googleapis.com",
    "bigquery.googleapis.com",
    "bigquerystorage.googleapis.com",  # the BigQuery client reads query results through it
    "cloudbuild.googleapis.com",  # image builds and the function's build
    "cloudfunctions.googleapis.com",
    "cloudresourcemanager.googleapis.com",  # project-level IAM grants
    "cloudscheduler.googleapis.com",
    "compute.googleapis.com",
    "container.googleapis.com",
    "dataflow.googleapis.com",
    "eventarc.googleapis.com",
    "iam.googleapis.com",
    "iamcredentials.googleapis.com",  # workload identity tokens (pods, the core service)
    "logging.googleapis.com",
    "monitoring.googleapis.com",
    "pubsub.googleapis.com",
    "redis.googleapis.com",
    "run.googleapis.com",  # gen2 functions run on Cloud Run
    "secretmanager.googleapis.com",
    "servicenetworking.googleapis.com",
    "serviceusage.googleapis.com",
    "storage.googleapis.com",
    "sts.googleapis.com",  # the core service's federation into GCP
)


def build(settings: StackSettings, pipeline_spec: str | None = None) -> dict[str, Any]:
    """Declare every resource of the stack; returns the stack outputs. ``pipeline_spec`` is the
    compiled training pipeline (compiled here for the stack's image tag when not given)."""
    gcp_provider = gcp.Provider(
        "gcp", project=settings.gcp.project, region=settings.gcp.region, default_labels=settings.label_set()
    )
    assert settings.cross_cloud is not None  # app.settings.cloud_problems requires it
    # The results table lives in the core service's account; refusing any other account keeps a
    # deployer's stray credentials from creating it elsewhere.
    aws_provider = aws.Provider(
        "aws",
        region=settings.aws.region,
        allowed_account_ids=[settings.cross_cloud.aws_account_id],
        default_tags={"tags": settings.label_set()},
    )
    apis = [
        gcp.projects.Service(
            f"api-{api.split('.')[0]}",
            project=settings.gcp.project,
            service=api,
            disable_on_destroy=False,
            opts=pulumi.ResourceOptions(provider=gcp_provider),
        )
        for api in APIS
    ]
    # A freshly enabled API is not at once usable everywhere: everything waits for it to settle.
    apis_settled = settle("apis-settled", apis)
    # Components only pass the provider down; their children wait for the APIs (StackContext.opts).
    on_gcp = pulumi.ResourceOptions(providers={"gcp": gcp_provider})
    # The Pub/Sub service agent moves dead letters and writes the BigQuery subscription. It is
    # created on first use of the API, which on a fresh project may be after our grants to it.
    pubsub_agent = gcp.projects.ServiceIdentity(
        "pubsub-agent",
        project=settings.gcp.project,
        service="pubsub.googleapis.com",
        opts=pulumi.ResourceOptions(provider=gcp_provider, depends_on=[*apis, apis_settled]),
    )
    ctx = StackContext(settings=settings, pubsub_agent=pubsub_agent.member, apis=(*apis, apis_settled))
    n = ctx.names

    ids = ServiceIdentities("identities", ServiceIdentitiesArgs(ctx), on_gcp)
    network = Network("network", NetworkArgs(ctx), on_gcp)
    images = Images("images", ImagesArgs(ctx, ids["build"]), on_gcp)
    features = FeatureStore("feature-store", FeatureStoreArgs(ctx, network, ids["ingest"], images), on_gcp)
    training = Training(
        "training",
        TrainingArgs(
            ctx,
            pipeline_account=ids["pipeline"],
            trigger_account=ids["trigger"],
            build_account=ids["build"],
            images=images,
            offline_dataset=features.dataset.dataset_id,
            pipeline_spec=pipeline_spec
            if pipeline_spec is not None
            else compiled_pipeline(images.tagged("app"), ctx.settings.training.resources),
        ),
        on_gcp,
    )
    serving = Serving(
        "serving",
        ServingArgs(
            ctx,
            network=network,
            nodes_account=ids["nodes"],
            worker_accounts=ids.workers,
            keda_account=ids["keda"],
            offline_dataset=features.dataset.dataset_id,
            redis_url=features.redis_url,
            redis_ca=features.redis_ca,
            pipeline_bucket=training.bucket.name,
            results_role_arn=n.results_writer_role_arn(settings.cross_cloud.aws_account_id),
            images=images,
        ),
        on_gcp,
    )
    cross = CrossCloud(
        "cross-cloud",
        CrossCloudArgs(
            ctx,
            results_writers=[ids.workers[v.name] for v in settings.serving.variants if v.kind != SHADOW_KIND],
            requests_topic=serving.requests_topic,
            pipeline_bucket=training.bucket.name,
            aws_provider=aws_provider,
        ),
        on_gcp,
    )
    DriftCheck(
        "drift",
        DriftCheckArgs(
            ctx,
            provider=serving.provider,
            namespace=serving.namespace,
            cluster=serving.cluster,
            images=images,
            drift_account=ids["drift"],
            offline_dataset=features.dataset.dataset_id,
            pipeline_bucket=training.bucket.name,
            triggers_topic=training.triggers_topic,
            template_uri=training.template_uri,
            pipeline_parameters=training.pipeline_parameters,
        ),
        on_gcp,
    )
    Monitoring(
        "monitoring",
        MonitoringArgs(
            ctx,
            work_subscriptions=[n.feature_ingest_subscription, n.predictions_subscription]
            + [n.variant_subscription(v.name) for v in settings.serving.variants],
            namespace=n.k8s_namespace,
            dead_letter_subscriptions=[
                n.feature_dead_letter_subscription,
                n.requests_dead_letter_subscription,
                n.predictions_dead_letter_subscription,
            ],
            ingest_job=n.ingest_job if features.ingest_job else None,
            trigger_function=n.trigger_function,
            eventarc_trigger=training.function.event_trigger.apply(lambda t: t.trigger if t else None),
            redis_instance=n.redis_instance,
            schedules=any(training.schedules.values()),
            drift_checks=bool(training.pipeline_parameters),
            results_writers=any(v.kind != SHADOW_KIND for v in settings.serving.variants),
        ),
        on_gcp,
    )
    return {
        "stack": settings.stack,
        "env": settings.env,
        "gcp_project": settings.gcp.project,
        "region": settings.gcp.region,
        "feature_events_topic": features.events_topic.id,
        "feature_dead_letter_subscription": features.dead_letter_subscription.id,
        "bigquery_dataset": pulumi.Output.concat(settings.gcp.project, ".", features.dataset.dataset_id),
        "redis_host": features.redis.host,
        "redis_port": features.redis.port,
        "redis_prefix": n.redis_prefix,
        "ingest_job": features.ingest_job.name if features.ingest_job else None,
        "requests_topic": serving.requests_topic.id,
        "variant_subscriptions": {
            v.name: serving.subscriptions[n.variant_subscription(v.name)].id for v in settings.serving.variants
        },
        "predictions_topic": serving.predictions_topic.id,
        "predictions_table": pulumi.Output.concat(
            settings.gcp.project, ".", serving.predictions_table.dataset_id, ".", serving.predictions_table.table_id
        ),
        "cluster": serving.cluster.name,
        "worker_deployments": {v.name: n.worker_deployment(v.name) for v in settings.serving.variants},
        "pipeline_root": training.pipeline_root,
        "pipeline_template": training.template_uri,
        "image_repository": images.prefix,
        "image_tags": images.tags,
        "training_triggers_topic": training.triggers_topic.id,
        "trigger_function": training.function.name,
        "schedules": {
            variant: {name: job.name for name, job in jobs.items()} for variant, jobs in training.schedules.items()
        },
        "drift_checks": {v: n.drift_job(v) for v in training.pipeline_parameters},
        "results_table": cross.table.name,
        "results_table_arn": cross.table.arn,
        "results_writer_role_arn": cross.writer_role.arn,
        "results_reader_policy_arn": cross.reader_policy.arn,
        "core_service_principal": cross.core_service_member,
        "service_accounts": {role: sa.email for role, sa in ids.accounts.items()},
    }
