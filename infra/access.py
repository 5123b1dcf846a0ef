"""What each workload of a stack runs as, and what that account must be able to do.

One table for every resource that *runs as* a service account (the Dataflow job, the function and
its build, each Deployment and CronJob, the Vertex pipeline, the image builds, the nodes, KEDA).
The tests check the program's grants against it, and that nothing in the inventory runs as an
account the table does not list, so a new workload or a new need cannot miss its grant.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.naming import Names
from app.settings import StackSettings

# Where a grant applies: the project, or one resource by the input its IAM member type names it by.
PROJECT = "project"
REPOSITORY = "repository"
BUCKET = "bucket"
DATASET = "datasetId"
TOPIC = "topic"
SUBSCRIPTION = "subscription"
SECRET = "secretId"
SERVICE_ACCOUNT = "serviceAccountId"


@dataclass(frozen=True)
class Need:
    role: str
    scope: str  # one of the constants above
    target: str = ""  # the resource's name (empty for the project)


@dataclass(frozen=True)
class Workload:
    name: str
    account: str  # the role in app.naming.SERVICE_ACCOUNT_ROLES it runs as
    needs: tuple[Need, ...]


def workloads(settings: StackSettings) -> list[Workload]:
    n, project = Names.of(settings), settings.gcp.project
    repo, pipeline_bucket = n.image_repository, n.pipeline_bucket(project)
    pull = Need("roles/artifactregistry.reader", REPOSITORY, repo)
    # Queries of the offline store (results through the Storage Read API; the point-in-time join
    # stages impressions in the dataset).
    offline = (
        Need("roles/bigquery.jobUser", PROJECT),
        Need("roles/bigquery.readSessionUser", PROJECT),
        Need("roles/bigquery.dataEditor", DATASET, n.bigquery_dataset),
    )
    table = [
        Workload(
            "the image builds and the trigger function's build (Cloud Build)",
            "build",
            (
                Need("roles/artifactregistry.writer", REPOSITORY, repo),
                Need("roles/logging.logWriter", PROJECT),
                # image sources and the function's source archive are staged there
                Need("roles/storage.objectViewer", BUCKET, n.build_bucket(project)),
            ),
        ),
        Workload(
            "GKE worker nodes (the kubelet pulls pod images)",
            "nodes",
            (
                pull,
                Need("roles/logging.logWriter", PROJECT),
                Need("roles/monitoring.metricWriter", PROJECT),
            ),
        ),
        Workload(
            "the Vertex AI training pipeline (steps run the app image)",
            "pipeline",
            (
                pull,
                Need("roles/aiplatform.user", PROJECT),
                *offline,
                Need("roles/storage.objectAdmin", BUCKET, pipeline_bucket),
            ),
        ),
        Workload(
            "the training trigger function (and its Eventarc trigger)",
            "trigger",
            (
                Need("roles/aiplatform.user", PROJECT),
                Need("roles/iam.serviceAccountUser", SERVICE_ACCOUNT, n.service_account_id("pipeline")),
                Need("roles/storage.objectUser", BUCKET, pipeline_bucket),
            ),
        ),
        Workload(
            "each variant's worker Deployment (workload identity)",
            "worker",
            (
                *(
                    Need("roles/pubsub.subscriber", SUBSCRIPTION, n.variant_subscription(v.name))
                    for v in settings.serving.variants
                ),
                Need("roles/pubsub.publisher", TOPIC, n.predictions_topic),
                Need("roles/pubsub.publisher", TOPIC, n.requests_dead_letter_topic),
                Need("roles/storage.objectViewer", BUCKET, pipeline_bucket),
            ),
        ),
        Workload(
            "the drift check CronJob (workload identity)",
            "drift",
            (
                *offline,
                Need("roles/storage.objectViewer", BUCKET, pipeline_bucket),
                Need("roles/pubsub.publisher", TOPIC, n.training_triggers_topic),
            ),
        ),
        Workload("the KEDA operator (workload identity)", "keda", (Need("roles/monitoring.viewer", PROJECT),)),
    ]
    if settings.feature_store.dataflow.enabled:
        table.append(
            Workload(
                "the streaming ingest job (flex-template launcher and Dataflow workers)",
                "ingest",
                (
                    pull,
                    Need("roles/dataflow.worker", PROJECT),
                    Need("roles/pubsub.subscriber", SUBSCRIPTION, n.feature_ingest_subscription),
                    Need("roles/pubsub.publisher", TOPIC, n.feature_dead_letter_topic),
                    Need("roles/bigquery.dataEditor", DATASET, n.bigquery_dataset),
                    Need("roles/secretmanager.secretAccessor", SECRET, f"{n.redis_instance}-connection"),
                    Need("roles/storage.objectAdmin", BUCKET, n.dataflow_bucket(project)),
                ),
            )
        )
    return table
