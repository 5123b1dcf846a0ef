"""One Google service account per component role; the components grant each only what it uses.

Accounts are created here, apart from their grants, because two components need the worker's
identity: serving runs pods as it and cross-cloud lets it assume the AWS role. No account gets a
key: pods use GKE workload identity, Dataflow, the function and Vertex run as the account.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_gcp as gcp

from app.naming import SERVICE_ACCOUNT_ROLES
from infra.common import StackContext

PURPOSES = {
    "ingest": "Dataflow feature ingest: reads feature events, writes Memorystore and BigQuery",
    "pipeline": "Vertex AI training pipeline: reads the offline store, writes models to the pipeline root",
    "trigger": "Training trigger function: submits the pipeline to Vertex AI as the pipeline account",
    "nodes": "GKE worker nodes: logs, metrics and image pulls only",
    "worker": "Re-rank workers (GKE workload identity): pull requests, publish predictions, assume the AWS role",
    "keda": "KEDA operator (GKE workload identity): reads subscription backlog metrics",
    "drift": "Drift check CronJob (GKE workload identity): reads the offline store, publishes retraining triggers",
    "build": "Cloud Build (the stack's images, the trigger function's build): pushes images, writes build logs",
}


@dataclass
class ServiceIdentitiesArgs:
    context: StackContext


class ServiceIdentities(pulumi.ComponentResource):
    accounts: dict[str, gcp.serviceaccount.Account]

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
        self.register_outputs({role: account.email for role, account in self.accounts.items()})

    def __getitem__(self, role: str) -> gcp.serviceaccount.Account:
        return self.accounts[role]
