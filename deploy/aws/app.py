"""The CDK app: every stack of one deployment environment.

`make synth` runs this module directly, so synthesis needs neither the cdk CLI nor AWS
credentials: the stacks make no lookups and name no account, so the CLI deploys the assembly in
cdk.out/ to the account of your credentials, in the region the stacks were synthesized for (or,
synthesized without one, in your credentials' region).

Settings (environment variables, so `make synth` and `make deploy` see the same ones):
DEPLOY_ENV (default `prod`): the SCHOOL_ENV of the deployment, prefix of every name;
DEPLOY_SMTP_HOST, DEPLOY_SMTP_PORT: the SMTP relay the notification service sends to;
CERTIFICATE_ARN, DOMAIN_NAME: the edge (deploy/aws/edge.py), an ACM certificate in the
deployment's region for `*.DOMAIN_NAME`. With both, the APIs are internet-facing on HTTPS as
`<service>.DOMAIN_NAME` behind a web ACL; without them every load balancer is internal.
The load balancers' access logs need the deployment's region at synth time (their bucket must
admit that region's ELB log delivery): the certificate's region, else AWS_REGION,
AWS_DEFAULT_REGION or the AWS profile's region. Without any, the stacks stay region-agnostic and
keep no access logs.

The identity provider is the identity stack's Cognito user pool (deploy/aws/identity.py): every
task gets its issuer and client ids from it. OIDC_ISSUER and OIDC_CLIENT_IDS in the environment
are not read here (a shell left with `make up`'s would otherwise point production elsewhere).
"""

from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path

from aws_cdk import App, Environment, Tags

from deploy.aws.console import ConsoleStack
from deploy.aws.edge import Settings
from deploy.aws.identity import IdentityStack
from deploy.aws.messaging import MessagingStack
from deploy.aws.platform import PlatformStack
from deploy.aws.service import ServiceStack
from shared.settings import CONSOLE, ROOT, SERVICES

NAME = re.compile(r"^[a-z][a-z0-9-]{0,19}$")
DOMAIN = re.compile(r"^(?=.{1,200}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
CERTIFICATE = re.compile(r"^arn:aws[a-z-]*:acm:[a-z0-9-]+:\d{12}:certificate/[0-9a-f-]+$")


def stack_name(env_name: str, part: str) -> str:
    """`School-prod-payment`: what `make deploy SERVICE=payment` deploys."""
    return f"School-{env_name}-{part}"


def certificate_region(edge: Settings) -> str | None:
    return edge.certificate_arn.split(":")[3] if edge.certificate_arn else None


def check_edge(edge: Settings, region: str | None) -> None:
    """Both or neither, and each of its form: a typo must not yield an internal deployment."""
    if bool(edge.certificate_arn) != bool(edge.domain_name):
        raise ValueError("CERTIFICATE_ARN and DOMAIN_NAME go together: set both (HTTPS on the "
                         "internet) or neither (internal load balancers)")
    if edge.certificate_arn and not CERTIFICATE.match(edge.certificate_arn):
        raise ValueError(f"CERTIFICATE_ARN must be an ACM certificate's ARN "
                         f"(arn:aws:acm:<region>:<account>:certificate/<id>); "
                         f"got {edge.certificate_arn!r}")
    if edge.domain_name and not DOMAIN.match(edge.domain_name):
        raise ValueError(f"DOMAIN_NAME must be a lowercase DNS name such as school.example.com; "
                         f"got {edge.domain_name!r}")
    if edge.certificate_arn and region != certificate_region(edge):
        raise ValueError(f"the certificate is in {certificate_region(edge)}, the deployment in "
                         f"{region}: a load balancer's certificate must be in its own region")


def build(env_name: str = "prod", smtp: tuple[str, int] = ("smtp.internal", 25),
          outdir: Path | None = None, edge: Settings | None = None,
          region: str | None = None) -> App:
    """The app; `region` defaults to the certificate's. Without one, the stacks are
    region-agnostic and the load balancers keep no access logs (deploy/aws/fargate.py)."""
    if not NAME.match(env_name):
        raise ValueError(f"DEPLOY_ENV must be lowercase letters, digits and dashes, at most 20, "
                         f"starting with a letter; got {env_name!r}")
    edge = edge or Settings()
    region = region or certificate_region(edge)
    check_edge(edge, region)
    env = Environment(region=region) if region else None
    # Read by deploy.aws.edge.settings in every stack.
    app = App(outdir=str(outdir or ROOT / "cdk.out"), context={"edge": {
        "certificate_arn": edge.certificate_arn or "", "domain_name": edge.domain_name or ""}})
    Tags.of(app).add("project", "online-school")
    Tags.of(app).add("school-env", env_name)
    platform = PlatformStack(app, stack_name(env_name, "platform"), env_name=env_name, env=env)
    messaging = MessagingStack(app, stack_name(env_name, "messaging"), env_name=env_name,
                               key=platform.messaging_key, env=env)
    messaging.add_stack_dependency(platform)  # its queue policies name the platform's SQS endpoint
    identity = IdentityStack(app, stack_name(env_name, "identity"), env_name=env_name, env=env)
    for service in SERVICES:
        ServiceStack(app, stack_name(env_name, service), env_name=env_name, service=service,
                     platform=platform, messaging=messaging, identity=identity, smtp=smtp, env=env)
    ConsoleStack(app, stack_name(env_name, CONSOLE), env_name=env_name, platform=platform,
                 messaging=messaging, identity=identity, env=env)
    return app


def configured_region() -> str | None:
    """The region the AWS CLI would use: AWS_REGION, AWS_DEFAULT_REGION, the profile's."""
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if not region:
        import botocore.session  # reads the AWS config files only: no call, no credentials
        region = botocore.session.Session().get_config_variable("region")
    return str(region) if region else None


def main() -> int:
    started = time.monotonic()
    env_name = os.environ.get("DEPLOY_ENV", "prod") or "prod"
    smtp = (os.environ.get("DEPLOY_SMTP_HOST", "smtp.internal") or "smtp.internal",
            int(os.environ.get("DEPLOY_SMTP_PORT", "25") or 25))
    edge = Settings(certificate_arn=os.environ.get("CERTIFICATE_ARN", "").strip() or None,
                    domain_name=os.environ.get("DOMAIN_NAME", "").strip() or None)
    if not edge.certificate_arn and not edge.domain_name:
        print("[synth] CERTIFICATE_ARN and DOMAIN_NAME are not set: every API load balancer is "
              "internal (HTTP inside the VPC only), none faces the internet", flush=True)
    elif edge.public:
        print(f"[synth] the APIs face the internet on HTTPS as <service>.{edge.domain_name}, "
              f"behind the web ACL", flush=True)
    region = configured_region() or certificate_region(edge)
    if not region:
        print("[synth] no region (AWS_REGION, AWS_DEFAULT_REGION or the AWS profile's): the "
              "stacks stay region-agnostic and the load balancers keep no access logs",
              flush=True)
    if any(os.environ.get(name) for name in ("OIDC_ISSUER", "OIDC_CLIENT_IDS")):
        print("[synth] OIDC_ISSUER and OIDC_CLIENT_IDS are ignored: the tasks trust the "
              "identity stack's user pool", flush=True)
    try:
        app = build(env_name, smtp, edge=edge, region=region)
    except ValueError as exc:
        print(f"synth: {exc}", file=sys.stderr)
        return 2
    print(f"[synth] synthesizing the stacks of DEPLOY_ENV={env_name} into cdk.out/ ...",
          flush=True)
    assembly = app.synth()
    for stack in assembly.stacks:
        print(f"[synth]   {stack.stack_name}")
    print(f"[synth] done in {time.monotonic() - started:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
