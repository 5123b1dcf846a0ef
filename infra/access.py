"""What each workload of a stack runs as, and what that account must be able to do.

One table for every resource that *runs as* a service account (the Dataflow job, the function and
its build, each Deployment and CronJob, the Vertex pipeline, the image builds, the nodes, KEDA).
The tests check the program's grants against it, and that nothing in the inventory runs as an
account the table does not list, so a new workload or a new need cannot miss its grant. The check
runs both ways: an account holds no grant, AWS trust or Kubernetes binding the table does not give
it, so a shadow's workers cannot reach the results role and no variant can pull another's requests.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.naming import Names
from app.settings import SHADOW_KIND, StackSettings
from infra.drift import DRIFT_K8S_ACCOUNT
from infra.serving import KEDA_OPERATOR_ACCOUNT

# Where a grant applies: the project, or one resource by the input its IAM member type names it by.
PROJECT = "project"
REPOSITORY = "repository"
BUCKET = "bucket"
DATASET = "datasetId"
TOPIC = "topic"
SUBSCRIPTION = "subscription"
SECRET = "secretId"
SERVICE_ACCOUNT = "serviceAccountId"
RUN_SERVICE = "name"  # a Cloud Run service (a gen2 function's) by name
# The AWS role whose trust policy admits the account's Google ID tokens (target: the role's name).
AWS_ROLE_TRUST = "assumeRolePolicy"
ASSUME_WITH_GOOGLE_TOKEN = "sts:AssumeRoleWithWebIdentity"


def worker_account(variant: str) -> str:
    """The key of a variant's worker account, beside the roles of app.naming.SERVICE_ACCOUNT_ROLES."""
    return f"worker-{variant}"


@dataclass(frozen=True)
class Need:
    role: str
    scope: str  # one of the constants above
    target: str = ""  # the resource's name (empty for the project)


@dataclass(frozen=True)
class Workload:
    name: str
    account: str  # the role in app.naming.SERVICE_ACCOUNT_ROLES it runs as, or worker_account(variant)
    needs: tuple[Need, ...]
    # "<namespace>/<Kubernetes account>" that act as the account through GKE workload identity.
    kubernetes: tuple[str, ...] = ()


def workloads(settings: StackSettings) -> list[Workload]:
    n, project = Names.of(settings), settings.gcp.project
    repo, pipeline_bucket, results_role = n.image_repository, n.pipeline_bucket(project), n.results_writer_role
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
                # what GKE's logging and monitoring agents on the nodes need
                Need("roles/monitoring.viewer", PROJECT),
                Need("roles/stackdriver.resourceMetadata.writer", PROJECT),
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
                # Eventarc pushes to the function with the trigger account's token
                Need("roles/run.invoker", RUN_SERVICE, n.trigger_function),
            ),
        ),
        *(
            Workload(
                f"the {v.name} variant's worker Deployment (workload identity)",
                worker_account(v.name),
                (
                    Need("roles/pubsub.subscriber", SUBSCRIPTION, n.variant_subscription(v.name)),
                    Need("roles/pubsub.publisher", TOPIC, n.predictions_topic),
                    Need("roles/pubsub.publisher", TOPIC, n.requests_dead_letter_topic),
                    Need("roles/storage.objectViewer", BUCKET, pipeline_bucket),
                    # Shadows never write served results, so they get no way to.
                    *(() if v.kind == SHADOW_KIND else (Need(ASSUME_WITH_GOOGLE_TOKEN, AWS_ROLE_TRUST, results_role),)),
                ),
                (f"{n.k8s_namespace}/{n.worker_k8s_account(v.name)}",),
            )
            for v in settings.serving.variants
        ),
        Workload(
            "the drift check CronJob (workload identity)",
            "drift",
            (
                *offline,
                Need("roles/storage.objectViewer", BUCKET, pipeline_bucket),
                Need("roles/pubsub.publisher", TOPIC, n.training_triggers_topic),
            ),
            (f"{n.k8s_namespace}/{DRIFT_K8S_ACCOUNT}",),
        ),
        Workload(
            "the KEDA operator (workload identity)",
            "keda",
            (Need("roles/monitoring.viewer", PROJECT),),
            (f"{n.keda_namespace}/{KEDA_OPERATOR_ACCOUNT}",),
        ),
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
                    Need("roles/pubsub.viewer", SUBSCRIPTION, n.feature_ingest_subscription),
                    Need("roles/pubsub.publisher", TOPIC, n.feature_dead_letter_topic),
                    Need("roles/bigquery.dataEditor", DATASET, n.bigquery_dataset),
                    Need("roles/secretmanager.secretAccessor", SECRET, f"{n.redis_instance}-connection"),
                    Need("roles/storage.objectAdmin", BUCKET, n.dataflow_bucket(project)),
                ),
            )
        )
    return table
