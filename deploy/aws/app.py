"""The CDK app: every stack of one deployment environment.

`make synth` runs this module directly, so synthesis needs neither the cdk CLI nor AWS
credentials: the stacks are environment-agnostic (no lookups), and the CLI deploys the assembly
in cdk.out/ to the account and region of your credentials.

Settings (environment variables, so `make synth` and `make deploy` see the same ones):
DEPLOY_ENV (default `prod`): the SCHOOL_ENV of the deployment, prefix of every name;
DEPLOY_SMTP_HOST, DEPLOY_SMTP_PORT: the SMTP relay the notification service sends to;
OIDC_ISSUER, OIDC_CLIENT_IDS: the identity provider whose access tokens the APIs accept (the
Cognito user pool's issuer URL and its app clients). Without them an API refuses to start.
"""

from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path

from aws_cdk import App, Tags

from deploy.aws.console import ConsoleStack
from deploy.aws.messaging import MessagingStack
from deploy.aws.platform import PlatformStack
from deploy.aws.service import ServiceStack
from shared.settings import CONSOLE, ROOT, SERVICES

NAME = re.compile(r"^[a-z][a-z0-9-]{0,19}$")


def stack_name(env_name: str, part: str) -> str:
    """`School-prod-payment`: what `make deploy SERVICE=payment` deploys."""
    return f"School-{env_name}-{part}"


def build(env_name: str = "prod", smtp: tuple[str, int] = ("smtp.internal", 25),
          outdir: Path | None = None, oidc: dict[str, str] | None = None) -> App:
    if not NAME.match(env_name):
        raise ValueError(f"DEPLOY_ENV must be lowercase letters, digits and dashes, at most 20, "
                         f"starting with a letter; got {env_name!r}")
    # Read by deploy.aws.fargate.environment for every task.
    app = App(outdir=str(outdir or ROOT / "cdk.out"), context={"oidc": dict(oidc or {})})
    Tags.of(app).add("project", "online-school")
    Tags.of(app).add("school-env", env_name)
    platform = PlatformStack(app, stack_name(env_name, "platform"), env_name=env_name)
    messaging = MessagingStack(app, stack_name(env_name, "messaging"), env_name=env_name,
                               key=platform.messaging_key)
    messaging.add_stack_dependency(platform)  # its queue policies name the platform's SQS endpoint
    for service in SERVICES:
        ServiceStack(app, stack_name(env_name, service), env_name=env_name, service=service,
                     platform=platform, messaging=messaging, smtp=smtp)
    ConsoleStack(app, stack_name(env_name, CONSOLE), env_name=env_name, platform=platform,
                 messaging=messaging)
    return app


def main() -> int:
    started = time.monotonic()
    env_name = os.environ.get("DEPLOY_ENV", "prod") or "prod"
    smtp = (os.environ.get("DEPLOY_SMTP_HOST", "smtp.internal") or "smtp.internal",
            int(os.environ.get("DEPLOY_SMTP_PORT", "25") or 25))
    oidc = {name: os.environ[name] for name in ("OIDC_ISSUER", "OIDC_CLIENT_IDS")
            if os.environ.get(name)}
    if len(oidc) < 2:
        print("[synth] OIDC_ISSUER or OIDC_CLIENT_IDS is not set: the APIs will refuse to "
              "start until both name the identity provider", flush=True)
    try:
        app = build(env_name, smtp, oidc=oidc)
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
