"""The console's browser sign-in: the authorization-code flow with PKCE against the school's
identity provider, ending in a server-side session (services/console/sessions.py) for an
operator, and nobody else.

    GET  /login          to the provider's sign-in page, with a new state and PKCE challenge
    GET  /auth/callback  the code exchanged for an access token, checked, a session made
    POST /logout         the session ended (X-CSRF-Token, like every change through a session)
    GET  /api/session    who is signed in, and the CSRF token the page sends back

Cookies are SameSite=Lax, not Strict: the provider sends the browser back to /auth/callback
from its own site (Cognito's hosted UI), a cross-site navigation on which a Strict cookie is not
sent, so the pre-login cookie would be missing there; and Chrome treats the redirect to `/`
that follows as cross-site too, so a Strict session cookie would not reach `/` and the page
would send the operator back to /login. Lax cookies travel on top-level GETs only, and nothing
changes on a GET: every POST needs the X-CSRF-Token header, which another site cannot set.
https://developer.mozilla.org/en-US/docs/Web/HTTP/Headers/Set-Cookie#samesitesamesite-value
"""

from __future__ import annotations

import hmac
import logging
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import jwt
from flask import redirect, request
from flask_smorest import Blueprint
from markupsafe import escape
from marshmallow import Schema, fields
from werkzeug.wrappers import Response

from services.console.oidc import ExchangeRefused, Pkce, Provider, ProviderUnavailable
from services.console.sessions import COOKIE, Expiring, Session, Sessions, cookie_value
from shared.access import ANY, allow, current, public
from shared.auth import KeysUnavailable, Principal, Unauthenticated, Verifier
from shared.settings import ConfigError, Settings
from shared.web import PROBLEM, TITLES, problem

log = logging.getLogger(__name__)

ROLE = "operator"
PENDING_COOKIE, PENDING_PATH = "console_signin", "/auth/"
PENDING_LIFETIME = 600.0  # seconds a person has to sign in at the provider
# A callback URL holds a code: neither cached nor sent on as a Referer from a refusal's link.
NO_STORE = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}
_PAGE = ("<!doctype html><html lang=en><meta charset=utf-8><title>{title}: school console"
         "</title><h1>{title}</h1><p id=detail>{detail}</p><p><a href=/login>Sign in</a></p>")


class SignInError(Exception):
    """A sign-in that cannot go on: answered with `status`, as a page to a browser and as
    problem+json to anything else. The detail names no code and no token."""

    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status, self.detail, self.headers = status, detail, headers or {}


@dataclass(frozen=True)
class Pending:
    """A sign-in under way: what the callback needs, bound to the browser that started it."""

    verifier: str
    binding: str  # the pre-login cookie's value: a state alone could be replayed elsewhere
    redirect_uri: str


class SignIn:
    """The sign-in's parts: the provider, the verifier of its tokens, the sessions."""

    def __init__(self, settings: Settings, provider: Provider, verifier: Verifier,
                 sessions: Sessions) -> None:
        self.settings, self.provider, self.verifier = settings, provider, verifier
        self.sessions = sessions
        self.pending: Expiring[Pending] = Expiring(limit=10_000)

    @classmethod
    def of(cls, settings: Settings) -> SignIn:
        if not settings.oidc_issuer or not settings.oidc_client_ids:
            raise ConfigError("OIDC_ISSUER and OIDC_CLIENT_IDS must be set: the console signs "
                              "its operators in with the school's identity provider")
        if settings.console_client_id not in settings.oidc_client_ids:
            log.warning("CONSOLE_CLIENT_ID %s is not among OIDC_CLIENT_IDS: every sign-in to "
                        "the console will be refused", settings.console_client_id,
                        extra={"outcome": "misconfigured"})
        return cls(settings, Provider(settings.oidc_issuer),
                   Verifier(settings.oidc_issuer, settings.oidc_client_ids), Sessions())

    def start(self) -> Response:
        """To the provider's authorization endpoint; the state and verifier stay here."""
        pkce, state = Pkce.new(), secrets.token_urlsafe(32)
        binding = cookie_value(request, PENDING_COOKIE) or secrets.token_urlsafe(32)
        redirect_uri = f"{request.host_url}auth/callback"
        try:
            url = self.provider.authorize_url(self.settings.console_client_id, redirect_uri,
                                              state, pkce)
        except ProviderUnavailable as exc:
            raise _unavailable(exc) from None
        self.pending.put(state, Pending(pkce.verifier, binding, redirect_uri),
                         time.time() + PENDING_LIFETIME)
        response = redirect(url, 302)
        response.headers.update(NO_STORE)
        _cookie(response, PENDING_COOKIE, binding, PENDING_LIFETIME, PENDING_PATH)
        return response

    def finish(self) -> Response:
        """The provider's answer: an operator gets a session and goes to the page."""
        pending = self.pending.take(request.args.get("state", ""))  # spent whatever follows
        if error := request.args.get("error"):
            code = "".join(c for c in error[:64] if c.isascii() and (c.isalnum() or c in "_-"))
            raise SignInError(401, f"The identity provider did not sign you in ({code}).")
        binding = cookie_value(request, PENDING_COOKIE)
        if pending is None or binding is None or not hmac.compare_digest(binding,
                                                                         pending.binding):
            raise SignInError(400, "This sign-in was not started in this browser, or it took "
                                   "too long; sign in again.")
        principal, expires_at = self._principal(request.args.get("code", ""), pending)
        if not principal.has(ROLE):
            log.info("%s signed in without the operator role: refused", principal.sub,
                     extra={"outcome": "denied"})
            raise SignInError(403, f"{principal.sub} is not an operator: the console is for "
                                   "the operator role. Sign in as an operator.")
        session_id, session = self.sessions.create(principal, expires_at)
        log.info("%s signed in to the console", principal.sub, extra={"outcome": "signed_in"})
        response = redirect("/", 303)
        response.headers.update(NO_STORE)
        _cookie(response, COOKIE, session_id, session.expires_at - time.time(), "/")
        _forget_pending(response)
        return response

    def _principal(self, code: str, pending: Pending) -> tuple[Principal, float]:
        """Who the code is worth, and when their access token expires."""
        if not code:
            raise SignInError(400, "The identity provider sent no code back; sign in again.")
        try:
            token = self.provider.exchange(code, pending.redirect_uri,
                                           self.settings.console_client_id, pending.verifier)
            principal = self.verifier.verify(token)
        except ExchangeRefused as exc:
            raise SignInError(400, f"The identity provider did not accept the sign-in "
                                   f"({exc.error}); sign in again.") from None
        except (ProviderUnavailable, KeysUnavailable) as exc:
            raise _unavailable(exc) from None
        except Unauthenticated as exc:
            raise SignInError(401, f"The identity provider's token was refused: {exc}") from None
        if principal.client_id != self.settings.console_client_id:
            raise SignInError(401, "The access token was issued to another client.")
        # verified just above: only its expiry is read here
        claims = jwt.decode(token, options={"verify_signature": False})
        return principal, float(claims["exp"])

    def logout(self) -> Response:
        """End the session the cookie names (a change: it needs the CSRF token)."""
        if self.sessions.session(request) is not None and not self.sessions.csrf_ok(request):
            raise SignInError(403, "Signing out needs the session's CSRF token (X-CSRF-Token).")
        self.sessions.end(request)
        response = Response(status=204, headers=NO_STORE)
        response.delete_cookie(COOKIE, path="/", secure=request.is_secure, httponly=True,
                               samesite="Lax")
        return response


def _unavailable(exc: Exception) -> SignInError:
    log.warning("sign-in: the identity provider cannot be used: %s", exc,
                extra={"outcome": "provider_unavailable"})
    return SignInError(503, "The identity provider cannot be reached; retry in a moment.",
                       {"Retry-After": "5"})


def _cookie(response: Response, name: str, value: str, max_age: float, path: str) -> None:
    response.set_cookie(name, value, max_age=max(0, int(max_age)), path=path,
                        secure=request.is_secure, httponly=True, samesite="Lax")


def _forget_pending(response: Response) -> None:
    response.delete_cookie(PENDING_COOKIE, path=PENDING_PATH, secure=request.is_secure,
                           httponly=True, samesite="Lax")


def refusal(error: SignInError) -> Response:
    """A page for a person's browser, problem+json for a program."""
    if request.accept_mimetypes.best_match([PROBLEM, "text/html"]) == "text/html":
        page = _PAGE.format(title=TITLES.get(error.status, "Error"), detail=escape(error.detail))
        response = Response(page, status=error.status, mimetype="text/html")
    else:
        response = problem(error.status, error.detail)
    response.headers.update(NO_STORE | error.headers)
    if request.path.startswith(PENDING_PATH):
        _forget_pending(response)
    return response


class SessionOut(Schema):
    sub = fields.String()
    roles = fields.List(fields.String())
    via = fields.String(metadata={"description": "session (signed in) or bearer (a token)"})
    csrf_token = fields.String(allow_none=True, metadata={
        "description": "sent back as X-CSRF-Token with every POST through the session"})
    expires_at = fields.DateTime(allow_none=True)


def _described(principal: Principal, session: Session | None) -> dict[str, Any]:
    return {"sub": principal.sub, "roles": sorted(principal.roles),
            "via": "session" if session else "bearer",
            "csrf_token": session.csrf_token if session else None,
            "expires_at": datetime.fromtimestamp(session.expires_at, UTC) if session else None}


def routes(signin: SignIn) -> Blueprint:
    blp = Blueprint("signin", __name__, description="Signing in to the console")
    blp.register_error_handler(SignInError, refusal)

    @blp.route("/login")
    @public
    @blp.doc(responses={302: {"description": "To the identity provider's sign-in page"},
                        503: "SERVICE_UNAVAILABLE"})
    def login() -> Response:
        """Sign in: to the identity provider, with a new state and PKCE challenge."""
        return signin.start()

    @blp.route("/auth/callback")
    @public
    @blp.doc(responses={303: {"description": "Signed in: to the console's page"},
                        # a sign-in not started here, expired or refused; a token that is not
                        # valid; someone without the operator role; no provider to ask
                        400: "BAD_REQUEST", 401: "UNAUTHORIZED", 403: "FORBIDDEN",
                        503: "SERVICE_UNAVAILABLE"})
    def callback() -> Response:
        """Where the identity provider sends the browser back with a code."""
        return signin.finish()

    @blp.route("/logout", methods=["POST"])
    @public
    @blp.doc(responses={204: {"description": "Signed out"},
                        403: "FORBIDDEN"})  # a session without its X-CSRF-Token
    def logout() -> Response:
        """End the sign-in session."""
        return signin.logout()

    @blp.route("/api/session")
    @allow(operator=ANY)
    @blp.response(200, SessionOut)
    def whoami() -> Any:
        """Who is calling, and the session's CSRF token when it is a session."""
        principal = current().principal
        if principal is None:  # not reached: the gate admits only an operator here
            raise SignInError(401, "Sign in first.")
        session = None if "Authorization" in request.headers else signin.sessions.session(
            request)
        return _described(principal, session), 200, NO_STORE

    return blp
