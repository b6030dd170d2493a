"""Access tokens from the development issuer's POST /token (deploy/local/issuer.py), for the
demo, the tests and `school login`: no sign-in page, any subject and groups. Never on AWS."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import requests


class TokenError(Exception):
    """The issuer gave no token. The message has the status and the issuer's reason, never a
    token."""

    def __init__(self, status: int | None, detail: str) -> None:
        super().__init__(f"the issuer answered {status}: {detail}" if status is not None
                         else detail)
        self.status, self.detail = status, detail


def mint(issuer: str, sub: str, groups: Sequence[str], *, email: str | None = None,
         name: str | None = None, expires_in: int | None = None, client_id: str | None = None,
         timeout: float = 10) -> str:
    """An access token for `sub` in `groups`, shaped like Cognito's, signed by `issuer`."""
    body: dict[str, Any] = {"sub": sub, "groups": list(groups), "email": email, "name": name,
                            "expires_in": expires_in, "client_id": client_id}
    url = issuer.rstrip("/") + "/token"
    try:
        reply = requests.post(url, json={k: v for k, v in body.items() if v is not None},
                              timeout=timeout)
    except requests.RequestException as exc:
        raise TokenError(None, f"cannot reach the issuer at {url}: {type(exc).__name__}"
                         ) from None
    if reply.status_code != 200:
        raise TokenError(reply.status_code, _reason(reply))
    token = _json(reply).get("access_token")
    if not isinstance(token, str):
        raise TokenError(reply.status_code, "the answer has no access_token")
    return token


def _json(reply: requests.Response) -> dict[str, Any]:
    try:
        body = reply.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _reason(reply: requests.Response) -> str:
    """The problem's detail and its fields' messages (a 422 says which field is wrong)."""
    problem = _json(reply)
    detail = str(problem.get("detail") or reply.reason or "no detail")
    errors = problem.get("errors")
    if isinstance(errors, dict) and errors:
        detail += " " + "; ".join(
            f"{field}: {' '.join(map(str, messages if isinstance(messages, list) else [messages]))}"
            for field, messages in errors.items())
    return detail
