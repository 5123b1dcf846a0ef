"""Serving: the request topic and one filtered, dead-lettered subscription per variant, the
predictions topic landing in BigQuery, and the workers on GKE: a private cluster with workload
identity, a spot (or preemptible) autoscaling pool, one Deployment per variant scaled by KEDA on
its subscription's backlog."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pulumi
import pulumi_gcp as gcp
import pulumi_kubernetes as k8s

from app.contracts import WorkerEnv, k8s_env
from app.featurestore.offline_schema import bigquery_schema_of
from app.serving.sink import SCHEMA as PREDICTION_SCHEMA
from app.settings import MaintenanceConfig, NodePoolConfig, SystemPoolConfig
from infra.common import (
    CONTAINER_SECURITY,
    GCS_FUSE_ANNOTATION,
    ON_SPOT_POOL,
    POD_SECURITY,
    POOL_LABEL,
    PSS_LABELS,
    SCRATCH_MOUNT,
    SCRATCH_VOLUME,
    SPOT_TAINT,
    SYSTEM_POOL,
    StackContext,
    bucket_mount,
    bucket_volume,
    days_ms,
    grant,
    member,
    perma_diffs,
    pod_identity,
    settle,
    spread,
    subscription,
    topic,
    workload_identity,
)
from infra.images import Images
from infra.network import PODS_RANGE, SERVICES_RANGE, Network

# Its Kubernetes support covers the versions every release channel runs (infra/kubernetes_versions.py).
KEDA_CHART_VERSION = "2.21.0"
KEDA_OPERATOR_ACCOUNT = "keda-operator"
# The chart's Deployments by their pods' app label (kedacore/charts keda/templates/*/deployment.yaml).
KEDA_DEPLOYMENTS = {
    "operator": "keda-operator",
    "metricsServer": "keda-operator-metrics-apiserver",
    "webhooks": "keda-admission-webhooks",
}
# The control plane of a private cluster reaches nodes only on 443 and 10250 unless a firewall
# rule says more: KEDA's metrics API server and admission webhooks listen on these.
CONTROL_PLANE_PORTS = {"keda": ("6443", "9443")}
WORKER_NODE_TAG = "workers"
SYSTEM_NODE_TAG = "system"
WORKER_PORT = 8080
# Egress the pods need: DNS, the GKE metadata server (workload identity tokens), Google APIs and
# AWS STS/DynamoDB over HTTPS; Memorystore is added with its range.
METADATA_SERVER = ("169.254.169.254/32", "169.254.169.252/32")
REDIS_PORTS = (6378, 6379)
# The cluster's default pool exists only while `remove_default_node_pool` deletes it, but it is
# created: 1 node per zone of the region, stated here so it takes no SSD quota and runs as the
# stack's nodes account (never the default compute account, which an org policy may disable).
TEMPORARY_POOL = {"machine_type": "e2-small", "disk_type": "pd-standard", "disk_size_gb": 20}
NODE_ROLES = (
    "roles/logging.logWriter",
    "roles/monitoring.metricWriter",
    "roles/monitoring.viewer",
    "roles/stackdriver.resourceMetadata.writer",
)


@dataclass
class ServingArgs:
    context: StackContext
    network: Network
    nodes_account: gcp.serviceaccount.Account
    worker_accounts: dict[str, gcp.serviceaccount.Account]  # by variant
    keda_account: gcp.serviceaccount.Account
    offline_dataset: pulumi.Input[str]
    redis_url: pulumi.Input[str]
    redis_ca: pulumi.Input[str]
    pipeline_bucket: pulumi.Input[str]
    results_role_arn: pulumi.Input[str]
    images: Images


class Serving(pulumi.ComponentResource):
    def __init__(self, name: str, args: ServingArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("rerank:serving:Serving", name, None, opts)
        ctx, n, s = args.context, args.context.names, args.context.settings

        # Messaging: requests (ids only) in, one subscription per variant, predictions out to BigQuery.
        self.predictions_table = gcp.bigquery.Table(
            f"{name}-predictions",
            project=ctx.project,
            dataset_id=args.offline_dataset,
            table_id=n.predictions_table,
            description="Every variant's scores per request (a Pub/Sub BigQuery subscription writes it)",
            schema=json.dumps(bigquery_schema_of(PREDICTION_SCHEMA)),
            time_partitioning=gcp.bigquery.TableTimePartitioningArgs(
                type="DAY", field="requested_at", expiration_ms=days_ms(s.serving.predictions_partition_expiration_days)
            ),
            clusterings=["variant"],
            deletion_protection=s.protected,
            labels=ctx.labels,
            opts=ctx.protect(self),
        )
        names = (n.requests_topic, n.requests_dead_letter_topic, n.predictions_topic, n.predictions_dead_letter_topic)
        topics = {t: topic(ctx, ctx.topic_spec(t), self) for t in names}
        table_ref = pulumi.Output.concat(
            ctx.project, ".", self.predictions_table.dataset_id, ".", self.predictions_table.table_id
        )
        writer = grant(
            ctx,
            gcp.bigquery.IamMember,
            f"{name}-predictions-writer",
            self,
            ctx.pubsub_agent,
            "roles/bigquery.dataEditor",
            project=ctx.project,
            dataset_id=self.predictions_table.dataset_id,
            table_id=self.predictions_table.table_id,
        )
        self.subscriptions = {
            spec.name: subscription(ctx, spec, topics, self, bigquery_table=table_ref, depends_on=[writer])
            if spec.name == n.predictions_subscription
            else subscription(ctx, spec, topics, self)
            for t in names
            for spec in ctx.subscriptions_of(t)
        }
        self.requests_topic = topics[n.requests_topic]
        self.predictions_topic = topics[n.predictions_topic]

        self._grant_workers(name, ctx, args, topics)
        self.cluster, self.provider = self._cluster(name, ctx, args)
        self._workloads(name, ctx, args, self.provider)
        self.register_outputs({"requests_topic": self.requests_topic.id, "cluster": self.cluster.name})

    def _grant_workers(
        self, name: str, ctx: StackContext, args: ServingArgs, topics: dict[str, gcp.pubsub.Topic]
    ) -> None:
        n, p = ctx.names, ctx.project
        # Each variant's account pulls its own subscription only; all publish predictions and
        # poison, and read the deployment record and model files the pipeline registers.
        for v in ctx.settings.serving.variants:
            who = member(args.worker_accounts[v.name])
            sub = self.subscriptions[n.variant_subscription(v.name)].name
            grant(
                ctx,
                gcp.pubsub.SubscriptionIAMMember,
                f"{name}-worker-{v.name}-pull",
                self,
                who,
                "roles/pubsub.subscriber",
                project=p,
                subscription=sub,
            )
            for t, why in ((n.predictions_topic, "predictions"), (n.requests_dead_letter_topic, "poison")):
                grant(
                    ctx,
                    gcp.pubsub.TopicIAMMember,
                    f"{name}-worker-{v.name}-{why}",
                    self,
                    who,
                    "roles/pubsub.publisher",
                    project=p,
                    topic=topics[t].name,
                )
            grant(
                ctx,
                gcp.storage.BucketIAMMember,
                f"{name}-worker-{v.name}-models",
                self,
                who,
                "roles/storage.objectViewer",
                bucket=args.pipeline_bucket,
            )
        nodes = member(args.nodes_account)
        self.node_grants = [
            grant(ctx, gcp.projects.IAMMember, f"{name}-nodes-{role.split('.')[-1]}", self, nodes, role, project=p)
            for role in NODE_ROLES
        ]
        # The kubelet pulls pod images with the node account.
        self.node_grants.append(args.images.pull(f"{name}-nodes-pull", self, nodes))
        # KEDA reads subscription backlog from Cloud Monitoring (no narrower grant exists).
        grant(
            ctx,
            gcp.projects.IAMMember,
            f"{name}-keda-metrics",
            self,
            member(args.keda_account),
            "roles/monitoring.viewer",
            project=p,
        )

    def _cluster(self, name: str, ctx: StackContext, args: ServingArgs) -> tuple[gcp.container.Cluster, k8s.Provider]:
        s, n, net = ctx.settings, ctx.names, ctx.settings.network
        cluster = gcp.container.Cluster(
            f"{name}-cluster",
            name=n.cluster,
            project=ctx.project,
            location=ctx.region,
            network=args.network.vpc.id,
            subnetwork=args.network.subnet.id,
            # The default pool is replaced by the managed spot pool below.
            remove_default_node_pool=True,
            initial_node_count=1,
            node_config=gcp.container.ClusterNodeConfigArgs(
                **TEMPORARY_POOL,
                service_account=args.nodes_account.email,
                oauth_scopes=["https://www.googleapis.com/auth/cloud-platform"],
                workload_metadata_config=gcp.container.ClusterNodeConfigWorkloadMetadataConfigArgs(mode="GKE_METADATA"),
                shielded_instance_config=gcp.container.ClusterNodeConfigShieldedInstanceConfigArgs(
                    enable_secure_boot=True
                ),
            ),
            release_channel=gcp.container.ClusterReleaseChannelArgs(channel=s.release_channel),
            maintenance_policy=gke_maintenance_policy(s.maintenance),
            workload_identity_config=gcp.container.ClusterWorkloadIdentityConfigArgs(
                workload_pool=f"{ctx.project}.svc.id.goog"
            ),
            private_cluster_config=gcp.container.ClusterPrivateClusterConfigArgs(
                enable_private_nodes=True, enable_private_endpoint=False, master_ipv4_cidr_block=net.master_cidr
            ),
            # The IP endpoint admits only the listed networks; deployers (CI included) reach the
            # control plane through its DNS endpoint, which checks their Google identity instead.
            master_authorized_networks_config=gcp.container.ClusterMasterAuthorizedNetworksConfigArgs(
                cidr_blocks=[
                    gcp.container.ClusterMasterAuthorizedNetworksConfigCidrBlockArgs(cidr_block=c, display_name=c)
                    for c in net.master_authorized_networks
                ]
            ),
            control_plane_endpoints_config=gcp.container.ClusterControlPlaneEndpointsConfigArgs(
                dns_endpoint_config=gcp.container.ClusterControlPlaneEndpointsConfigDnsEndpointConfigArgs(
                    allow_external_traffic=True
                )
            ),
            ip_allocation_policy=gcp.container.ClusterIpAllocationPolicyArgs(
                cluster_secondary_range_name=PODS_RANGE, services_secondary_range_name=SERVICES_RANGE
            ),
            enable_shielded_nodes=True,
            # Dataplane V2 enforces the namespace's NetworkPolicies.
            datapath_provider="ADVANCED_DATAPATH",
            # Workers read the model registry from the pipeline bucket through Cloud Storage FUSE.
            addons_config=gcp.container.ClusterAddonsConfigArgs(
                gcs_fuse_csi_driver_config=gcp.container.ClusterAddonsConfigGcsFuseCsiDriverConfigArgs(enabled=True)
            ),
            deletion_protection=s.protected,
            resource_labels=ctx.labels,
            opts=pulumi.ResourceOptions.merge(
                ctx.protect(self, depends_on=[settle(f"{name}-nodes-settled", self.node_grants, ctx.opts(self))]),
                pulumi.ResourceOptions(ignore_changes=perma_diffs("gcp:container/cluster:Cluster")),
            ),
        )
        pool = s.serving.node_pool
        self.node_pool = gcp.container.NodePool(
            f"{name}-workers",
            name=n.worker_pool,
            project=ctx.project,
            location=ctx.region,
            cluster=cluster.name,
            autoscaling=gcp.container.NodePoolAutoscalingArgs(
                total_min_node_count=pool.min_nodes, total_max_node_count=pool.max_nodes, location_policy="ANY"
            ),
            management=gcp.container.NodePoolManagementArgs(auto_repair=True, auto_upgrade=True),
            node_config=_node_config(
                ctx,
                args,
                pool,
                WORKER_NODE_TAG,
                {POOL_LABEL: "workers"},
                spot=pool.provisioning == "spot",
                preemptible=pool.provisioning == "preemptible",
                # Beside a system pool, only what tolerates Spot lands here (infra/common.py ON_SPOT_POOL).
                taints=[gcp.container.NodePoolNodeConfigTaintArgs(**SPOT_TAINT, effect="NO_SCHEDULE")]
                if s.serving.system_pool.enabled
                else None,
            ),
            opts=ctx.opts(self),
        )
        self.system_pool = self._system_pool(name, ctx, args, cluster) if s.serving.system_pool.enabled else None
        # KEDA runs on the system pool where there is one, so the control plane reaches both.
        tags = [n.node_tag(WORKER_NODE_TAG)] + ([n.node_tag(SYSTEM_NODE_TAG)] if self.system_pool else [])
        for chart, ports in CONTROL_PLANE_PORTS.items():
            gcp.compute.Firewall(
                f"{name}-control-plane-{chart}",
                name=f"{n.network}-control-plane-{chart}",
                project=ctx.project,
                network=args.network.vpc.id,
                direction="INGRESS",
                description=f"The control plane reaches {chart} on the worker nodes",
                source_ranges=[net.master_cidr],
                target_tags=tags,
                allows=[gcp.compute.FirewallAllowArgs(protocol="tcp", ports=list(ports))],
                opts=ctx.opts(self),
            )
        dns_endpoint = cluster.control_plane_endpoints_config.apply(
            lambda c: c.dns_endpoint_config.endpoint if c and c.dns_endpoint_config else None
        )
        kubeconfig = pulumi.Output.all(cluster.name, dns_endpoint).apply(lambda a: _kubeconfig(a[0], a[1]))
        provider = k8s.Provider(
            f"{name}-k8s",
            kubeconfig=kubeconfig,
            enable_server_side_apply=True,
            opts=pulumi.ResourceOptions(
                parent=self, depends_on=[self.node_pool, *([self.system_pool] if self.system_pool else [])]
            ),
        )
        return cluster, provider

    def _system_pool(
        self, name: str, ctx: StackContext, args: ServingArgs, cluster: gcp.container.Cluster
    ) -> gcp.container.NodePool:
        """On-demand nodes for kube-dns, metrics and KEDA: they do not tolerate the Spot pool's taint."""
        sp = ctx.settings.serving.system_pool
        return gcp.container.NodePool(
            f"{name}-system",
            name=ctx.names.system_pool,
            project=ctx.project,
            location=ctx.region,
            cluster=cluster.name,
            autoscaling=gcp.container.NodePoolAutoscalingArgs(
                total_min_node_count=sp.min_nodes, total_max_node_count=sp.max_nodes, location_policy="BALANCED"
            ),
            management=gcp.container.NodePoolManagementArgs(auto_repair=True, auto_upgrade=True),
            node_config=_node_config(ctx, args, sp, SYSTEM_NODE_TAG, {POOL_LABEL: SYSTEM_POOL}),
            opts=ctx.opts(self),
        )

    def _network_policies(self, name: str, ctx: StackContext, args: ServingArgs, in_ns: pulumi.ResourceOptions) -> None:
        """Deny everything in the stack's namespace, then allow what its pods use: DNS, the metadata
        server, Memorystore, HTTPS out (Google APIs, AWS), and metrics scrapes of the workers."""
        ns = ctx.names.k8s_namespace
        k8s.networking.v1.NetworkPolicy(
            f"{name}-default-deny",
            metadata={"name": "default-deny", "namespace": ns},
            spec={"podSelector": {}, "policyTypes": ["Ingress", "Egress"]},
            opts=in_ns,
        )
        redis_range = pulumi.Output.concat(
            args.network.private_services_range.address,
            "/",
            args.network.private_services_range.prefix_length.apply(str),
        )
        k8s.networking.v1.NetworkPolicy(
            f"{name}-egress",
            metadata={"name": "allow-egress", "namespace": ns},
            spec={
                "podSelector": {},
                "policyTypes": ["Egress"],
                "egress": [
                    {"ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]},
                    {
                        "to": [{"ipBlock": {"cidr": c}} for c in METADATA_SERVER],
                        "ports": [{"protocol": "TCP", "port": 80}, {"protocol": "TCP", "port": 988}],
                    },
                    {
                        "to": [{"ipBlock": {"cidr": redis_range}}],
                        "ports": [{"protocol": "TCP", "port": p} for p in REDIS_PORTS],
                    },
                    {"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}], "ports": [{"protocol": "TCP", "port": 443}]},
                ],
            },
            opts=in_ns,
        )
        k8s.networking.v1.NetworkPolicy(
            f"{name}-metrics",
            metadata={"name": "allow-worker-metrics", "namespace": ns},
            spec={
                "podSelector": {"matchLabels": {"rerank.dev/role": "worker"}},
                "policyTypes": ["Ingress"],
                "ingress": [{"from": [{"namespaceSelector": {}}], "ports": [{"protocol": "TCP", "port": WORKER_PORT}]}],
            },
            opts=in_ns,
        )

    def _workloads(self, name: str, ctx: StackContext, args: ServingArgs, provider: k8s.Provider) -> None:
        s, n = ctx.settings, ctx.names
        on_k8s = pulumi.ResourceOptions(parent=self, provider=provider)
        ns = self.namespace = k8s.core.v1.Namespace(
            f"{name}-namespace", metadata={"name": n.k8s_namespace, "labels": {**ctx.labels, **PSS_LABELS}}, opts=on_k8s
        )
        in_ns = pulumi.ResourceOptions(parent=self, provider=provider, depends_on=[ns])
        self._network_policies(name, ctx, args, in_ns)
        # KEDA's own namespace: "baseline" enforced (its chart's defaults are not audited here
        # against "restricted"), "restricted" warned and audited.
        keda_ns = k8s.core.v1.Namespace(
            f"{name}-keda-namespace",
            metadata={
                "name": n.keda_namespace,
                "labels": {
                    **ctx.labels,
                    "pod-security.kubernetes.io/enforce": "baseline",
                    "pod-security.kubernetes.io/warn": "restricted",
                    "pod-security.kubernetes.io/audit": "restricted",
                },
            },
            opts=on_k8s,
        )
        keda = k8s.helm.v3.Release(
            f"{name}-keda",
            name="keda",
            chart="keda",
            version=KEDA_CHART_VERSION,
            namespace=keda_ns.metadata.name,
            repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo="https://kedacore.github.io/charts"),
            values=keda_values(ctx, args.keda_account.email),
            opts=on_k8s,
        )
        workload_identity(
            ctx,
            f"{name}-keda-identity",
            args.keda_account,
            n.keda_namespace,
            KEDA_OPERATOR_ACCOUNT,
            self,
            self.cluster,
        )
        auth = k8s.apiextensions.CustomResource(
            f"{name}-keda-auth",
            api_version="keda.sh/v1alpha1",
            kind="TriggerAuthentication",
            metadata={"name": "gcp-workload-identity", "namespace": n.k8s_namespace},
            spec={"podIdentity": {"provider": "gcp"}},
            opts=pulumi.ResourceOptions(parent=self, provider=provider, depends_on=[ns, keda]),
        )
        secret = k8s.core.v1.Secret(
            f"{name}-online-store",
            metadata={"name": "online-store", "namespace": n.k8s_namespace},
            string_data={"url": args.redis_url, "ca.pem": args.redis_ca},
            opts=in_ns,
        )
        w = s.serving.worker
        for v in s.serving.variants:
            ksa = n.worker_k8s_account(v.name)
            account = pod_identity(ctx, f"{name}-{ksa}", args.worker_accounts[v.name], ksa, self, in_ns, self.cluster)
            deployment = k8s.apps.v1.Deployment(
                f"{name}-worker-{v.name}",
                metadata={"name": n.worker_deployment(v.name), "namespace": n.k8s_namespace, "labels": ctx.labels},
                spec=worker_spec(ctx, args, v.name, v.kind, ksa),
                opts=pulumi.ResourceOptions(parent=self, provider=provider, depends_on=[ns, account, secret]),
            )
            k8s.apiextensions.CustomResource(
                f"{name}-worker-{v.name}-scaler",
                api_version="keda.sh/v1alpha1",
                kind="ScaledObject",
                metadata={"name": n.worker_deployment(v.name), "namespace": n.k8s_namespace},
                spec={
                    "scaleTargetRef": {"name": n.worker_deployment(v.name)},
                    "minReplicaCount": w.min_replicas,
                    "maxReplicaCount": w.max_replicas,
                    "triggers": [
                        {
                            "type": "gcp-pubsub",
                            "authenticationRef": {"name": "gcp-workload-identity"},
                            "metadata": {
                                "subscriptionName": self.subscriptions[n.variant_subscription(v.name)].id,
                                "mode": "SubscriptionSize",
                                "value": str(w.backlog_per_replica),
                                "activationValue": "0",
                            },
                        }
                    ],
                },
                opts=pulumi.ResourceOptions(parent=self, provider=provider, depends_on=[deployment, auth, keda]),
            )
            k8s.policy.v1.PodDisruptionBudget(
                f"{name}-worker-{v.name}-pdb",
                metadata={"name": n.worker_deployment(v.name), "namespace": n.k8s_namespace},
                spec={"maxUnavailable": 1, "selector": {"matchLabels": {"app": n.worker_deployment(v.name)}}},
                opts=in_ns,
            )


def worker_spec(ctx: StackContext, args: ServingArgs, variant: str, kind: str, ksa: str) -> dict[str, Any]:
    """A variant's worker pods: ``rerank serve`` with the stack's names in its environment, on the
    spot pool, drained within the grace period on preemption (workers exit in ~3 s on SIGTERM).
    No ``replicas``: KEDA's ScaledObject owns the count, and a declared one would fight it."""
    s, n = ctx.settings, ctx.names
    app = n.worker_deployment(variant)
    env = WorkerEnv(
        # The URL holds the AUTH string: a file from the secret, never an environment variable.
        redis_url_file="/etc/online-store/url",
        redis_ca_file="/etc/online-store/ca.pem",
        # The registry is plain files: the pipeline bucket through Cloud Storage FUSE, at the same
        # /gcs/<bucket> path Vertex AI gives the pipeline that writes it.
        model_registry=pulumi.Output.concat("/gcs/", args.pipeline_bucket, "/registry"),
        # Shadows never write served results, so they get no way to.
        aws_role_arn=None if kind == "shadow" else args.results_role_arn,
    )
    return {
        "selector": {"matchLabels": {"app": app}},
        "template": {
            "metadata": {
                "labels": {"app": app, "rerank.dev/variant": variant, "rerank.dev/role": "worker"},
                "annotations": {
                    "prometheus.io/scrape": "true",
                    "prometheus.io/port": str(WORKER_PORT),
                    **GCS_FUSE_ANNOTATION,
                },
            },
            "spec": {
                "serviceAccountName": ksa,
                "automountServiceAccountToken": False,
                **ON_SPOT_POOL,
                "topologySpreadConstraints": spread({"app": app}),
                "terminationGracePeriodSeconds": 25,
                "securityContext": POD_SECURITY,
                "containers": [
                    {
                        "name": "worker",
                        "image": args.images.ref("app"),
                        "args": [
                            "serve",
                            "--stack",
                            s.stack,
                            "--variant",
                            variant,
                            "--endpoints",
                            "env",
                            "--http-host",
                            "0.0.0.0",
                            "--http-port",
                            str(WORKER_PORT),
                        ],
                        "env": k8s_env(env.to_env()),
                        "ports": [{"name": "http", "containerPort": WORKER_PORT}],
                        "readinessProbe": {"httpGet": {"path": "/healthz", "port": WORKER_PORT}, "periodSeconds": 5},
                        "livenessProbe": {
                            "httpGet": {"path": "/healthz", "port": WORKER_PORT},
                            "periodSeconds": 10,
                            "failureThreshold": 6,
                        },
                        "resources": {
                            "requests": {"cpu": s.serving.worker.cpu, "memory": s.serving.worker.memory},
                            "limits": {"memory": s.serving.worker.memory},
                        },
                        "securityContext": CONTAINER_SECURITY,
                        "volumeMounts": [
                            {"name": "online-store", "mountPath": "/etc/online-store", "readOnly": True},
                            bucket_mount("models", args.pipeline_bucket),
                            SCRATCH_MOUNT,
                        ],
                    }
                ],
                "volumes": [
                    {
                        "name": "online-store",
                        "secret": {
                            "secretName": "online-store",
                            "defaultMode": 0o440,
                            "items": [{"key": "url", "path": "url"}, {"key": "ca.pem", "path": "ca.pem"}],
                        },
                    },
                    bucket_volume("models", args.pipeline_bucket),
                    SCRATCH_VOLUME,
                ],
            },
        },
    }


def keda_values(ctx: StackContext, keda_account: pulumi.Input[str]) -> dict[str, Any]:
    """The KEDA chart's values: GCP workload identity for the operator (its Kubernetes account is
    the chart's default, keda-operator); two replicas of each part, spread over zones and nodes, at
    most one disrupted at a time, so scaling goes on through a node's loss or upgrade; on the
    system pool where the stack has one (keys as in kedacore/charts keda/values.yaml)."""
    values: dict[str, Any] = {
        "podIdentity": {"gcp": {"enabled": True, "gcpIAMServiceAccount": keda_account}},
        **{part: {"replicaCount": 2} for part in KEDA_DEPLOYMENTS},
        "podDisruptionBudget": {"maxUnavailable": 1},
        "topologySpreadConstraints": {part: spread({"app": app}) for part, app in KEDA_DEPLOYMENTS.items()},
    }
    if ctx.settings.serving.system_pool.enabled:
        values["nodeSelector"] = {POOL_LABEL: SYSTEM_POOL}
    return values


def gke_maintenance_policy(m: MaintenanceConfig) -> gcp.container.ClusterMaintenancePolicyArgs:
    """A weekly recurring window in UTC ("Z" times: GKE returns UTC, so other forms diff forever)."""
    start = datetime(2025, 1, 1, m.start_hour, tzinfo=UTC)
    end = start + timedelta(hours=m.hours)
    return gcp.container.ClusterMaintenancePolicyArgs(
        recurring_window=gcp.container.ClusterMaintenancePolicyRecurringWindowArgs(
            start_time=start.strftime("%Y-%m-%dT%H:%M:%SZ"),
            end_time=end.strftime("%Y-%m-%dT%H:%M:%SZ"),
            # RFC 5545 day codes are the days' first two letters (MO ... SU).
            recurrence="FREQ=WEEKLY;BYDAY=" + ",".join(d[:2] for d in m.days),
        )
    )


def _kubeconfig(cluster: str, endpoint: str) -> str:
    """A kubeconfig for the DNS endpoint (a Google-issued certificate, so no CA data), authenticated
    by gke-gcloud-auth-plugin with the deployer's own Google identity."""
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": cluster, "cluster": {"server": f"https://{endpoint}"}}],
            "contexts": [{"name": cluster, "context": {"cluster": cluster, "user": cluster}}],
            "current-context": cluster,
            "users": [
                {
                    "name": cluster,
                    "user": {
                        "exec": {
                            "apiVersion": "client.authentication.k8s.io/v1beta1",
                            "command": "gke-gcloud-auth-plugin",
                            "provideClusterInfo": True,
                            "installHint": "gcloud components install gke-gcloud-auth-plugin",
                        }
                    },
                }
            ],
        }
    )


def _node_config(
    ctx: StackContext,
    args: ServingArgs,
    pool: NodePoolConfig | SystemPoolConfig,
    tag: str,
    labels: dict[str, str],
    **extra: Any,
) -> gcp.container.NodePoolNodeConfigArgs:
    """What every node pool of the stack states (machine, disk, its own account, workload identity
    metadata, secure boot, tag, labels), plus a pool's own settings (``extra``: spot, taints)."""
    return gcp.container.NodePoolNodeConfigArgs(
        machine_type=pool.machine_type,
        disk_type=pool.disk_type,
        disk_size_gb=pool.disk_size_gb,
        service_account=args.nodes_account.email,
        oauth_scopes=["https://www.googleapis.com/auth/cloud-platform"],
        workload_metadata_config=gcp.container.NodePoolNodeConfigWorkloadMetadataConfigArgs(mode="GKE_METADATA"),
        shielded_instance_config=gcp.container.NodePoolNodeConfigShieldedInstanceConfigArgs(enable_secure_boot=True),
        labels=labels,
        tags=[ctx.names.node_tag(tag)],
        resource_labels=ctx.labels,
        **extra,
    )
