"""What every Fargate stack of the app builds the same way: the service stacks
(deploy/aws/service.py) and the console's (deploy/aws/console.py) take their task role, logs,
image, containers and load-balanced API from here, so a hardening of the load balancers or a
scanner's exception is written once and holds for every entry point of the deployment. The
load balancers' edge (TLS, the web ACL, the access logs) is deploy/aws/edge.py's."""

from __future__ import annotations

from collections.abc import Iterable

from aws_cdk import Duration, RemovalPolicy, Stack, Token
from aws_cdk import aws_certificatemanager as acm
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_ecs_patterns as patterns
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_wafv2 as wafv2
from constructs import Construct

from deploy.aws.edge import TLS_POLICY, access_log_bucket, settings
from deploy.aws.messaging import task_role_name
from deploy.aws.scan import skip
from shared.settings import PORTS, ROOT
from shared.topology import physical

# Without CERTIFICATE_ARN and DOMAIN_NAME the load balancers are internal and listen on plain
# HTTP: the scanner's TLS checks are skipped with this reason.
NO_CERTIFICATE = ("No CERTIFICATE_ARN and DOMAIN_NAME were given, so this load balancer is "
                  "internal and serves HTTP on port 80 to addresses inside the VPC only; with "
                  "both it serves HTTPS on 443 and port 80 only redirects (deploy/aws/edge.py).")
# Without the deployment's region at synth time CDK cannot name the region's ELB log-delivery
# principal in the bucket's policy (deploy/aws/app.py).
NO_REGION = ("Synthesized without a region (AWS_REGION, AWS_DEFAULT_REGION, the AWS profile's, "
             "or the certificate's), so the bucket policy cannot name the region's ELB "
             "log-delivery principal; synthesize with the region to get the access logs.")
HTTP, HTTPS = 80, 443


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


def environment(stack: Stack, env_name: str, service: str, db: str,
                oidc: dict[str, str]) -> dict[str, str]:
    """The variables `make up` sets, with AWS's values (shared/settings.py reads them); `oidc`
    names the identity provider (deploy/aws/identity.py, IdentityStack.oidc)."""
    return {"SCHOOL_ENV": env_name, "AWS_DEFAULT_REGION": stack.region, "DB": db,
            "BIND_HOST": "0.0.0.0", f"{service.upper()}_PORT": str(PORTS[service]),
            "LOG_LEVEL": "INFO", **oidc}


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
                      task: ecs.FargateTaskDefinition, desired_count: int, name: str,
                      internet: bool, web_acl: wafv2.CfnWebACL | None,
                      min_healthy_percent: int, max_healthy_percent: int | None = None
                      ) -> patterns.ApplicationLoadBalancedFargateService:
    """The task's container port behind an application load balancer, health-checked on
    /healthz, rolled back when a deployment fails, its access logs in a bucket of the stack.

    With a certificate (deploy/aws/edge.py) it serves HTTPS on 443 and port 80 only redirects
    there; an `internet` one is then internet-facing, open to anyone on both ports, behind the
    platform's `web_acl`. Otherwise it is internal (in the private subnets) and admits the VPC's
    own addresses only: what reaches it comes through the VPC (a client VPN, a peering, a
    bastion's port forward). Without a certificate every load balancer is internal on HTTP 80."""
    edge = settings(scope)
    public = internet and edge.public
    certificate = acm.Certificate.from_certificate_arn(
        scope, "Certificate", edge.certificate_arn) if edge.certificate_arn else None
    api = patterns.ApplicationLoadBalancedFargateService(
        scope, construct_id, cluster=cluster, task_definition=task, desired_count=desired_count,
        public_load_balancer=public, open_listener=public, certificate=certificate,
        protocol=elbv2.ApplicationProtocol.HTTPS if certificate else None,
        redirect_http=True if certificate else None,
        ssl_policy=TLS_POLICY if certificate else None,
        circuit_breaker=ecs.DeploymentCircuitBreaker(rollback=True),
        health_check_grace_period=Duration.seconds(60), min_healthy_percent=min_healthy_percent,
        max_healthy_percent=max_healthy_percent)
    api.target_group.configure_health_check(path="/healthz", healthy_http_codes="200")
    # Headers that are not valid HTTP never reach the service (request smuggling).
    api.load_balancer.set_attribute("routing.http.drop_invalid_header_fields.enabled", "true")
    log_access(scope, api.load_balancer, name)
    if not certificate:
        skip(api.listener, CKV_AWS_2=NO_CERTIFICATE, CKV_AWS_103=NO_CERTIFICATE)
    if public:
        protect(scope, api.load_balancer, web_acl)
    else:
        for port in (HTTP, HTTPS) if certificate else (HTTP,):
            api.load_balancer.connections.allow_from(
                ec2.Peer.ipv4(cluster.vpc.vpc_cidr_block), ec2.Port.tcp(port),
                f"port {port} from inside the VPC only")
    return api


def log_access(scope: Construct, load_balancer: elbv2.ApplicationLoadBalancer,
               prefix: str) -> None:
    """Access logs into a bucket of the stack, under `prefix`; CDK's `log_access_logs` grants
    the region's ELB log delivery, which it can name only when the stack has a region."""
    if Token.is_unresolved(Stack.of(scope).region):
        skip(load_balancer, CKV_AWS_91=NO_REGION)
    else:
        load_balancer.log_access_logs(access_log_bucket(scope), prefix=prefix)


def protect(scope: Construct, load_balancer: elbv2.ApplicationLoadBalancer,
            web_acl: wafv2.CfnWebACL | None) -> None:
    """An internet-facing load balancer: behind the web ACL, and open on 443 and on 80, which
    only redirects to 443."""
    if web_acl is None:
        raise ValueError(f"{load_balancer.node.path}: an internet-facing load balancer needs "
                         f"the platform's web ACL")
    wafv2.CfnWebACLAssociation(scope, "WebAclAssociation", web_acl_arn=web_acl.attr_arn,
                               resource_arn=load_balancer.load_balancer_arn)
    for group in load_balancer.connections.security_groups:
        skip(group, CKV_AWS_260="Port 80 from anywhere only answers a redirect to HTTPS on "
                                "443 (the listener's one action); nothing is served on it.")
