"""Training: the pipeline root bucket (artifacts, model registry, trigger ledger), the image
registry, the compiled pipeline, the trigger function (gen2, on the training-triggers topic) and
one Cloud Scheduler job per (trained variant, schedule), each payload deploying to its variant."""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
import pulumi_gcp as gcp

from app.contracts import TriggerEnv
from app.ranking.variant_training import training_parameters
from app.settings import REPO_ROOT, TrainingResourcesConfig
from infra.common import StackContext, content_digest, grant, member, private_bucket, settle, topic
from infra.images import Images

# The trigger function's source: a ``main.py`` shim over ``app/trigger`` and what it imports.
FUNCTION_FILES = (
    "app/__init__.py",
    "app/bounds.py",
    "app/contracts.py",
    "app/echo.py",
    "app/naming.py",
    "app/settings.py",
    "app/trigger/__init__.py",
    "app/trigger/admission.py",
    "app/trigger/main.py",
    "app/trigger/payload.py",
    "app/trigger/ledger.py",
    "app/trigger/submit.py",
)
FUNCTION_MAIN = "from app.trigger.main import http_trigger, pubsub_trigger  # noqa: F401\n"
FUNCTION_ENTRY = "pubsub_trigger"
IMPRESSIONS_PREFIX = "impressions"


def compiled_pipeline(image: str, resources: TrainingResourcesConfig) -> str:
    """The training pipeline's KFP spec for ``image`` and the stack's ``training.resources`` (one
    branch per machine of its ladder): what ``rerank pipeline compile --stack`` writes. Compiled
    once per process for each (image, ladder): every plan of such a stack declares the same spec."""
    return _compiled_pipeline(image, resources.model_dump_json())


@functools.cache
def _compiled_pipeline(image: str, resources_json: str) -> str:
    from pipelines.training import compile_pipeline

    resources = TrainingResourcesConfig.model_validate_json(resources_json)
    with tempfile.TemporaryDirectory() as tmp:
        return compile_pipeline(Path(tmp) / "training.yaml", image=image, resources=resources).read_text()


FUNCTION_REQUIREMENTS = "app/trigger/requirements.txt"


def function_source() -> pulumi.AssetArchive:
    assets: dict[str, pulumi.Asset | pulumi.Archive] = {f: pulumi.FileAsset(str(REPO_ROOT / f)) for f in FUNCTION_FILES}
    assets["main.py"] = pulumi.StringAsset(FUNCTION_MAIN)
    assets["requirements.txt"] = pulumi.FileAsset(str(REPO_ROOT / FUNCTION_REQUIREMENTS))
    return pulumi.AssetArchive(assets)


def function_source_digest() -> str:
    """The digest of what ``function_source`` archives (names and contents)."""
    parts = [f.encode() + b"\0" + (REPO_ROOT / f).read_bytes() for f in (*FUNCTION_FILES, FUNCTION_REQUIREMENTS)]
    return content_digest(b"\0".join([*parts, FUNCTION_MAIN.encode()]))


@dataclass
class TrainingArgs:
    context: StackContext
    pipeline_account: gcp.serviceaccount.Account
    trigger_account: gcp.serviceaccount.Account
    build_account: gcp.serviceaccount.Account
    images: Images
    offline_dataset: pulumi.Input[str]
    pipeline_spec: str


class Training(pulumi.ComponentResource):
    def __init__(self, name: str, args: TrainingArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("rerank:training:Training", name, None, opts)
        ctx, n, s = args.context, args.context.names, args.context.settings
        child = ctx.opts(self)
        pipeline_sa, trigger_sa = args.pipeline_account, args.trigger_account

        self.bucket = private_bucket(ctx, f"{name}-pipeline-root", n.pipeline_bucket(ctx.project), self)
        # Specs and sources are named by their content's digest: a new version is a new object,
        # so the schedules, the drift check and the function see a changed input and follow it.
        spec = gcp.storage.BucketObject(
            f"{name}-pipeline-spec",
            bucket=self.bucket.name,
            name=f"pipelines/rerank-training-{content_digest(args.pipeline_spec.encode())}.yaml",
            content=args.pipeline_spec,
            content_type="application/x-yaml",
            opts=ctx.opts(self, depends_on=[args.images.built]),
        )
        self.template_uri = pulumi.Output.concat("gs://", self.bucket.name, "/", spec.name)
        self.pipeline_root = pulumi.Output.concat("gs://", self.bucket.name, "/root")

        stores = {
            "offline_uri": pulumi.Output.concat("bq://", ctx.project, ".", args.offline_dataset),
            # Ground truth: the core service drops impressions as Parquet under impressions/ in this
            # bucket (infra/cross_cloud.py lets its role create objects there and nowhere else).
            "impressions_uri": pulumi.Output.concat("/gcs/", self.bucket.name, "/", IMPRESSIONS_PREFIX),
            "registry_uri": pulumi.Output.concat("/gcs/", self.bucket.name, "/registry"),
        }
        # Per trained variant: where its run deploys, its parameters, features and window, the
        # entities at the versions the stack serves and the gate margin (app/ranking/variant_training.py).
        self.pipeline_parameters: dict[str, dict[str, pulumi.Input[Any]]] = {
            v.name: {**stores, **training_parameters(s, v.name)} for v in s.serving.trained
        }
        grants = [*self._grant(name, ctx, args), *args.images.build_grants, *self._eventarc(name, ctx, args)]
        self.triggers_topic = topic(ctx, ctx.topic_spec(n.training_triggers_topic), self)
        # The function's Eventarc trigger makes its own push subscription on this topic, so the
        # topology's pull subscription (what runs the trigger locally) is not created in the cloud.
        # In the build staging bucket, which the build account (the function's build runs as it)
        # already reads.
        source = gcp.storage.BucketObject(
            f"{name}-function-source",
            bucket=args.images.staging.name,
            name=f"functions/training-trigger-{function_source_digest()}.zip",
            source=function_source(),
            opts=child,
        )
        self.function = gcp.cloudfunctionsv2.Function(
            f"{name}-trigger",
            name=n.trigger_function,
            project=ctx.project,
            location=ctx.region,
            description="Submits the training pipeline to Vertex AI, once per trigger id",
            build_config=gcp.cloudfunctionsv2.FunctionBuildConfigArgs(
                runtime="python311",
                entry_point=FUNCTION_ENTRY,
                # The build runs as the stack's build account, not the default compute account,
                # and pushes the function's image to the stack's repository.
                service_account=args.build_account.id,
                docker_repository=args.images.repository.id,
                source=gcp.cloudfunctionsv2.FunctionBuildConfigSourceArgs(
                    storage_source=gcp.cloudfunctionsv2.FunctionBuildConfigSourceStorageSourceArgs(
                        bucket=args.images.staging.name, object=source.name
                    )
                ),
            ),
            service_config=gcp.cloudfunctionsv2.FunctionServiceConfigArgs(
                max_instance_count=2,
                available_memory="512M",
                timeout_seconds=300,
                ingress_settings="ALLOW_INTERNAL_ONLY",
                service_account_email=trigger_sa.email,
                environment_variables=TriggerEnv(
                    project=ctx.project,
                    region=ctx.region,
                    pipeline_service_account=pipeline_sa.email,
                    pipeline_root=self.pipeline_root,
                    ledger_bucket=self.bucket.name,
                    # What it agrees to submit (app/trigger/admission.py): this stack's spec, by
                    # its bytes' digest, and each trained variant's parameters as published here.
                    stack=s.stack,
                    pipeline_template=self.template_uri,
                    pipeline_spec_sha256=hashlib.sha256(args.pipeline_spec.encode()).hexdigest(),
                    variant_parameters=pulumi.Output.from_input(self.pipeline_parameters).apply(
                        lambda p: json.dumps(p, sort_keys=True)
                    ),
                ).to_env(),
            ),
            event_trigger=gcp.cloudfunctionsv2.FunctionEventTriggerArgs(
                trigger_region=ctx.region,
                event_type="google.cloud.pubsub.topic.v1.messagePublished",
                pubsub_topic=self.triggers_topic.id,
                retry_policy="RETRY_POLICY_RETRY",
                service_account_email=trigger_sa.email,
            ),
            labels=ctx.labels,
            opts=ctx.opts(self, depends_on=[settle(f"{name}-trigger-settled", grants, child)]),
        )
        # Eventarc pushes to the function's Cloud Run service as the trigger account.
        grant(
            ctx,
            gcp.cloudrunv2.ServiceIamMember,
            f"{name}-trigger-invoker",
            self,
            member(trigger_sa),
            "roles/run.invoker",
            project=ctx.project,
            location=ctx.region,
            name=self.function.name,
        )

        self.schedules: dict[str, dict[str, gcp.cloudscheduler.Job]] = {}
        for v in s.serving.trained:
            parameters = self.pipeline_parameters[v.name]
            self.schedules[v.name] = {
                sched.name: gcp.cloudscheduler.Job(
                    f"{name}-schedule-{v.name}-{sched.name}",
                    name=n.schedule_job(v.name, sched.name),
                    project=ctx.project,
                    region=ctx.region,
                    description=f"Retrain variant {v.name} ({sched.every}) through the trigger function",
                    schedule=sched.cron_expression,
                    time_zone=sched.time_zone,
                    pubsub_target=gcp.cloudscheduler.JobPubsubTargetArgs(
                        topic_name=self.triggers_topic.id,
                        data=pulumi.Output.all(self.template_uri, pulumi.Output.from_input(parameters)).apply(
                            lambda a, sched=sched, v=v: schedule_payload(s.stack, v.name, sched.name, a[0], a[1])
                        ),
                        attributes={"schedule": sched.name, "variant": v.name},
                    ),
                    retry_config=gcp.cloudscheduler.JobRetryConfigArgs(retry_count=3),
                    opts=child,
                )
                for sched in s.schedules_of(v.name)
            }
        self.register_outputs(
            {"bucket": self.bucket.name, "template_uri": self.template_uri, "function": self.function.name}
        )

    def _eventarc(self, name: str, ctx: StackContext, args: TrainingArgs) -> list[pulumi.Resource]:
        """What the function's Pub/Sub trigger needs from Google's side on a fresh project: the
        Eventarc service agent, which exists only once asked for, with its role; and the Pub/Sub
        agent minting the push tokens of the trigger account (automatic only for projects made
        after April 2021)."""
        agent = gcp.projects.ServiceIdentity(
            f"{name}-eventarc-agent", project=ctx.project, service="eventarc.googleapis.com", opts=ctx.opts(self)
        )
        # The project's one agent holds the role for every stack in the project (the review
        # stacks share one): deleting an IAMMember removes the binding whoever declared it
        # (terraform-provider-google#13648), so no stack's destroy removes it.
        role = gcp.projects.IAMMember(
            f"{name}-eventarc-agent",
            project=ctx.project,
            role="roles/eventarc.serviceAgent",
            member=agent.member,
            opts=pulumi.ResourceOptions.merge(ctx.opts(self), pulumi.ResourceOptions(retain_on_delete=True)),
        )
        return [
            role,
            grant(
                ctx,
                gcp.serviceaccount.IAMMember,
                f"{name}-pubsub-push-tokens",
                self,
                ctx.pubsub_agent,
                "roles/iam.serviceAccountTokenCreator",
                service_account_id=args.trigger_account.name,
            ),
        ]

    def _grant(self, name: str, ctx: StackContext, args: TrainingArgs) -> list[pulumi.Resource]:
        pipeline, trigger, p = member(args.pipeline_account), member(args.trigger_account), ctx.project
        return [
            # The pipeline: runs on Vertex, queries the offline store (and stages impressions in
            # its dataset for the point-in-time join), writes artifacts and the model registry.
            grant(
                ctx,
                gcp.projects.IAMMember,
                f"{name}-pipeline-vertex",
                self,
                pipeline,
                "roles/aiplatform.user",
                project=p,
            ),
            grant(
                ctx,
                gcp.projects.IAMMember,
                f"{name}-pipeline-bq-jobs",
                self,
                pipeline,
                "roles/bigquery.jobUser",
                project=p,
            ),
            grant(
                ctx,
                gcp.bigquery.DatasetIamMember,
                f"{name}-pipeline-offline",
                self,
                pipeline,
                "roles/bigquery.dataEditor",
                project=p,
                dataset_id=args.offline_dataset,
            ),
            grant(
                ctx,
                gcp.storage.BucketIAMMember,
                f"{name}-pipeline-root",
                self,
                pipeline,
                "roles/storage.objectAdmin",
                bucket=self.bucket.name,
            ),
            # The trigger: submits pipeline jobs that run as the pipeline account, keeps its ledger.
            grant(
                ctx, gcp.projects.IAMMember, f"{name}-trigger-vertex", self, trigger, "roles/aiplatform.user", project=p
            ),
            grant(
                ctx,
                gcp.serviceaccount.IAMMember,
                f"{name}-trigger-acts-as-pipeline",
                self,
                trigger,
                "roles/iam.serviceAccountUser",
                service_account_id=args.pipeline_account.name,
            ),
            grant(
                ctx,
                gcp.storage.BucketIAMMember,
                f"{name}-trigger-ledger",
                self,
                trigger,
                "roles/storage.objectUser",
                bucket=self.bucket.name,
            ),
            # The Storage Read API, which the BigQuery client uses for query results when it is
            # installed (Beam brings it): bigquery.readsessions.create, no narrower grant exists.
            grant(
                ctx,
                gcp.projects.IAMMember,
                f"{name}-pipeline-bq-read",
                self,
                pipeline,
                "roles/bigquery.readSessionUser",
                project=p,
            ),
            # Pipeline steps run the app image.
            args.images.pull(f"{name}-pipeline-pull", self, pipeline),
        ]


def schedule_payload(stack: str, variant: str, schedule: str, template_uri: str, parameters: dict[str, Any]) -> str:
    """The Pub/Sub data Cloud Scheduler sends (base64): a trigger payload without an id, which the
    function derives from the schedule and the publish time (``app.trigger.payload.with_schedule_id``).
    ``schedule`` is ``<variant>-<schedule>``, so two variants firing at the same hour get two ids."""
    doc = {
        "reason": f"schedule: {schedule} ({variant})",
        "stack": stack,
        "schedule": f"{variant}-{schedule}",
        "template_uri": template_uri,
        "parameters": parameters,
    }
    return base64.b64encode(json.dumps(doc, sort_keys=True).encode()).decode()
