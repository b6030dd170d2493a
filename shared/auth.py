"""Who is calling: access tokens from the school's identity provider (Cognito on AWS, the local
issuer in development), checked once here for every route of every service.

A token is an RS256 JWT signed by a key of the issuer's JWKS. It is accepted only when its `iss`
is OIDC_ISSUER, its `token_use` is `access`, its `client_id` is one of OIDC_CLIENT_IDS and it has
not expired (60 s leeway). Cognito's access tokens carry no `aud`: `client_id` is the audience
check, and it is never skipped. Roles are the token's `cognito:groups`.

https://docs.aws.amazon.com/cognito/latest/developerguide/amazon-cognito-user-pools-using-the-access-token.html
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
import threading
import time
import urllib.request
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import jwt

log = logging.getLogger(__name__)

ROLES = ("student", "instructor", "admin", "operator")
ALGORITHM = "RS256"  # the only one: never a symmetric key, never `none`
LEEWAY = 60  # seconds of clock skew allowed on exp and iat
MAX_TOKEN = 8192  # characters; Cognito's access tokens are a few KB at most
# A JWS in compact form: three base64url parts. Anything else in the header is malformed.
JWS = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")
_BEARER = re.compile(rf"Bearer ({JWS.pattern})")
# A subject is a student's record id, so it is what a path can carry (shared.web.IdConverter):
# 1 to 64 characters, no '/' and no control characters. The one definition of it: the schemas,
# the CLI and the local issuer use this one.
SUBJECT = re.compile(r"[^/\x00-\x1f\x7f-\x9f]{1,64}")


class Unauthenticated(Exception):
    """No token, or one that is not valid: 401. The message says why without repeating it."""


class KeysUnavailable(Exception):
    """The issuer's discovery document or keys cannot be fetched: 503."""


@dataclass(frozen=True)
class Principal:
    """The caller a valid token names."""

    sub: str
    roles: frozenset[str]
    client_id: str
    email: str | None = None

    def has(self, role: str) -> bool:
        return role in self.roles


def bearer(header: str | None) -> str:
    """The token of an `Authorization: Bearer <jwt>` header; Unauthenticated for anything else
    (another scheme, an empty value, two tokens, junk, non-ASCII)."""
    if header is None or not header.strip():
        raise Unauthenticated("This route needs an access token: Authorization: Bearer <token>.")
    if len(header) > MAX_TOKEN + 7:
        raise Unauthenticated("The Authorization header is longer than any access token.")
    match = _BEARER.fullmatch(header.strip())
    if match is None:
        raise Unauthenticated("The Authorization header must be 'Bearer ' and one JWT.")
    return match.group(1)


def trusted(url: str, issuer: str) -> bool:
    """An endpoint of the issuer's (its keys, its sign-in and token endpoints) is called over
    HTTPS, or over plain HTTP only on the host of an issuer configured with plain HTTP (the
    local issuer): a discovery document cannot send us elsewhere in the clear."""
    endpoint, origin = urlsplit(url), urlsplit(issuer)
    return endpoint.scheme == "https" or (
        endpoint.scheme == origin.scheme == "http" and endpoint.netloc == origin.netloc)


def discovery(issuer: str, timeout: float) -> dict[str, Any]:
    """The issuer's OpenID Connect discovery document; KeysUnavailable when it cannot be
    fetched or names another issuer."""
    url = issuer.rstrip("/") + "/.well-known/openid-configuration"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as reply:  # noqa: S310 - an http(s) URL
            config = json.load(reply)
    except (OSError, ValueError) as exc:
        raise KeysUnavailable(f"cannot fetch {url}: {type(exc).__name__}") from None
    if not isinstance(config, dict) or config.get("issuer") != issuer:
        raise KeysUnavailable(f"{url} names another issuer")
    return config


class KeySet:
    """The issuer's signing keys, found through its discovery document and fetched with PyJWT's
    JWKS client: cached, refetched when a token names an unknown `kid`, but at most once every
    `refresh_every` seconds, so tokens with made-up key ids cannot make us hammer the issuer."""

    def __init__(self, issuer: str, *, timeout: float = 3.0, lifespan: float = 300.0,
                 refresh_every: float = 10.0) -> None:
        self.issuer, self.timeout = issuer, timeout
        self.lifespan, self.refresh_every = lifespan, refresh_every
        self._client: jwt.PyJWKClient | None = None
        self._refreshed = float("-inf")
        self._lock = threading.Lock()

    def _jwks(self) -> jwt.PyJWKClient:
        with self._lock:
            if self._client is None:
                uri = discovery(self.issuer, self.timeout).get("jwks_uri")
                if not isinstance(uri, str) or not trusted(uri, self.issuer):
                    raise KeysUnavailable("the discovery document has no usable jwks_uri")
                self._client = jwt.PyJWKClient(uri, cache_keys=False, cache_jwk_set=True,
                                               lifespan=int(self.lifespan),
                                               timeout=int(max(1, self.timeout)))
            return self._client

    def key(self, kid: str) -> jwt.PyJWK:
        client = self._jwks()
        found = self._find(client, kid, refresh=False)
        if found is None:
            with self._lock:
                due = time.monotonic() - self._refreshed >= self.refresh_every
                if due:
                    self._refreshed = time.monotonic()
            if due:
                found = self._find(client, kid, refresh=True)
        if found is None:
            raise Unauthenticated("The token is signed by a key the issuer does not publish.")
        return found

    @staticmethod
    def _find(client: jwt.PyJWKClient, kid: str, refresh: bool) -> jwt.PyJWK | None:
        try:
            keys = client.get_jwk_set(refresh=refresh).keys
        except jwt.PyJWKClientConnectionError:
            raise KeysUnavailable("the issuer's keys cannot be fetched") from None
        except jwt.PyJWKClientError:
            raise KeysUnavailable("the issuer published no usable keys") from None
        return next((key for key in keys if key.key_id == kid), None)


def _header(token: str) -> dict[str, Any]:
    """The JWS header, read without PyJWT's full parse of the token (which `_decode` does once,
    verifying it): the first part, base64url-decoded JSON."""
    head = token.split(".", 1)[0]
    try:
        header = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
    except (ValueError, TypeError):
        header = None
    if not isinstance(header, dict):
        raise Unauthenticated("The access token is not a well-formed JWT.")
    return header


class Verifier:
    """Checks an access token; `verify` returns its Principal or raises Unauthenticated (401)
    or KeysUnavailable (503).

    A token that passed is remembered (by its SHA-256, at most `remember` of them) until it
    expires or for `recheck` seconds, whichever is sooner: a client sends the same token with
    every request, and its signature need not be verified each time. After `recheck` seconds
    it is checked again in full, so a key the issuer no longer publishes stops being honoured
    as soon as the cached keys are refreshed."""

    def __init__(self, issuer: str, client_ids: Iterable[str], keys: KeySet | None = None, *,
                 remember: int = 10_000, recheck: float = 300.0) -> None:
        self.issuer = issuer
        self.client_ids = frozenset(client_ids)
        self.keys = keys or KeySet(issuer)
        self.remember, self.recheck = remember, recheck
        self._passed: OrderedDict[bytes, tuple[Principal, float]] = OrderedDict()
        self._lock = threading.Lock()

    def verify(self, token: str) -> Principal:
        digest = hashlib.sha256(token.encode()).digest()
        with self._lock:
            known = self._passed.get(digest)
        if known is not None and time.time() < known[1]:
            return known[0]
        principal, expires = self._check(token)
        with self._lock:
            self._passed[digest] = (principal, min(expires, time.time() + self.recheck))
            while len(self._passed) > self.remember:
                self._passed.popitem(last=False)  # the oldest first
        return principal

    def _check(self, token: str) -> tuple[Principal, float]:
        header = _header(token)
        if header.get("alg") != ALGORITHM:
            raise Unauthenticated(f"The access token must be signed with {ALGORITHM}.")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise Unauthenticated("The access token names no signing key (kid).")
        claims = self._decode(token, self.keys.key(kid))
        return self._principal(claims), float(claims["exp"])

    def _decode(self, token: str, key: jwt.PyJWK) -> dict[str, Any]:
        try:
            claims: dict[str, Any] = jwt.decode(
                token, key=key.key, algorithms=[ALGORITHM], issuer=self.issuer, leeway=LEEWAY,
                options={"require": ["exp", "iat", "iss", "sub", "token_use", "client_id"],
                         # Cognito access tokens have no aud; client_id is checked below.
                         "verify_aud": False})
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("The access token has expired.") from None
        except jwt.InvalidIssuerError:
            raise Unauthenticated("The access token is from another issuer.") from None
        except jwt.PyJWTError as exc:  # InvalidTokenError, or a key unfit for RS256
            raise Unauthenticated(f"The access token is not valid ({type(exc).__name__})."
                                  ) from None
        return claims

    def _principal(self, claims: dict[str, Any]) -> Principal:
        if claims.get("token_use") != "access":
            raise Unauthenticated("An access token is needed, not an ID token.")
        client_id = claims.get("client_id")
        if not isinstance(client_id, str) or client_id not in self.client_ids:
            raise Unauthenticated("The access token was issued to another client.")
        sub = claims.get("sub")
        if not isinstance(sub, str) or not SUBJECT.fullmatch(sub):
            raise Unauthenticated("The access token's subject is not a usable id.")
        groups = claims.get("cognito:groups") or []
        if not isinstance(groups, list):
            raise Unauthenticated("The access token's cognito:groups is not a list.")
        email = claims.get("email")
        return Principal(sub, frozenset(g for g in groups if g in ROLES), client_id,
                         email if isinstance(email, str) else None)


# The console's span intake accepts only this header, with the exporters' shared secret
# (SCHOOL_OTLP_TOKEN); every process sends it through OTEL_EXPORTER_OTLP_HEADERS.
OTLP_TOKEN_HEADER = "x-school-otlp-token"


def exporter_headers(token: str) -> str:
    """The OTEL_EXPORTER_OTLP_HEADERS value that carries the intake's credential."""
    return f"{OTLP_TOKEN_HEADER}={token}"
