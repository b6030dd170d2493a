"""The operations console's stack, deployed alone like a service's
(`School-<env>-console`).

It holds one Fargate task of the console's API behind an internal load balancer, health-checked
on /healthz, a task role that may read every queue and DLQ and receive from and redrive the DLQs
and nothing else (deploy/aws/access.py, `console_access`), and its logs. It has no worker, no
database server and no tracing collector: the console consumes no queue, publishes nothing,
traces nothing of its own, and keeps its store (the spans exported to it) in SQLite on the task's
own storage, which a new task starts empty. Its one secret is the platform's intake credential
(deploy/aws/telemetry.py, `intake_token`), as SCHOOL_OTLP_TOKEN: its task's execution role may
read it, its task role may not.

The spans come from the services' collectors (deploy/aws/telemetry.py), which export every trace
to X-Ray and to the console's `/v1/traces`, with that credential in the x-school-otlp-token
header (without it the console refuses them). They reach the task itself, not the load balancer:
the task registers in the platform's private DNS namespace as `console` (Cloud Map, an A record
of the task's own address), and its security group admits the console's port from the VPC.

Why internal, with or without a certificate: the console shows the DLQs' message bodies
(student and payment data) and its buttons move messages. It asks for an operator's sign-in
(with TOTP, deploy/aws/identity.py), and is reachable from inside the VPC only all the same.
With CERTIFICATE_ARN and DOMAIN_NAME its load balancer serves HTTPS on 443 (port 80 redirects)
as `console.<DOMAIN_NAME>`, so its session cookie is Secure; without them it serves HTTP on
port 80, reached through a port forward on the operator's `localhost:8000`. Either way its app
client's callback is that address's `/auth/callback`, and gunicorn takes the scheme from the
load balancer's X-Forwarded-Proto (FORWARDED_ALLOW_IPS: the VPC's range).
"""

from __future__ import annotations

import shlex

from aws_cdk import Duration, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_iam as iam
from aws_cdk import aws_servicediscovery as servicediscovery
from constructs import Construct

from deploy.aws import fargate
from deploy.aws.access import (
    DLQ_REDRIVE,
    INSPECT,
    READ_METRICS,
    REDRIVE_TO,
    ConsoleAccess,
    console_access,
)
from deploy.aws.identity import IdentityStack
from deploy.aws.messaging import MessagingStack
from deploy.aws.platform import PlatformStack, namespace_name
from deploy.aws.telemetry import INTAKE_TOKEN
from shared.settings import CONSOLE, PORTS

# On the task's own storage (SCHOOL_VAR_DIR of the image): no volume, so no other container and
# no other task shares it.
DATABASE_URL = "sqlite:////tmp/school/console.sqlite"
# The console's name in the platform's namespace (Cloud Map service).
DISCOVERY_NAME = CONSOLE


def traces_endpoint(env_name: str) -> str:
    """Where a service's collector sends the console its spans (the exporter appends
    /v1/traces): the task's own port, by its name in the namespace, derived from the
    environment like the namespace itself, so a service stack needs nothing of this one."""
    return f"http://{DISCOVERY_NAME}.{namespace_name(env_name)}:{PORTS[CONSOLE]}"


class ConsoleStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, *, env_name: str,
                 platform: PlatformStack, messaging: MessagingStack, identity: IdentityStack,
                 **kwargs: object) -> None:
        super().__init__(scope, construct_id, **kwargs)  # type: ignore[arg-type]
        self.env_name = env_name
        self.add_stack_dependency(messaging)  # the queues it shows must exist before it starts
        self.access = console_access()
        self.key_arn = platform.messaging_key.key_arn
        self.role = fargate.task_role(self, env_name, CONSOLE,
                                      "console: read the queues, receive from and redrive the "
                                      "DLQs")
        for statement in self.statements(self.access):
            self.role.add_to_policy(statement)
        self.logs = fargate.log_group(self, env_name, CONSOLE)

        task = fargate.task_definition(self, "ApiTask", self.role)
        environment = fargate.environment(self, env_name, CONSOLE, db="sqlite",
                                          oidc=identity.oidc)
        environment |= {"CONSOLE_DATABASE_URL": DATABASE_URL,
                        "CONSOLE_CLIENT_ID": identity.console_client_id,
                        # gunicorn believes X-Forwarded-Proto from these addresses only: the
                        # load balancer's (and anything else in the VPC, which could reach the
                        # task itself anyway).
                        "FORWARDED_ALLOW_IPS": platform.vpc.vpc_cidr_block}
        # The migration runs in the API's own container, not in a container of its own as in
        # the service stacks: containers of a task do not share their file systems, and a task
        # volume would be owned by root on Fargate, where the image's user could not write.
        command = (f"{shlex.join(fargate.serve('migrate', CONSOLE))} && "
                   f"exec {shlex.join(fargate.serve('api', CONSOLE))}")
        # The intake's credential, in the task definition's Secrets: ECS fetches it with the
        # execution role when the task starts, so it is in no template and no Environment.
        intake = {INTAKE_TOKEN: ecs.Secret.from_secrets_manager(platform.intake_token)}
        api = fargate.add_container(task, "api", image=fargate.image(CONSOLE),
                                    command=["sh", "-c", command], environment=environment,
                                    logs=self.logs, secrets=intake)
        api.add_port_mappings(ecs.PortMapping(container_port=PORTS[CONSOLE]))
        # One task, never two at once, even during a deployment (the old one stops before the
        # new one starts): two consoles would split the spans between two stores behind one
        # load balancer, and each one's lock serialises only its own DLQ listings and redrives.
        self.api = fargate.load_balanced_api(self, "Api", cluster=platform.cluster, task=task,
                                             desired_count=1, name=CONSOLE, internet=False,
                                             web_acl=None, min_healthy_percent=0,
                                             max_healthy_percent=100)
        # The collectors send to the task directly: the load balancer is for people,
        # and the address has to be one name that outlives the task. A short TTL, because every
        # deployment replaces the one task and its address with it; meanwhile the collectors
        # queue and retry what they could not send, for a few minutes (deploy/aws/telemetry.py).
        self.api.service.enable_cloud_map(
            cloud_map_namespace=platform.namespace, name=DISCOVERY_NAME,
            dns_record_type=servicediscovery.DnsRecordType.A, dns_ttl=Duration.seconds(10))
        # From the VPC's range, like the internal load balancer's ports: nothing that could
        # not already reach the console through its load balancer reaches the task itself.
        self.api.service.connections.allow_from(
            ec2.Peer.ipv4(platform.vpc.vpc_cidr_block), ec2.Port.tcp(PORTS[CONSOLE]),
            "OTLP/HTTP spans from the services' collectors, inside the VPC only")

    def statements(self, needs: ConsoleAccess) -> list[iam.PolicyStatement]:
        """Named SQS actions on named queues; the one `Resource: *` is CloudWatch's read of
        metrics, which IAM cannot narrow."""
        def queues(names: tuple[str, ...]) -> list[str]:
            return fargate.arns(self, self.env_name, "sqs", names)

        return [
            iam.PolicyStatement(sid="InspectEveryQueue", actions=list(INSPECT),
                                resources=queues(needs.inspects)),
            iam.PolicyStatement(sid="ListAndRedriveTheDlqs", actions=list(DLQ_REDRIVE),
                                resources=queues(needs.dead_letters)),
            iam.PolicyStatement(sid="RedriveIntoTheSourceQueues", actions=list(REDRIVE_TO),
                                resources=queues(needs.redrives_to)),
            iam.PolicyStatement(sid="UseTheMessagingKey", actions=list(needs.kms),
                                resources=[self.key_arn]),
            # GetMetricStatistics has no resource type in IAM (and CloudWatch's namespace
            # condition key applies to publishing only): it is granted on "*" or not at all.
            # It reads metrics, nothing else.
            iam.PolicyStatement(sid="ReadTheQueuesAgeMetrics", actions=list(READ_METRICS),
                                resources=["*"]),
        ]
