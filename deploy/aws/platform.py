"""The platform stack: the network, the ECS cluster every service stack runs in, the VPC
endpoints through which the tasks reach AWS, the private DNS namespace in which a task finds
another by name (`namespace_name`), the audit trail (deploy/aws/audit.py), the messaging key
(deploy/aws/messaging.py, `messaging_key`), and the console intake's credential
(deploy/aws/telemetry.py, `intake_token`), here because the console's stack and every service's
stack are given it, and neither kind may depend on the other; and, when the edge has a
certificate, the one web ACL of every public load balancer (deploy/aws/edge.py, `web_acl`)."""

from __future__ import annotations

from aws_cdk import CfnOutput, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_servicediscovery as servicediscovery
from constructs import Construct

from deploy.aws.audit import Audit
from deploy.aws.edge import settings, web_acl
from deploy.aws.messaging import messaging_key, sqs_endpoint_export
from deploy.aws.telemetry import intake_token

_AWS = ec2.InterfaceVpcEndpointAwsService
# What a task in a private subnet calls: its queues, the topic, STS (the relay builds the topic's
# ARN from GetCallerIdentity), its logs, its database secret, its image (ECR's API and registry;
# the layers come from S3, through the gateway endpoint), and X-Ray and CloudWatch metrics, the
# paths of the tracing collector each task will have; until then those two are idle.
INTERFACE_ENDPOINTS: dict[str, ec2.InterfaceVpcEndpointAwsService] = {
    "Sqs": _AWS.SQS, "Sns": _AWS.SNS, "Sts": _AWS.STS, "Logs": _AWS.CLOUDWATCH_LOGS,
    "SecretsManager": _AWS.SECRETS_MANAGER, "EcrApi": _AWS.ECR, "EcrDocker": _AWS.ECR_DOCKER,
    "XRay": _AWS.XRAY, "Monitoring": _AWS.CLOUDWATCH_MONITORING,
}


def namespace_name(env_name: str) -> str:
    """The VPC's private DNS zone (Cloud Map): the console's task registers in it, and the
    services' collectors name the console by it. A plain string derived from the environment, so
    a service stack writes it into its collector's configuration without importing anything from
    this stack."""
    return f"school-{env_name}.internal"


class PlatformStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, *, env_name: str, **kwargs: object
                 ) -> None:
        super().__init__(scope, construct_id, **kwargs)  # type: ignore[arg-type]
        # Two AZs, public subnets for the load balancers, private ones for the tasks and the
        # databases. The tasks reach AWS through the endpoints below; the one NAT gateway is
        # left for traffic that leaves AWS (an SMTP relay or a payment provider outside the VPC).
        self.vpc = ec2.Vpc(self, "Vpc", max_azs=2, nat_gateways=1, subnet_configuration=[
            ec2.SubnetConfiguration(name="public", subnet_type=ec2.SubnetType.PUBLIC),
            ec2.SubnetConfiguration(name="private",
                                    subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS)])
        private = ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS)
        self.endpoints = {
            name: self.vpc.add_interface_endpoint(name, service=service, subnets=private,
                                                  private_dns_enabled=True)
            for name, service in INTERFACE_ENDPOINTS.items()}
        self.vpc.add_gateway_endpoint("S3", service=ec2.GatewayVpcEndpointAwsService.S3,
                                      subnets=[private])
        # The messaging stack's queue policies admit the task roles through this endpoint only.
        CfnOutput(self, "SqsEndpoint", value=self.endpoints["Sqs"].vpc_endpoint_id,
                  export_name=sqs_endpoint_export(env_name))
        self.audit = Audit(self, "Audit", env_name=env_name)
        self.messaging_key = messaging_key(self, env_name)
        # The console's task and the services' collectors read it from their own stacks (CDK
        # exports its ARN); no resource policy names them, so nothing here depends on them.
        self.intake_token = intake_token(self, env_name)
        # Each public load balancer's stack associates it; none without a certificate.
        self.web_acl = web_acl(self, env_name) if settings(self).public else None
        self.cluster = ecs.Cluster(
            self, "Cluster", vpc=self.vpc, cluster_name=f"school-{env_name}",
            container_insights_v2=ecs.ContainerInsights.ENABLED)
        # Resolvable inside this VPC only (Route 53 private hosted zone): what registers here is
        # not reachable by name from outside, whatever its security groups admit.
        self.namespace = servicediscovery.PrivateDnsNamespace(
            self, "Namespace", name=namespace_name(env_name), vpc=self.vpc,
            description=f"school {env_name}: tasks found by name from inside the VPC")
