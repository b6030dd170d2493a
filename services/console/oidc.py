"""The console's side of the authorization-code flow with PKCE (RFC 7636): the identity
provider's endpoints, found through its discovery document, and the exchange of a code for
tokens. Cognito's hosted UI on AWS, the development issuer locally; the console is a public
client (no secret), so PKCE is what binds a code to the browser that asked for it.

https://docs.aws.amazon.com/cognito/latest/developerguide/using-pkce-in-authorization-code.html
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any, TypeGuard
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from shared.auth import KeysUnavailable, discovery, trusted

TIMEOUT = 5.0  # seconds for each call to the provider: a sign-in waits on it
DISCOVERY_LIFESPAN = 300.0  # seconds a discovery document is kept
_ERROR_CODE = 64  # characters of an OAuth error code worth repeating


class ProviderUnavailable(Exception):
    """The identity provider cannot be reached or answers nonsense: 503. The message names the
    URL and the kind of failure, never a code or a token."""


class ExchangeRefused(Exception):
    """The token endpoint refused the code (RFC 6749 section 5.2); `error` is its error code."""

    def __init__(self, error: str) -> None:
        super().__init__(error)
        self.error = error


@dataclass(frozen=True)
class Endpoints:
    authorization: str
    token: str


@dataclass(frozen=True)
class Pkce:
    verifier: str
    challenge: str

    @classmethod
    def new(cls) -> Pkce:
        """A fresh verifier (86 characters of RFC 7636's alphabet) and its S256 challenge."""
        verifier = secrets.token_urlsafe(64)
        digest = hashlib.sha256(verifier.encode("ascii")).digest()
        return cls(verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii"))


def with_query(url: str, params: dict[str, str]) -> str:
    """`url` with `params` added to whatever query it has."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True) + list(params.items())
    return urlunsplit(parts._replace(query=urlencode(query)))


def _call(req: urllib.request.Request) -> Any:
    """The JSON answer to `req`; HTTPError for an error status, ProviderUnavailable when the
    provider cannot be reached or its answer is not JSON."""
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT) as reply:  # noqa: S310 - checked
            return json.load(reply)
    except urllib.error.HTTPError:
        raise
    except (OSError, ValueError) as exc:
        raise ProviderUnavailable(f"cannot reach {req.full_url}: {type(exc).__name__}"
                                  ) from None


class Provider:
    """The issuer's endpoints (its discovery document, cached for DISCOVERY_LIFESPAN seconds and
    fetched again after a failure) and its token endpoint."""

    def __init__(self, issuer: str, *, lifespan: float = DISCOVERY_LIFESPAN) -> None:
        self.issuer, self.lifespan = issuer, lifespan
        self._found: tuple[float, Endpoints] | None = None
        self._lock = threading.Lock()

    def endpoints(self) -> Endpoints:
        with self._lock:
            if self._found is None or time.monotonic() - self._found[0] > self.lifespan:
                self._found = (time.monotonic(), self._discover())
            return self._found[1]

    def _discover(self) -> Endpoints:
        try:
            config = discovery(self.issuer, TIMEOUT)
        except KeysUnavailable as exc:
            raise ProviderUnavailable(str(exc)) from None
        authorization, token = (config.get("authorization_endpoint"),
                                config.get("token_endpoint"))
        if not (self._usable(authorization) and self._usable(token)):
            raise ProviderUnavailable(f"{self.issuer}'s discovery document has no usable "
                                      "authorization or token endpoint")
        return Endpoints(authorization, token)

    def _usable(self, url: Any) -> TypeGuard[str]:
        """The rule every service applies to the issuer's endpoints (shared.auth.trusted)."""
        return isinstance(url, str) and trusted(url, self.issuer)

    def authorize_url(self, client_id: str, redirect_uri: str, state: str, pkce: Pkce) -> str:
        return with_query(self.endpoints().authorization, {
            "response_type": "code", "client_id": client_id, "redirect_uri": redirect_uri,
            "scope": "openid", "state": state, "code_challenge": pkce.challenge,
            "code_challenge_method": "S256"})

    def exchange(self, code: str, redirect_uri: str, client_id: str, verifier: str) -> str:
        """The access token the code is worth; ExchangeRefused or ProviderUnavailable."""
        form = urlencode({"grant_type": "authorization_code", "code": code,
                          "redirect_uri": redirect_uri, "client_id": client_id,
                          "code_verifier": verifier}).encode("ascii")
        req = urllib.request.Request(self.endpoints().token, data=form, method="POST", headers={
            "Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"})
        try:
            answer = _call(req)
        except urllib.error.HTTPError as exc:
            raise ExchangeRefused(_error_code(exc)) from None
        token = answer.get("access_token") if isinstance(answer, dict) else None
        if not isinstance(token, str):
            raise ProviderUnavailable("the token endpoint answered without an access_token")
        return token


def _error_code(exc: urllib.error.HTTPError) -> str:
    """The `error` of an RFC 6749 error answer (its description is not repeated: it is the
    provider's text, shown to nobody), or the status."""
    try:
        body = json.load(exc)
    except (OSError, ValueError):
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, str) and error.isascii() and error.isprintable():
        return error[:_ERROR_CODE]
    return f"HTTP {exc.code}"
