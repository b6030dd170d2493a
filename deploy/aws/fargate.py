"""What every Fargate stack of the app builds the same way: the service stacks
(deploy/aws/service.py) and the console's (deploy/aws/console.py) take their task role, logs,
image, containers and load-balanced API from here, so a hardening of the load balancers or a
scanner's exception is written once and holds for every entry point of the deployment."""

from __future__ import annotations

from collections.abc import Iterable

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_ecs_patterns as patterns
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from constructs import Construct

from deploy.aws.messaging import task_role_name
from deploy.aws.scan import skip
from shared.settings import PORTS, ROOT
from shared.topology import physical

# The load balancers listen on plain HTTP: the scanner's TLS checks are skipped with this reason.
NO_DOMAIN = ("The reference deployment has no domain, so no certificate: the API is served on "
             "HTTP port 80. Give the pattern a certificate and a domain (protocol HTTPS, "
             "redirect_http) before real students use it.")


def arns(stack: Stack, env_name: str, service: str, names: Iterable[str]) -> list[str]:
    """The ARNs of topology names (queues, the topic) in the stack's account and region: built
    from the names, so a grant needs no reference to the messaging stack's resources."""
    return [stack.format_arn(service=service, resource=physical(env_name, name))
            for name in names]


def task_role(scope: Construct, env_name: str, service: str, description: str) -> iam.Role:
    """A task role named as the messaging stack's queue policies expect (`task_role_name`), so
    the queues admit it through the VPC's SQS endpoint only."""
    return iam.Role(scope, "TaskRole", role_name=task_role_name(env_name, service),
                    assumed_by=iam.ServicePrincipal("ecs-tasks.amazonaws.com"),
                    description=description)


def log_group(scope: Construct, env_name: str, service: str) -> logs.LogGroup:
    group = logs.LogGroup(scope, "Logs", log_group_name=f"/school/{env_name}/{service}",
                          retention=logs.RetentionDays.ONE_MONTH,
                          removal_policy=RemovalPolicy.DESTROY)
    skip(group, CKV_AWS_158="CloudWatch Logs encrypts every log group at rest with its own key; "
                            "the lines carry ids and outcomes, no message bodies, so a customer "
                            "key adds cost, not protection.")
    return group


def image(service: str) -> ecs.ContainerImage:
    """The one Dockerfile's image for `service` (non-root; its build argument names the
    service). The build context is the repository; CDK applies its .dockerignore."""
    return ecs.ContainerImage.from_asset(
        str(ROOT), file="deploy/docker/Dockerfile", build_args={"SERVICE": service},
        platform=ecr_assets.Platform.LINUX_AMD64)


def environment(stack: Stack, env_name: str, service: str, db: str) -> dict[str, str]:
    """The variables `make up` sets, with AWS's values (shared/settings.py reads them)."""
    oidc = stack.node.try_get_context("oidc") or {}
    return {"SCHOOL_ENV": env_name, "AWS_DEFAULT_REGION": stack.region, "DB": db,
            "BIND_HOST": "0.0.0.0", f"{service.upper()}_PORT": str(PORTS[service]),
            "LOG_LEVEL": "INFO", **{name: str(value) for name, value in oidc.items()}}


def serve(role: str, service: str) -> list[str]:
    """The entry point of deploy/local/Procfile and of the image: `python -m shared.serve`."""
    return ["python", "-m", "shared.serve", role, service]


def task_definition(scope: Construct, construct_id: str, role: iam.IRole
                    ) -> ecs.FargateTaskDefinition:
    return ecs.FargateTaskDefinition(scope, construct_id, cpu=256, memory_limit_mib=512,
                                     task_role=role)


def add_container(task: ecs.FargateTaskDefinition, name: str, *, image: ecs.ContainerImage,
                  command: list[str], environment: dict[str, str], logs: logs.ILogGroup,
                  essential: bool = True, secrets: dict[str, ecs.Secret] | None = None
                  ) -> ecs.ContainerDefinition:
    """A container of the image, logging to the stack's group under its own stream prefix, given
    30 s after SIGTERM (gunicorn's graceful timeout is 20 s)."""
    return task.add_container(
        name, image=image, essential=essential, environment=environment, secrets=secrets,
        command=command, logging=ecs.LogDrivers.aws_logs(stream_prefix=name, log_group=logs),
        stop_timeout=Duration.seconds(30))


def load_balanced_api(scope: Construct, construct_id: str, *, cluster: ecs.ICluster,
                      task: ecs.FargateTaskDefinition, desired_count: int, public: bool,
                      min_healthy_percent: int, max_healthy_percent: int | None = None
                      ) -> patterns.ApplicationLoadBalancedFargateService:
    """The task's container port behind an application load balancer on HTTP port 80,
    health-checked on /healthz, rolled back when a deployment fails.

    A public load balancer is open to anyone on port 80. An internal one (in the private
    subnets) admits the VPC's own addresses only: what reaches it comes through the VPC (a
    client VPN, a peering or a bastion)."""
    api = patterns.ApplicationLoadBalancedFargateService(
        scope, construct_id, cluster=cluster, task_definition=task, desired_count=desired_count,
        public_load_balancer=public, open_listener=public,
        circuit_breaker=ecs.DeploymentCircuitBreaker(rollback=True),
        health_check_grace_period=Duration.seconds(60), min_healthy_percent=min_healthy_percent,
        max_healthy_percent=max_healthy_percent)
    api.target_group.configure_health_check(path="/healthz", healthy_http_codes="200")
    # Headers that are not valid HTTP never reach the service (request smuggling).
    api.load_balancer.set_attribute("routing.http.drop_invalid_header_fields.enabled", "true")
    skip(api.listener, CKV_AWS_2=NO_DOMAIN, CKV_AWS_103=NO_DOMAIN)
    if public:
        for group in api.load_balancer.connections.security_groups:
            skip(group, CKV_AWS_260="The public load balancer's listener: port 80 from anywhere "
                                    "is its purpose (see the listener's HTTPS note).")
    else:
        api.load_balancer.connections.allow_from(
            ec2.Peer.ipv4(cluster.vpc.vpc_cidr_block), ec2.Port.tcp(80),
            "HTTP from inside the VPC only")
    skip(api.load_balancer,
         CKV_AWS_91="Access logs need a bucket of their own per service; each request's "
                    "X-Correlation-ID is in the service's own JSON logs already.")
    return api
