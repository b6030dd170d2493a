"""The user pool's pre token generation trigger: no token for an admin or an operator who has
no authenticator app (TOTP) set up.

Cognito requires MFA for a whole pool or for no one. The pool makes it optional, and Cognito
then challenges, at every sign-in, each user who has TOTP set up; this trigger refuses any
token (a sign-in, a refresh) to a member of a group in PRIVILEGED who has none, so such a
member is always challenged. The CDK app inlines this file as the function's code
(deploy/aws/identity.py): it uses nothing but the Lambda runtime's boto3."""

from __future__ import annotations

from typing import Any

PRIVILEGED = frozenset({"admin", "operator"})
SECOND_FACTORS = frozenset({"SOFTWARE_TOKEN_MFA"})  # the pool's one second factor: TOTP


class MfaRequired(Exception):
    """Cognito refuses the token and shows the message to the person signing in."""


def refuses(groups: list[str], mfa_methods: list[str]) -> bool:
    """Whether a member of `groups`, with `mfa_methods` set up, must be refused a token."""
    return not PRIVILEGED.isdisjoint(groups) and SECOND_FACTORS.isdisjoint(mfa_methods)


def handler(event: dict[str, Any], context: Any, client: Any = None) -> dict[str, Any]:
    groups = event["request"].get("groupConfiguration", {}).get("groupsToOverride") or []
    if PRIVILEGED.isdisjoint(groups):
        return event  # no lookup for students and instructors
    if client is None:
        import boto3  # the Lambda runtime's
        client = boto3.client("cognito-idp")
    user = client.admin_get_user(UserPoolId=event["userPoolId"], Username=event["userName"])
    if refuses(groups, user.get("UserMFASettingList") or []):
        print(f"refused a token to {event['userName']}: in {sorted(PRIVILEGED & set(groups))} "
              f"without TOTP")
        raise MfaRequired("Admins and operators sign in with an authenticator app (TOTP): "
                          "set one up before joining the group.")
    return event
