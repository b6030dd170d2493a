"""The identity provider's stack: the Cognito user pool, its four groups, its
three public app clients (authorization code with PKCE, no secret), its hosted domain, and the
trigger that refuses a token to an admin or an operator without TOTP, whose decision logic is
unit-tested here as well (deploy/aws/mfa_gate.py)."""

from __future__ import annotations

import inspect
from typing import Any

import pytest

from deploy.aws import mfa_gate
from tests.deploy.conftest import DOMAIN_NAME, ENV
from tests.deploy.test_stacks import of_type

# Written out, not imported from deploy/aws/: a renamed group or client must fail here.
GROUPS = {"student", "instructor", "admin", "operator"}
CLIENTS = {f"school-{ENV}-{name}" for name in ("web", "console", "cli")}
SRP = {"ALLOW_USER_SRP_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"}


def the_pool(identity: Any) -> tuple[str, dict[str, Any]]:
    [(pool_id, pool)] = of_type(identity, "AWS::Cognito::UserPool").items()
    return pool_id, pool


def clients(identity: Any) -> dict[str, dict[str, Any]]:
    return {c["Properties"]["ClientName"]: c["Properties"]
            for c in of_type(identity, "AWS::Cognito::UserPoolClient").values()}


def test_the_pool_admits_no_self_sign_up_and_offers_totp(templates: dict[str, Any]) -> None:
    pool_id, pool = the_pool(templates["identity"])
    props = pool["Properties"]
    assert props["UserPoolName"] == f"school-{ENV}"
    assert props["AdminCreateUserConfig"]["AllowAdminCreateUserOnly"] is True
    assert props["UsernameAttributes"] == ["email"]
    assert props["UsernameConfiguration"] == {"CaseSensitive": False}
    # optional, TOTP only (no SMS, no email codes): the trigger below makes it a must for some
    assert (props["MfaConfiguration"], props["EnabledMfas"]) == ("OPTIONAL",
                                                                 ["SOFTWARE_TOKEN_MFA"])
    # a remembered device would skip the MFA challenge: device tracking stays off
    assert "DeviceConfiguration" not in props
    assert props["Policies"]["PasswordPolicy"]["MinimumLength"] >= 12
    assert props["AccountRecoverySetting"] == {"RecoveryMechanisms": [
        {"Name": "verified_email", "Priority": 1}]}
    # the people's accounts outlive any stack update or deletion
    assert props["DeletionProtection"] == "ACTIVE"
    assert (pool["DeletionPolicy"], pool["UpdateReplacePolicy"]) == ("Retain", "Retain")
    assert props["UserPoolTier"] == "LITE"


def test_the_pool_has_the_four_groups_of_the_roles(templates: dict[str, Any]) -> None:
    identity = templates["identity"]
    pool_id, _ = the_pool(identity)
    groups = [g["Properties"] for g in of_type(identity, "AWS::Cognito::UserPoolGroup").values()]
    assert {g["GroupName"] for g in groups} == GROUPS and len(groups) == 4
    assert all(g["UserPoolId"] == {"Ref": pool_id} for g in groups)


@pytest.mark.parametrize("synthesis", ["templates", "edge_templates"])
def test_three_public_clients_of_the_code_grant_only(request: pytest.FixtureRequest,
                                                     synthesis: str) -> None:
    identity = request.getfixturevalue(synthesis)["identity"]
    pool_id, _ = the_pool(identity)
    found = clients(identity)
    assert set(found) == CLIENTS
    for name, client in found.items():
        assert client["UserPoolId"] == {"Ref": pool_id}
        assert client.get("GenerateSecret", False) is False, name  # public: PKCE binds the code
        assert client["AllowedOAuthFlows"] == ["code"], name  # no implicit, no client credentials
        assert client["AllowedOAuthFlowsUserPoolClient"] is True
        assert client["PreventUserExistenceErrors"] == "ENABLED"
        assert client["SupportedIdentityProviders"] == ["COGNITO"]
        assert client["EnableTokenRevocation"] is True
        assert "openid" in client["AllowedOAuthScopes"]
        assert "aws.cognito.signin.user.admin" not in client["AllowedOAuthScopes"]
        units = client["TokenValidityUnits"]
        assert (units["AccessToken"], client["AccessTokenValidity"]) == ("minutes", 60)
        assert (units["IdToken"], client["IdTokenValidity"]) == ("minutes", 60)
        assert units["RefreshToken"] == "minutes"
        assert 60 <= client["RefreshTokenValidity"] <= 30 * 24 * 60
        # SRP at most besides the hosted pages, never a password in the clear; the CLI's client
        # also the admin flow, which only a caller with AWS credentials can use (docs/aws.md)
        extra = {"ALLOW_ADMIN_USER_PASSWORD_AUTH"} if name.endswith("-cli") else set()
        assert set(client["ExplicitAuthFlows"]) == SRP | extra, name


def test_the_console_s_client_comes_back_to_its_sign_in_callback(
        templates: dict[str, Any], edge_templates: dict[str, Any]) -> None:
    """The console's route (services/console/signin.py), at the console's address: its name
    under DOMAIN_NAME over HTTPS, or without one the operator's port forward on localhost
    (Cognito accepts plain HTTP for localhost only)."""
    from services.console import signin
    assert 'auth/callback"' in inspect.getsource(signin.SignIn.start)
    assert '"/auth/callback"' in inspect.getsource(signin.routes)
    internal = clients(templates["identity"])
    public = clients(edge_templates["identity"])
    console = f"school-{ENV}-console"
    assert internal[console]["CallbackURLs"] == ["http://localhost:8000/auth/callback"]
    assert public[console]["CallbackURLs"] == [f"https://console.{DOMAIN_NAME}/auth/callback"]
    assert public[f"school-{ENV}-web"]["CallbackURLs"] == [
        f"https://{DOMAIN_NAME}/auth/callback"]
    # the CLI's loopback redirect, with a domain or without (RFC 8252)
    for found in (internal, public):
        assert found[f"school-{ENV}-cli"]["CallbackURLs"] == ["http://localhost:8765/callback"]
    # with a domain, nothing but HTTPS for the browser clients
    for name in (console, f"school-{ENV}-web"):
        assert all(url.startswith("https://") for url in public[name]["CallbackURLs"])


def test_the_pool_has_a_cognito_domain_for_the_hosted_endpoints(
        templates: dict[str, Any]) -> None:
    identity = templates["identity"]
    pool_id, _ = the_pool(identity)
    [domain] = [d["Properties"] for d in of_type(identity, "AWS::Cognito::UserPoolDomain").values()]
    assert domain["UserPoolId"] == {"Ref": pool_id}
    assert domain["Domain"] == {"Fn::Join": ["-", [f"school-{ENV}", {"Ref": "AWS::AccountId"}]]}
    outputs = identity.to_json()["Outputs"]
    assert outputs["Issuer"]["Value"] == {"Fn::Join": ["", [
        "https://cognito-idp.", {"Ref": "AWS::Region"}, ".amazonaws.com/", {"Ref": pool_id}]]}


def test_the_mfa_gate_is_the_pool_s_pre_token_generation_trigger(
        templates: dict[str, Any]) -> None:
    identity = templates["identity"]
    pool_id, pool = the_pool(identity)
    [(function_id, function)] = of_type(identity, "AWS::Lambda::Function").items()
    assert pool["Properties"]["LambdaConfig"] == {
        "PreTokenGeneration": {"Fn::GetAtt": [function_id, "Arn"]}}
    props = function["Properties"]
    assert (props["Runtime"], props["Handler"]) == ("python3.13", "index.handler")
    assert props["Code"] == {"ZipFile": inspect.getsource(mfa_gate)}
    assert props["Timeout"] <= 5  # Cognito waits 5 s for a trigger
    [permission] = [p["Properties"] for p in of_type(identity, "AWS::Lambda::Permission").values()]
    assert (permission["Principal"], permission["SourceArn"]) == (
        "cognito-idp.amazonaws.com", {"Fn::GetAtt": [pool_id, "Arn"]})
    # its role may read this pool's users and nothing else (besides writing its own logs)
    [statement] = [s for p in of_type(identity, "AWS::IAM::Policy").values()
                   for s in p["Properties"]["PolicyDocument"]["Statement"]]
    assert statement == {"Action": "cognito-idp:AdminGetUser", "Effect": "Allow",
                         "Resource": {"Fn::GetAtt": [pool_id, "Arn"]}}


# --- The trigger's decision (deploy/aws/mfa_gate.py) -----------------------------------------

class Users:
    """A stand-in for the Cognito client: the MFA methods each user has set up."""

    def __init__(self, **methods: list[str]) -> None:
        self.methods, self.asked = methods, []

    def admin_get_user(self, *, UserPoolId: str, Username: str) -> dict[str, Any]:  # noqa: N803
        self.asked.append((UserPoolId, Username))
        found = {"Username": Username}
        if self.methods.get(Username):
            found["UserMFASettingList"] = self.methods[Username]
        return found


def token_request(user: str, groups: list[str] | None) -> dict[str, Any]:
    request: dict[str, Any] = {"userAttributes": {"sub": user}}
    if groups is not None:
        request["groupConfiguration"] = {"groupsToOverride": groups, "iamRolesToOverride": [],
                                         "preferredRole": None}
    return {"version": "1", "triggerSource": "TokenGeneration_HostedAuth",
            "region": "eu-west-1", "userPoolId": "eu-west-1_Pool", "userName": user,
            "callerContext": {"clientId": "console"}, "request": request,
            "response": {"claimsOverrideDetails": None}}


@pytest.mark.parametrize(("groups", "methods", "refused"), [
    (["student"], [], False),
    (["instructor", "student"], [], False),
    ([], [], False),
    (["admin"], [], True),
    (["operator"], [], True),
    (["student", "operator"], [], True),
    (["admin"], ["SOFTWARE_TOKEN_MFA"], False),
    (["operator", "admin"], ["SMS_MFA", "SOFTWARE_TOKEN_MFA"], False),
    (["operator"], ["SMS_MFA"], True),  # the pool offers TOTP only
    (["admin"], ["EMAIL_OTP"], True),
])
def test_who_is_refused_a_token(groups: list[str], methods: list[str], refused: bool) -> None:
    assert mfa_gate.refuses(groups, methods) is refused


def test_a_student_gets_a_token_without_a_lookup() -> None:
    users = Users()
    event = token_request("ada", ["student"])
    assert mfa_gate.handler(event, None, client=users) is event
    assert mfa_gate.handler(token_request("bob", None), None, client=users)["userName"] == "bob"
    assert users.asked == []


def test_an_operator_without_totp_gets_no_token_at_sign_in_or_refresh() -> None:
    users = Users(grace=[])
    for source in ("TokenGeneration_HostedAuth", "TokenGeneration_RefreshTokens"):
        event = token_request("grace", ["operator"]) | {"triggerSource": source}
        with pytest.raises(mfa_gate.MfaRequired, match="authenticator app"):
            mfa_gate.handler(event, None, client=users)
    assert users.asked == [("eu-west-1_Pool", "grace")] * 2


def test_an_admin_with_totp_gets_the_token_unchanged() -> None:
    users = Users(root=["SOFTWARE_TOKEN_MFA"])
    event = token_request("root", ["admin", "operator"])
    assert mfa_gate.handler(event, None, client=users) == token_request("root",
                                                                         ["admin", "operator"])
    assert users.asked == [("eu-west-1_Pool", "root")]


def test_the_inlined_code_stands_alone() -> None:
    """Lambda runs the file as `index` with the runtime's libraries: nothing of this project,
    and within what CloudFormation inlines."""
    source = inspect.getsource(mfa_gate)
    assert len(source) <= 4096
    namespace: dict[str, Any] = {"__name__": "index"}
    exec(compile(source, "index.py", "exec"), namespace)  # noqa: S102 - our own file
    assert callable(namespace["handler"])
    imported = {line.split()[1] for line in source.splitlines()
                if line.strip().startswith(("import ", "from "))}
    assert imported <= {"__future__", "typing", "boto3"}
