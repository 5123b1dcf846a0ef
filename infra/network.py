"""The stack's VPC: one subnet for GKE nodes and Dataflow workers (with the pods' and services'
ranges), private service access for Memorystore, and Cloud NAT so private nodes can pull images."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_gcp as gcp

from infra.common import StackContext

PODS_RANGE = "pods"
SERVICES_RANGE = "services"
DATAFLOW_TAG = "dataflow"


@dataclass
class NetworkArgs:
    context: StackContext


class Network(pulumi.ComponentResource):
    def __init__(self, name: str, args: NetworkArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("rerank:network:Network", name, None, opts)
        ctx, net = args.context, args.context.settings.network
        child = ctx.opts(self)
        self.vpc = gcp.compute.Network(
            f"{name}-vpc", name=ctx.names.network, project=ctx.project, auto_create_subnetworks=False, opts=child
        )
        self.subnet = gcp.compute.Subnetwork(
            f"{name}-nodes",
            name=ctx.names.subnet,
            project=ctx.project,
            region=ctx.region,
            network=self.vpc.id,
            ip_cidr_range=net.subnet_cidr,
            private_ip_google_access=True,
            secondary_ip_ranges=[
                gcp.compute.SubnetworkSecondaryIpRangeArgs(range_name=PODS_RANGE, ip_cidr_range=net.pods_cidr),
                gcp.compute.SubnetworkSecondaryIpRangeArgs(range_name=SERVICES_RANGE, ip_cidr_range=net.services_cidr),
            ],
            opts=child,
        )
        # Memorystore lives in Google's network and is reached by VPC peering (private service access).
        self.private_services_range = gcp.compute.GlobalAddress(
            f"{name}-private-services",
            name=f"{ctx.names.network}-private-services",
            project=ctx.project,
            network=self.vpc.id,
            purpose="VPC_PEERING",
            address_type="INTERNAL",
            prefix_length=20,
            opts=child,
        )
        # Destroy: Service Networking refuses to delete the connection while Memorystore's producer
        # side still holds it, long after the instance is gone (pulumi-gcp#3354). REMOVE_PEERING
        # deletes it when it can and otherwise removes the VPC peering (ABANDON would leave the
        # peering, and with it the VPC and the range, in place). A review stack recreated under the
        # same names updates the connection Service Networking still remembers.
        self.private_services = gcp.servicenetworking.Connection(
            f"{name}-private-services",
            network=self.vpc.id,
            service="servicenetworking.googleapis.com",
            reserved_peering_ranges=[self.private_services_range.name],
            deletion_policy="REMOVE_PEERING",
            update_on_creation_fail=True,
            opts=child,
        )
        router = gcp.compute.Router(
            f"{name}-router",
            name=f"{ctx.names.network}-router",
            project=ctx.project,
            region=ctx.region,
            network=self.vpc.id,
            opts=child,
        )
        gcp.compute.RouterNat(
            f"{name}-nat",
            name=f"{ctx.names.network}-nat",
            project=ctx.project,
            region=ctx.region,
            router=router.name,
            nat_ip_allocate_option="AUTO_ONLY",
            source_subnetwork_ip_ranges_to_nat="ALL_SUBNETWORKS_ALL_IP_RANGES",
            opts=child,
        )
        # Dataflow workers talk to each other on 12345-12346 (shuffle and streaming).
        gcp.compute.Firewall(
            f"{name}-dataflow",
            name=f"{ctx.names.network}-dataflow",
            project=ctx.project,
            network=self.vpc.id,
            direction="INGRESS",
            source_tags=[DATAFLOW_TAG],
            target_tags=[DATAFLOW_TAG],
            allows=[gcp.compute.FirewallAllowArgs(protocol="tcp", ports=["12345-12346"])],
            opts=child,
        )
        self.register_outputs({"network": self.vpc.id, "subnet": self.subnet.id})
