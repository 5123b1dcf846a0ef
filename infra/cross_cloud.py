"""Cross-cloud: the results table the core service reads on AWS, and federation both ways with
no long-lived keys. The workers of variants that serve results (primary and arms; each variant's
own GCP service account, via GKE workload identity) assume an AWS role with a Google ID token;
the core service (an AWS role) publishes requests through a GCP workload identity pool."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_gcp as gcp

from app.settings import StackSettings
from infra.common import StackContext, grant
from infra.training import IMPRESSIONS_PREFIX

GOOGLE_ISSUER = "accounts.google.com"
# AWS STS reports the session ARN; map it to the role so the condition names the role only.
AWS_ROLE_MAPPING = (
    "assertion.arn.contains('assumed-role') "
    "? assertion.arn.extract('{account_arn}assumed-role/') + 'assumed-role/' "
    "+ assertion.arn.extract('assumed-role/{role_name}/') "
    ": assertion.arn"
)


@dataclass
class CrossCloudArgs:
    context: StackContext
    # The accounts of the variants whose results the core service reads (never a shadow's).
    results_writers: list[gcp.serviceaccount.Account]
    requests_topic: gcp.pubsub.Topic
    pipeline_bucket: pulumi.Input[str]
    aws_provider: aws.Provider


class CrossCloud(pulumi.ComponentResource):
    def __init__(self, name: str, args: CrossCloudArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("rerank:cross_cloud:CrossCloud", name, None, opts)
        ctx, n, s = args.context, args.context.names, args.context.settings
        assert s.cross_cloud is not None  # cloud_problems requires it for every cloud stack
        on_aws = pulumi.ResourceOptions(parent=self, provider=args.aws_provider)
        tags = ctx.labels

        spec = ctx.topology.tables[0]
        self.table = aws.dynamodb.Table(
            f"{name}-results",
            name=spec.name,
            billing_mode="PAY_PER_REQUEST",
            hash_key=spec.hash_key,
            range_key=spec.range_key,
            attributes=[
                aws.dynamodb.TableAttributeArgs(name=spec.hash_key, type="S"),
                aws.dynamodb.TableAttributeArgs(name=spec.range_key, type="S"),
            ],
            ttl=aws.dynamodb.TableTtlArgs(attribute_name=spec.ttl_attribute, enabled=True),
            point_in_time_recovery=aws.dynamodb.TablePointInTimeRecoveryArgs(enabled=s.env != "ephemeral"),
            server_side_encryption=aws.dynamodb.TableServerSideEncryptionArgs(enabled=True),
            deletion_protection_enabled=s.protected,
            tags=tags,
            opts=pulumi.ResourceOptions(parent=self, provider=args.aws_provider, protect=s.protected),
        )

        # GCP -> AWS: the serving variants' Google identities (a unique id is the token's subject)
        # may assume this role and do exactly the result table's conditional writes.
        self.writer_role = aws.iam.Role(
            f"{name}-results-writer",
            name=n.results_writer_role,
            description=f"rerank {s.stack} primary and arm workers write re-rank results",
            assume_role_policy=pulumi.Output.all(*(a.unique_id for a in args.results_writers)).apply(
                lambda ids: google_trust_policy(ids, n.results_writer_role_arn(s.cross_cloud.aws_account_id))
            ),
            max_session_duration=3600,
            # Whatever the deployer writes into this role, it can do no more than the boundary.
            permissions_boundary=role_boundary_arn(s),
            tags=tags,
            opts=on_aws,
        )
        aws.iam.RolePolicy(
            f"{name}-results-write",
            role=self.writer_role.id,
            policy=self.table.arn.apply(lambda arn: table_policy(arn, ["dynamodb:PutItem", "dynamodb:GetItem"])),
            opts=on_aws,
        )
        # What the core service's own role needs to read results; it attaches this policy.
        self.reader_policy = aws.iam.Policy(
            f"{name}-results-reader",
            name=n.results_reader_policy,
            description=f"Read rerank {s.stack} results (attach to the core service's role)",
            policy=self.table.arn.apply(lambda arn: table_policy(arn, ["dynamodb:GetItem", "dynamodb:BatchGetItem"])),
            tags=tags,
            opts=on_aws,
        )

        # AWS -> GCP: the core service's role publishes re-rank requests, nothing else. Review
        # stacks skip this: pool ids stay reserved for 30 days after deletion, and the core
        # service does not call review stacks.
        self.core_service_member: pulumi.Output[str] | None = None
        if s.env != "ephemeral":
            cc = s.cross_cloud
            role_arn = f"arn:aws:sts::{cc.aws_account_id}:assumed-role/{cc.core_service_role}"
            child = ctx.opts(self)
            self.pool = gcp.iam.WorkloadIdentityPool(
                f"{name}-aws-pool",
                workload_identity_pool_id=n.identity_pool,
                project=ctx.project,
                display_name=f"rerank {s.stack} core service"[:32],
                description="The AWS core service publishes re-rank requests",
                opts=child,
            )
            gcp.iam.WorkloadIdentityPoolProvider(
                f"{name}-aws-provider",
                project=ctx.project,
                workload_identity_pool_id=self.pool.workload_identity_pool_id,
                workload_identity_pool_provider_id="core-service",
                display_name="AWS core service",
                aws=gcp.iam.WorkloadIdentityPoolProviderAwsArgs(account_id=cc.aws_account_id),
                attribute_mapping={"google.subject": "assertion.arn", "attribute.aws_role": AWS_ROLE_MAPPING},
                attribute_condition=f"attribute.aws_role == '{role_arn}'",
                opts=child,
            )
            self.core_service_member = pulumi.Output.concat(
                "principalSet://iam.googleapis.com/", self.pool.name, "/attribute.aws_role/", role_arn
            )
            grant(
                ctx,
                gcp.pubsub.TopicIAMMember,
                f"{name}-core-service-publish",
                self,
                self.core_service_member,
                "roles/pubsub.publisher",
                project=ctx.project,
                topic=args.requests_topic.name,
            )
            # ... and delivers ground truth: impressions as Parquet, only under impressions/.
            only_impressions = pulumi.Output.concat(
                'resource.name.startsWith("projects/_/buckets/',
                args.pipeline_bucket,
                "/objects/",
                IMPRESSIONS_PREFIX,
                '/")',
            )
            grant(
                ctx,
                gcp.storage.BucketIAMMember,
                f"{name}-core-service-impressions",
                self,
                self.core_service_member,
                "roles/storage.objectCreator",
                bucket=args.pipeline_bucket,
                condition=gcp.storage.BucketIAMMemberConditionArgs(
                    title="impressions-only", expression=only_impressions
                ),
            )
        self.register_outputs({"results_table": self.table.name, "writer_role": self.writer_role.arn})


def deployer_of(settings: StackSettings) -> str:
    """Which deployer's AWS identity runs the stack (infra/aws/deployer-<name>.json): review stacks
    share one, limited to ``<prefix>-pr-*``; dev and prod have their own."""
    return "review" if settings.env == "ephemeral" else settings.stack


def role_boundary_arn(settings: StackSettings) -> str:
    """The permissions boundary of every role the stack makes: made once by an admin from
    infra/aws/boundary-<deployer>.json (README), and one the deployer may neither change nor remove."""
    assert settings.cross_cloud is not None
    account, name = settings.cross_cloud.aws_account_id, f"{settings.name_prefix}-boundary-{deployer_of(settings)}"
    return f"arn:aws:iam::{account}:policy/{name}"


def google_trust_policy(service_account_unique_ids: list[str], audience: str) -> str:
    """Trust for ``sts:AssumeRoleWithWebIdentity`` by the listed Google service accounts' ID tokens.

    For ``accounts.google.com`` AWS maps ``:aud`` to the token's ``azp`` (the account's unique id)
    and ``:oaud`` to its ``aud``: the audience the workers request
    (``app.serving.aws_federation``: the role's own ARN). Pinning both keeps a token minted for
    any other audience from being replayed here. A service account's ID token carries its unique
    id as both ``azp`` and ``sub``, so one statement with the list in each key admits exactly the
    listed accounts (and stays far below the 2048-character trust policy limit)."""
    ids = sorted(service_account_unique_ids)
    doc: dict[str, Any] = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Federated": GOOGLE_ISSUER},
                "Action": "sts:AssumeRoleWithWebIdentity",
                "Condition": {
                    "StringEquals": {
                        f"{GOOGLE_ISSUER}:aud": ids,
                        f"{GOOGLE_ISSUER}:oaud": audience,
                        f"{GOOGLE_ISSUER}:sub": ids,
                    }
                },
            }
        ],
    }
    return json.dumps(doc)


def table_policy(table_arn: str, actions: list[str]) -> str:
    return json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": actions, "Resource": table_arn}]}
    )
