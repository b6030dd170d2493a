"""The identity provider's stack (`School-<env>-identity`): the Cognito user
pool whose access tokens every API and the console accept, its four groups (the roles of
`cognito:groups`), an app client per kind of client, and its hosted sign-in pages.

A stack of its own, deployed once after the platform and rarely again: it holds the people's
accounts, so it is retained (and protected from deletion) whatever happens to the network or a
service, and no other stack's change can replace it. The service and console stacks take the
issuer and the client ids from it (`oidc`), through CloudFormation exports.

- **Who signs up.** Nobody on their own: the school creates each account (`admin-create-user`,
  or an import of the roll), so no stranger holds a token of the school's issuer, and the
  invitation mail carries a temporary password. Sign-in is by email address.
- **Clients.** `web`, `console` and `cli`: public clients (no secret: a browser or a
  terminal keeps none), the authorization code grant only, used with PKCE (S256), no implicit
  grant; an unknown user gets the same answer as a wrong password (prevent user existence
  errors); one-hour access tokens.
- **MFA.** Cognito cannot require MFA of some groups only. The pool makes TOTP optional (then
  Cognito challenges every user who has it set up, at every sign-in: device tracking, which
  would let a remembered device skip it, is off), and a pre token generation trigger
  (deploy/aws/mfa_gate.py) refuses any token, at sign-in or refresh, to a member of `admin` or
  `operator` who has no TOTP set up."""

from __future__ import annotations

from pathlib import Path

from aws_cdk import CfnOutput, Duration, Fn, RemovalPolicy, Stack
from aws_cdk import aws_cognito as cognito
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from deploy.aws import mfa_gate
from deploy.aws.edge import settings
from deploy.aws.scan import skip
from shared.settings import CONSOLE, PORTS

# The roles shared.access knows; precedence only orders them in `cognito:preferred_role`.
GROUPS = {"admin": "everything in the domain, analytics, registering others",
          "operator": "the operations console: queues, dead letters, redrives",
          "instructor": "courses, assignments and their submissions",
          "student": "their own record, enrollments, payments and submissions"}
# The console's sign-in callback (services/console/signin.py, `/auth/callback`), at the
# console's own address: its name under DOMAIN_NAME, or, without one, the operator's end of a
# port forward to the internal load balancer (the console builds the URL from the Host header).
CONSOLE_CALLBACK = "/auth/callback"
# The web front end's callback at the school's domain; without a domain, one under development.
WEB_CALLBACK = "/auth/callback"
WEB_DEVELOPMENT = "http://localhost:3000"
# The CLI's loopback redirect (RFC 8252): the browser hands the code back to `school` itself.
CLI_CALLBACK = "http://localhost:8765/callback"
ACCESS_TOKEN = Duration.hours(1)
REFRESH_TOKEN = {"web": Duration.days(30), "console": Duration.hours(1), "cli": Duration.days(7)}
SOURCE = Path(mfa_gate.__file__).read_text()
INLINE_LIMIT = 4096  # characters CloudFormation takes as a function's inline code


def issuer_url(region: str, user_pool_id: str) -> str:
    """The `iss` of the pool's tokens, which is also where its discovery document is."""
    return f"https://cognito-idp.{region}.amazonaws.com/{user_pool_id}"


class IdentityStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, *, env_name: str,
                 **kwargs: object) -> None:
        super().__init__(scope, construct_id, **kwargs)  # type: ignore[arg-type]
        self.env_name = env_name
        self.pool = self.user_pool()
        for precedence, (group, description) in enumerate(GROUPS.items()):
            cognito.UserPoolGroup(self, f"Group{group.title()}", user_pool=self.pool,
                                  group_name=group, description=description,
                                  precedence=precedence)
        self.pool.add_trigger(cognito.UserPoolOperation.PRE_TOKEN_GENERATION, self.mfa_gate(),
                              lambda_version=cognito.LambdaVersion.V1_0)
        # A Cognito domain, unique by the account: the hosted authorize and token endpoints.
        self.domain = self.pool.add_domain("Domain", cognito_domain=cognito.CognitoDomainOptions(
            domain_prefix=Fn.join("-", [f"school-{env_name}", self.account])))
        self.clients = {name: self.client(name, callbacks)
                        for name, callbacks in self.callbacks().items()}
        self.issuer = issuer_url(self.region, self.pool.user_pool_id)
        self.client_ids = ",".join(c.user_pool_client_id for c in self.clients.values())
        self.console_client_id = self.clients[CONSOLE].user_pool_client_id
        self.outputs()

    @property
    def oidc(self) -> dict[str, str]:
        """What every API, worker and migration container is given (shared/settings.py)."""
        return {"OIDC_ISSUER": self.issuer, "OIDC_CLIENT_IDS": self.client_ids}

    def user_pool(self) -> cognito.UserPool:
        return cognito.UserPool(
            self, "UserPool", user_pool_name=f"school-{self.env_name}",
            feature_plan=cognito.FeaturePlan.LITE, self_sign_up_enabled=False,
            sign_in_aliases=cognito.SignInAliases(email=True), sign_in_case_sensitive=False,
            auto_verify=cognito.AutoVerifiedAttrs(email=True),
            standard_attributes=cognito.StandardAttributes(
                email=cognito.StandardAttribute(required=True, mutable=True)),
            mfa=cognito.Mfa.OPTIONAL,
            mfa_second_factor=cognito.MfaSecondFactor(otp=True, sms=False, email=False),
            password_policy=cognito.PasswordPolicy(
                min_length=12, require_lowercase=True, require_uppercase=True,
                require_digits=True, require_symbols=False,
                temp_password_validity=Duration.days(3)),
            account_recovery=cognito.AccountRecovery.EMAIL_ONLY,
            deletion_protection=True, removal_policy=RemovalPolicy.RETAIN)

    def mfa_gate(self) -> lambda_.Function:
        """The pre token generation trigger (deploy/aws/mfa_gate.py), inlined; it may read the
        users of this pool (AdminGetUser) and nothing else."""
        if len(SOURCE) > INLINE_LIMIT:
            raise ValueError(f"deploy/aws/mfa_gate.py is {len(SOURCE)} characters; "
                             f"CloudFormation inlines at most {INLINE_LIMIT}")
        group = logs.LogGroup(self, "MfaGateLogs",
                              log_group_name=f"/school/{self.env_name}/identity/mfa-gate",
                              retention=logs.RetentionDays.ONE_MONTH,
                              removal_policy=RemovalPolicy.DESTROY)
        skip(group, CKV_AWS_158="A line per refused token: a user id and group names, which "
                                "CloudWatch Logs' own encryption covers.")
        gate = lambda_.Function(
            self, "MfaGate", runtime=lambda_.Runtime.PYTHON_3_13, handler="index.handler",
            code=lambda_.Code.from_inline(SOURCE), timeout=Duration.seconds(5),
            memory_size=128, log_group=group,
            description="no token for an admin or operator without TOTP")
        skip(gate,
             CKV_AWS_115="Cognito calls it once per token issued; a concurrency limit would "
                         "refuse sign-ins at the limit instead of protecting anything.",
             CKV_AWS_116="Cognito invokes it synchronously and refuses the token when it "
                         "fails: there is no event to send to a dead-letter queue.",
             CKV_AWS_117="It calls Cognito's public API only; inside the VPC it would need "
                         "a Cognito endpoint or the NAT gateway for the same call.")
        # A policy of its own, not the role's default one: the function may not depend on the
        # pool's ARN, since the pool names the function as its trigger.
        if gate.role is None:
            raise ValueError("the MFA gate has no role to grant AdminGetUser to")
        iam.Policy(self, "MfaGateReadsUsers", roles=[gate.role], statements=[
            iam.PolicyStatement(actions=["cognito-idp:AdminGetUser"],
                                resources=[self.pool.user_pool_arn])])
        return gate

    def callbacks(self) -> dict[str, list[str]]:
        edge = settings(self)
        if edge.domain_name:
            return {"web": [f"https://{edge.domain_name}{WEB_CALLBACK}"],
                    CONSOLE: [f"https://{edge.host(CONSOLE)}{CONSOLE_CALLBACK}"],
                    "cli": [CLI_CALLBACK]}
        return {"web": [f"{WEB_DEVELOPMENT}{WEB_CALLBACK}"],
                CONSOLE: [f"http://localhost:{PORTS[CONSOLE]}{CONSOLE_CALLBACK}"],
                "cli": [CLI_CALLBACK]}

    def client(self, name: str, callbacks: list[str]) -> cognito.UserPoolClient:
        """A public client of the authorization code grant (with PKCE) only. SRP is the one
        API sign-in besides the hosted pages; the CLI's client also takes the admin password
        flow, which needs AWS credentials allowed cognito-idp:AdminInitiateAuth (the first
        admin's TOTP is set up that way, docs/aws.md)."""
        scopes = [cognito.OAuthScope.OPENID, cognito.OAuthScope.EMAIL,
                  cognito.OAuthScope.PROFILE]
        return self.pool.add_client(
            f"{name.title()}Client", user_pool_client_name=f"school-{self.env_name}-{name}",
            generate_secret=False,
            auth_flows=cognito.AuthFlow(user_srp=True, admin_user_password=name == "cli"),
            o_auth=cognito.OAuthSettings(
                flows=cognito.OAuthFlows(authorization_code_grant=True,
                                         implicit_code_grant=False, client_credentials=False),
                scopes=scopes[:1] if name == CONSOLE else scopes, callback_urls=callbacks),
            supported_identity_providers=[cognito.UserPoolClientIdentityProvider.COGNITO],
            prevent_user_existence_errors=True, enable_token_revocation=True,
            access_token_validity=ACCESS_TOKEN, id_token_validity=ACCESS_TOKEN,
            refresh_token_validity=REFRESH_TOKEN[name],
            auth_session_validity=Duration.minutes(3))

    def outputs(self) -> None:
        CfnOutput(self, "UserPoolId", value=self.pool.user_pool_id)
        CfnOutput(self, "Issuer", value=self.issuer, description="OIDC_ISSUER of every task")
        CfnOutput(self, "HostedSignIn", value=self.domain.base_url(),
                  description="the hosted authorize and token endpoints (/oauth2/...)")
        for name, client in self.clients.items():
            CfnOutput(self, f"{name.title()}ClientId", value=client.user_pool_client_id)
