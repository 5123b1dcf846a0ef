"""Alerts: a request or event waiting too long, a growing backlog, anything in a dead-letter
queue, and the ingest job falling behind. Each alert names the subscription or job in its
condition and says what to look at first."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_gcp as gcp

from infra.common import StackContext

ALIGN = "60s"
# Cloud Monitoring takes at most 6 conditions per alert policy; more variants mean more policies.
MAX_CONDITIONS = 6


@dataclass
class MonitoringArgs:
    context: StackContext
    work_subscriptions: list[str]  # the subscriptions someone consumes (ingest and every variant)
    dead_letter_subscriptions: list[str]
    ingest_job: str | None  # None when the stack runs no streaming ingest job
    namespace: str


def _condition(
    title: str, metric: str, resource: str, label: str, value: str, threshold: float, duration: str
) -> gcp.monitoring.AlertPolicyConditionArgs:
    return gcp.monitoring.AlertPolicyConditionArgs(
        display_name=title,
        condition_threshold=gcp.monitoring.AlertPolicyConditionConditionThresholdArgs(
            filter=f'metric.type = "{metric}" AND resource.type = "{resource}" AND resource.labels.{label} = "{value}"',
            comparison="COMPARISON_GT",
            threshold_value=threshold,
            duration=duration,
            aggregations=[
                gcp.monitoring.AlertPolicyConditionConditionThresholdAggregationArgs(
                    alignment_period=ALIGN, per_series_aligner="ALIGN_MAX"
                )
            ],
        ),
    )


class Monitoring(pulumi.ComponentResource):
    def __init__(self, name: str, args: MonitoringArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("rerank:monitoring:Monitoring", name, None, opts)
        ctx, m = args.context, args.context.settings.monitoring
        child = ctx.opts(self)
        channels = [
            gcp.monitoring.NotificationChannel(
                f"{name}-email-{i}",
                project=ctx.project,
                display_name=f"rerank {ctx.settings.stack} on-call ({address})",
                type="email",
                labels={"email_address": address},
                user_labels=ctx.labels,
                opts=child,
            ).id
            for i, address in enumerate(m.notification_emails)
        ]
        sub_metric = "pubsub.googleapis.com/subscription/"
        alerts = {
            "oldest-unacked": (
                "A message has waited too long (a worker or the ingest job is stuck or gone)",
                [
                    _condition(
                        f"oldest unacked age: {s}",
                        sub_metric + "oldest_unacked_message_age",
                        "pubsub_subscription",
                        "subscription_id",
                        s,
                        m.oldest_unacked_age_seconds,
                        "120s",
                    )
                    for s in args.work_subscriptions
                ],
                "Check the consumer of the subscription named in the incident: worker pods "
                "(kubectl -n {namespace} get pods) or the ingest job (Dataflow console). Requests older than the "
                "core service's patience are served in its default order.",
            ),
            "backlog": (
                "The backlog keeps growing (consumers cannot keep up)",
                [
                    _condition(
                        f"undelivered messages: {s}",
                        sub_metric + "num_undelivered_messages",
                        "pubsub_subscription",
                        "subscription_id",
                        s,
                        m.backlog_messages,
                        "300s",
                    )
                    for s in args.work_subscriptions
                ],
                "Check that KEDA is scaling the variant's Deployment and that the node pool is not at "
                "its maximum (spot capacity can run out).",
            ),
            "dead-letters": (
                "Messages reached a dead-letter queue",
                [
                    _condition(
                        f"dead letters: {s}",
                        sub_metric + "num_undelivered_messages",
                        "pubsub_subscription",
                        "subscription_id",
                        s,
                        0,
                        "60s",
                    )
                    for s in args.dead_letter_subscriptions
                ],
                "Pull a few messages from the named subscription: each carries a 'reason' attribute. "
                "Fix the producer or the schema, then replay them to the source topic.",
            ),
        }
        if args.ingest_job:
            alerts["ingest-lag"] = (
                "The feature ingest job is falling behind",
                [
                    _condition(
                        f"system lag: {args.ingest_job}",
                        "dataflow.googleapis.com/job/system_lag",
                        "dataflow_job",
                        "job_name",
                        args.ingest_job,
                        m.dataflow_lag_seconds,
                        "300s",
                    )
                ],
                "Online features are getting stale. Check the job's workers (max_workers) and the "
                "Memorystore instance's CPU.",
            )
        self.policies = {}
        for key, (title, conditions, runbook) in alerts.items():
            chunks = [conditions[i : i + MAX_CONDITIONS] for i in range(0, len(conditions), MAX_CONDITIONS)]
            for i, chunk in enumerate(chunks):
                part = key if len(chunks) == 1 else f"{key}-{i + 1}"
                self.policies[part] = gcp.monitoring.AlertPolicy(
                    f"{name}-{part}",
                    project=ctx.project,
                    display_name=f"rerank {ctx.settings.stack}: {title}"
                    + ("" if len(chunks) == 1 else f" ({i + 1}/{len(chunks)})"),
                    combiner="OR",
                    conditions=chunk,
                    notification_channels=channels,
                    documentation=gcp.monitoring.AlertPolicyDocumentationArgs(
                        content=runbook.format(namespace=args.namespace), mime_type="text/markdown"
                    ),
                    severity="ERROR" if ctx.settings.protected else "WARNING",
                    user_labels=ctx.labels,
                    opts=child,
                )
        self.register_outputs({key: p.name for key, p in self.policies.items()})
