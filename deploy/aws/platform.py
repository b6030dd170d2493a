"""The platform stack: the network and the ECS cluster every service stack runs in."""

from __future__ import annotations

from aws_cdk import Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from constructs import Construct


class PlatformStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, *, env_name: str, **kwargs: object
                 ) -> None:
        super().__init__(scope, construct_id, **kwargs)  # type: ignore[arg-type]
        # Two AZs, public subnets for the load balancers, private ones (through one NAT gateway,
        # the cheap choice for a reference system) for the tasks and the databases.
        self.vpc = ec2.Vpc(self, "Vpc", max_azs=2, nat_gateways=1, subnet_configuration=[
            ec2.SubnetConfiguration(name="public", subnet_type=ec2.SubnetType.PUBLIC),
            ec2.SubnetConfiguration(name="private",
                                    subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS)])
        self.cluster = ecs.Cluster(
            self, "Cluster", vpc=self.vpc, cluster_name=f"school-{env_name}",
            container_insights_v2=ecs.ContainerInsights.ENABLED)
