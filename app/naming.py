"""Resource names for one stack: the only place a topic, table or key prefix is spelled.

Both ``infra/`` and the local runtime name things through here, so a laptop runs the same
topology, under the same names, as a cloud stack. Names start with ``<prefix>-<stack>`` so that
stacks sharing a project (ephemeral ``pr-<n>`` stacks beside ``dev``) never collide.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Protocol


class Named(Protocol):
    """What names derive from (``app.settings.StackSettings`` is one): naming imports no settings,
    so settings can check its names' limits here."""

    @property
    def name_prefix(self) -> str: ...

    @property
    def stack(self) -> str: ...


@dataclass(frozen=True)
class Names:
    prefix: str
    stack: str

    @classmethod
    def of(cls, settings: Named) -> Names:
        return cls(prefix=settings.name_prefix, stack=settings.stack)

    @property
    def base(self) -> str:
        return f"{self.prefix}-{self.stack}"

    # Feature store
    @property
    def feature_events_topic(self) -> str:
        return f"{self.base}-feature-events"

    @property
    def feature_ingest_subscription(self) -> str:
        return f"{self.base}-feature-events-ingest"

    @property
    def feature_dead_letter_topic(self) -> str:
        return f"{self.base}-feature-events-dead-letter"

    @property
    def feature_dead_letter_subscription(self) -> str:
        return f"{self.base}-feature-events-dead-letter-inspect"

    @property
    def bigquery_dataset(self) -> str:
        return f"{self.prefix}_{self.stack}_features".replace("-", "_")

    @staticmethod
    def offline_table(entity: str, version: str) -> str:
        return f"{entity}_{version}"

    @property
    def redis_prefix(self) -> str:
        return f"{self.prefix}:{self.stack}"

    # Serving
    @property
    def requests_topic(self) -> str:
        return f"{self.base}-rerank-requests"

    def variant_subscription(self, variant: str) -> str:
        return f"{self.base}-rerank-requests-{variant}"

    @property
    def requests_dead_letter_topic(self) -> str:
        return f"{self.base}-rerank-requests-dead-letter"

    @property
    def requests_dead_letter_subscription(self) -> str:
        return f"{self.base}-rerank-requests-dead-letter-inspect"

    @property
    def predictions_topic(self) -> str:
        return f"{self.base}-predictions"

    @property
    def predictions_subscription(self) -> str:
        return f"{self.base}-predictions-sink"

    @property
    def predictions_dead_letter_topic(self) -> str:
        return f"{self.base}-predictions-dead-letter"

    @property
    def predictions_dead_letter_subscription(self) -> str:
        return f"{self.base}-predictions-dead-letter-inspect"

    @property
    def training_triggers_topic(self) -> str:
        return f"{self.base}-training-triggers"

    @property
    def training_triggers_subscription(self) -> str:
        return f"{self.base}-training-triggers-function"

    def schedule_job(self, variant: str, schedule: str) -> str:
        return f"{self.base}-train-{variant}-{schedule}"

    def worker_deployment(self, variant: str) -> str:
        return f"{self.base}-worker-{variant}"

    @property
    def results_table(self) -> str:
        return f"{self.base}-rerank-results"

    # Cloud-only resources (infra/). GCP service account ids are at most 30 characters, which is
    # why app.settings.cloud_problems limits ``<prefix>-<stack>`` to CLOUD_BASE_MAX characters.
    def service_account_id(self, role: str) -> str:
        if role not in SERVICE_ACCOUNT_ROLES:
            raise ValueError(f"unknown service account role {role!r} (roles: {', '.join(SERVICE_ACCOUNT_ROLES)})")
        return f"{self.base}-{role}"

    def worker_service_account_id(self, variant: str) -> str:
        """Each variant's workers run as an account of their own (``<base>-w-<variant>``), so a
        variant reaches only its own subscription and a shadow no results role. A variant name too
        long for the 30-character limit (or ending in a hyphen) keeps its start and gets a digest of
        the whole name."""
        room = SERVICE_ACCOUNT_ID_MAX - len(self.base) - len("-w-")
        if room < 6:
            raise ValueError(f"'{self.base}' leaves no room for a worker account id (at most {CLOUD_BASE_MAX})")
        if len(variant) <= room and not variant.endswith("-"):  # ids end with a letter or digit
            return f"{self.base}-w-{variant}"
        digest = hashlib.sha256(variant.encode()).hexdigest()[:4]
        return f"{self.base}-w-{variant[: room - 5].rstrip('-')}-{digest}"

    @property
    def network(self) -> str:
        return f"{self.base}-vpc"

    @property
    def subnet(self) -> str:
        return f"{self.base}-nodes"

    @property
    def redis_instance(self) -> str:
        return f"{self.base}-online"

    @property
    def cluster(self) -> str:
        return f"{self.base}-serving"

    @property
    def worker_pool(self) -> str:
        return f"{self.base}-workers"

    @property
    def system_pool(self) -> str:
        return f"{self.base}-system"

    def node_tag(self, pool: str) -> str:
        """The network tag of a node pool's VMs (firewall rules target it)."""
        return f"{self.base}-{pool}"

    @property
    def k8s_namespace(self) -> str:
        # GKE workload identity names a pod by project, namespace and Kubernetes account, whatever
        # the cluster: stacks sharing a project must not share a namespace, or a review stack's pod
        # could act as dev's accounts.
        return self.base

    @property
    def keda_namespace(self) -> str:
        return f"{self.base}-keda"

    def worker_k8s_account(self, variant: str) -> str:
        return f"worker-{variant}"

    def drift_job(self, variant: str) -> str:
        return f"{self.base}-drift-{variant}"

    def pipeline_bucket(self, project: str) -> str:
        return f"{project}-{self.base}-pipelines"

    def dataflow_bucket(self, project: str) -> str:
        return f"{project}-{self.base}-dataflow"

    def build_bucket(self, project: str) -> str:
        return f"{project}-{self.base}-builds"

    @property
    def image_repository(self) -> str:
        return f"{self.base}-images"

    def image_prefix(self, region: str, project: str) -> str:
        return f"{region}-docker.pkg.dev/{project}/{self.image_repository}"

    def image(self, region: str, project: str, name: str, tag: str) -> str:
        """``name`` is ``app`` (workers and training steps, ./Dockerfile) or ``ingest`` (the flex template)."""
        if name not in ("app", "ingest"):
            raise ValueError(f"unknown image {name!r} (images: app, ingest)")
        return f"{self.image_prefix(region, project)}/{name}:{tag}"

    @property
    def ingest_job(self) -> str:
        return f"{self.base}-feature-ingest"

    @property
    def trigger_function(self) -> str:
        return f"{self.base}-training-trigger"

    @property
    def predictions_table(self) -> str:
        return "predictions"

    @property
    def identity_pool(self) -> str:
        return f"{self.base}-aws"

    @property
    def results_writer_role(self) -> str:
        return f"{self.base}-results-writer"

    def results_writer_role_arn(self, aws_account_id: str) -> str:
        # IAM role ARNs follow from account and name, so serving can name the role before it exists.
        return f"arn:aws:iam::{aws_account_id}:role/{self.results_writer_role}"

    @property
    def results_reader_policy(self) -> str:
        return f"{self.base}-results-reader"


# Workers are not a role: each variant has its own account (Names.worker_service_account_id).
SERVICE_ACCOUNT_ROLES = ("ingest", "pipeline", "trigger", "nodes", "keda", "drift", "build")
# GCP service account ids are 6-30 characters (the policy pack's service-account-ids-fit checks them).
SERVICE_ACCOUNT_ID_MAX = 30
CLOUD_BASE_MAX = SERVICE_ACCOUNT_ID_MAX - 1 - max(len(r) for r in SERVICE_ACCOUNT_ROLES)
