"""One Google service account per component role and one per variant's workers; the components
grant each only what it uses.

Accounts are created here, apart from their grants, because two components need the workers'
identities: serving runs each variant's pods as its own account and cross-cloud lets only the
accounts of variants that serve results (primary and arms, never shadows) assume the AWS role.
No account gets a key: pods use GKE workload identity, Dataflow, the function and Vertex run as
the account.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_gcp as gcp

from app.naming import SERVICE_ACCOUNT_ROLES
from app.settings import SHADOW_KIND
from infra.access import worker_account
from infra.common import StackContext

PURPOSES = {
    "ingest": "Dataflow feature ingest: reads feature events, writes Memorystore and BigQuery",
    "pipeline": "Vertex AI training pipeline: reads the offline store, writes models to the pipeline root",
    "trigger": "Training trigger function: submits the pipeline to Vertex AI as the pipeline account",
    "nodes": "GKE worker nodes: logs, metrics and image pulls only",
    "keda": "KEDA operator (GKE workload identity): reads subscription backlog metrics",
    "drift": "Drift check CronJob (GKE workload identity): reads the offline store, publishes retraining triggers",
    "build": "Cloud Build (the stack's images, the trigger function's build): pushes images, writes build logs",
}


@dataclass
class ServiceIdentitiesArgs:
    context: StackContext


def worker_purpose(kind: str) -> str:
    writes = "" if kind == SHADOW_KIND else ", assume the AWS results role"
    return f"Re-rank {kind} variant's workers (GKE workload identity): pull its requests, publish predictions{writes}"


class ServiceIdentities(pulumi.ComponentResource):
    accounts: dict[str, gcp.serviceaccount.Account]  # by role, and by worker_account(variant)

    def __init__(self, name: str, args: ServiceIdentitiesArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("rerank:identities:ServiceIdentities", name, None, opts)
        ctx = args.context
        self.accounts = {
            role: gcp.serviceaccount.Account(
                f"{name}-{role}",
                account_id=ctx.names.service_account_id(role),
                display_name=f"rerank {ctx.settings.stack} {role}",
                description=PURPOSES[role],
                project=ctx.project,
                opts=ctx.opts(self),
            )
            for role in SERVICE_ACCOUNT_ROLES
        }
        self.workers = {
            v.name: gcp.serviceaccount.Account(
                f"{name}-{worker_account(v.name)}",
                account_id=ctx.names.worker_service_account_id(v.name),
                display_name=f"rerank {ctx.settings.stack} workers of {v.name}",
                description=worker_purpose(v.kind),
                project=ctx.project,
                opts=ctx.opts(self),
            )
            for v in ctx.settings.serving.variants
        }
        self.accounts.update({worker_account(v): account for v, account in self.workers.items()})
        self.register_outputs({role: account.email for role, account in self.accounts.items()})

    def __getitem__(self, role: str) -> gcp.serviceaccount.Account:
        return self.accounts[role]
