"""The drift and ground-truth check on a schedule: per trained variant, a CronJob in the serving
cluster that runs ``rerank drift check --variant V --endpoints env`` with the pipeline parameters
the variant's scheduled triggers carry, and publishes a retraining trigger when a threshold is
crossed. A variant that follows another's model is covered by that variant's check: it serves
the same model, and a retrain deploys to both."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_gcp as gcp
import pulumi_kubernetes as k8s

from app.contracts import DriftEnv, k8s_env
from infra.common import (
    CONTAINER_SECURITY,
    GCS_FUSE_ANNOTATION,
    ON_SPOT_POOL,
    POD_SECURITY,
    SCRATCH_MOUNT,
    SCRATCH_VOLUME,
    StackContext,
    bucket_mount,
    bucket_volume,
    grant,
    member,
    pod_identity,
)
from infra.images import Images

DRIFT_K8S_ACCOUNT = "drift"


@dataclass
class DriftCheckArgs:
    context: StackContext
    provider: k8s.Provider
    namespace: k8s.core.v1.Namespace
    cluster: gcp.container.Cluster
    images: Images
    drift_account: gcp.serviceaccount.Account
    offline_dataset: pulumi.Input[str]
    pipeline_bucket: pulumi.Input[str]
    triggers_topic: gcp.pubsub.Topic
    template_uri: pulumi.Input[str]
    pipeline_parameters: dict[str, dict[str, Any]]  # per trained variant


class DriftCheck(pulumi.ComponentResource):
    def __init__(self, name: str, args: DriftCheckArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("rerank:drift:DriftCheck", name, None, opts)
        ctx, n = args.context, args.context.names
        who, p = member(args.drift_account), ctx.project
        grants = [
            # Reads the offline store (the point-in-time join stages impressions in the dataset).
            grant(ctx, gcp.projects.IAMMember, f"{name}-bq-jobs", self, who, "roles/bigquery.jobUser", project=p),
            # Query results come through the Storage Read API when its client is installed.
            grant(
                ctx, gcp.projects.IAMMember, f"{name}-bq-read", self, who, "roles/bigquery.readSessionUser", project=p
            ),
            grant(
                ctx,
                gcp.bigquery.DatasetIamMember,
                f"{name}-offline",
                self,
                who,
                "roles/bigquery.dataEditor",
                project=p,
                dataset_id=args.offline_dataset,
            ),
            # Impressions and the model registry, through Cloud Storage FUSE.
            grant(
                ctx,
                gcp.storage.BucketIAMMember,
                f"{name}-bucket",
                self,
                who,
                "roles/storage.objectViewer",
                bucket=args.pipeline_bucket,
            ),
            grant(
                ctx,
                gcp.pubsub.TopicIAMMember,
                f"{name}-triggers",
                self,
                who,
                "roles/pubsub.publisher",
                project=p,
                topic=args.triggers_topic.name,
            ),
        ]
        on_k8s = pulumi.ResourceOptions(parent=self, provider=args.provider, depends_on=[args.namespace])
        account = pod_identity(
            ctx, f"{name}-account", args.drift_account, DRIFT_K8S_ACCOUNT, self, on_k8s, args.cluster
        )
        self.cron_jobs = {
            variant: self._cron_job(name, args, variant, parameters, [account, *grants])
            for variant, parameters in args.pipeline_parameters.items()
        }
        self.register_outputs({"cron_jobs": {v: n.drift_job(v) for v in self.cron_jobs}})

    def _cron_job(
        self,
        name: str,
        args: DriftCheckArgs,
        variant: str,
        parameters: dict[str, Any],
        after: list[pulumi.Resource],
    ) -> k8s.batch.v1.CronJob:
        ctx, n, s = args.context, args.context.names, args.context.settings
        env = DriftEnv(
            pipeline_parameters=pulumi.Output.from_input(parameters).apply(lambda d: json.dumps(d, sort_keys=True)),
            pipeline_template=args.template_uri,
        )
        return k8s.batch.v1.CronJob(
            f"{name}-cron-{variant}",
            metadata={"name": n.drift_job(variant), "namespace": n.k8s_namespace, "labels": ctx.labels},
            spec={
                "schedule": s.training.drift.schedule,
                "timeZone": "Etc/UTC",
                "concurrencyPolicy": "Forbid",
                "successfulJobsHistoryLimit": 3,
                "failedJobsHistoryLimit": 3,
                "jobTemplate": {
                    "spec": {
                        "backoffLimit": 2,
                        "activeDeadlineSeconds": 3600,
                        "template": {
                            "metadata": {"annotations": GCS_FUSE_ANNOTATION},
                            "spec": {
                                "serviceAccountName": DRIFT_K8S_ACCOUNT,
                                "automountServiceAccountToken": False,
                                "restartPolicy": "Never",
                                **ON_SPOT_POOL,
                                "securityContext": POD_SECURITY,
                                "containers": [
                                    {
                                        "name": "drift",
                                        "image": args.images.ref("app"),
                                        "args": [
                                            "drift",
                                            "check",
                                            "--stack",
                                            s.stack,
                                            "--variant",
                                            variant,
                                            "--endpoints",
                                            "env",
                                            "--json",
                                        ],
                                        "env": k8s_env(env.to_env()),
                                        "resources": {
                                            "requests": {"cpu": "1", "memory": "2Gi"},
                                            "limits": {"memory": "2Gi"},
                                        },
                                        "securityContext": CONTAINER_SECURITY,
                                        "volumeMounts": [
                                            bucket_mount("pipeline-bucket", args.pipeline_bucket),
                                            SCRATCH_MOUNT,
                                        ],
                                    }
                                ],
                                "volumes": [bucket_volume("pipeline-bucket", args.pipeline_bucket), SCRATCH_VOLUME],
                            },
                        },
                    }
                },
            },
            opts=pulumi.ResourceOptions(parent=self, provider=args.provider, depends_on=[args.namespace, *after]),
        )
