"""Who may call each route: every view declares a rule, and the gate refuses what it does not
allow. Default deny: a route without a rule answers 403 to everyone.

    @public                                  anyone, no token needed
    @allow(student=SELF, admin=ANY)          these roles, each with its reach
    @allow(student=SELF, acts_as="student_id")   ... and a SELF caller may act only as itself
    @machine(check)                          not a person's route: `check(request)` decides

A role's reach says which records it may touch: SELF its own (a student's student_id is their
token's `sub`), CREATED those it created (an instructor's assignments), ANY all of them. The
view reads the caller's reach with `current()` and narrows its query; a record outside it is a
404, so its existence is not revealed. A SELF caller naming another student in `acts_as` (the
path, the query or the JSON body) is a 403."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from flask import Flask, Request, Response, current_app, g, redirect, request

from shared.auth import KeysUnavailable, Principal, Unauthenticated, Verifier, bearer

log = logging.getLogger(__name__)

SELF, CREATED, ANY = "self", "created", "any"
_WIDTH = {SELF: 1, CREATED: 2, ANY: 3}
RULE = "school_access_rule"  # the attribute a view's rule is kept in
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
# The OpenAPI security scheme every protected operation names.
SCHEME = "bearerAuth"


@dataclass(frozen=True)
class Rule:
    grants: dict[str, str] = field(default_factory=dict)  # role -> reach
    public: bool = False
    acts_as: str | None = None  # the field naming the student a SELF caller acts for
    sign_in: str | None = None  # where an anonymous browser user is sent instead of a 401
    check: Callable[[Request], bool] | None = None  # a machine route's own credential check


def _declare(rule: Rule, docs: dict[str, Any]) -> Callable[[Callable[..., Any]], Any]:
    def decorate(view: Callable[..., Any]) -> Callable[..., Any]:
        setattr(view, RULE, rule)
        # flask-smorest merges `_apidoc["manual_doc"]` into the operation, as its Blueprint.doc
        # does; the route's security and its refusals are documented where they are declared.
        apidoc = dict(getattr(view, "_apidoc", {}))
        manual = dict(apidoc.get("manual_doc", {}))
        manual.update({k: v for k, v in docs.items() if k != "responses"})
        manual["responses"] = dict(manual.get("responses", {})) | docs.get("responses", {})
        apidoc["manual_doc"] = manual
        view._apidoc = apidoc  # type: ignore[attr-defined]
        return view
    return decorate


def _refusals(statuses: tuple[int, ...]) -> dict[str, str]:
    names = {401: "UNAUTHORIZED", 403: "FORBIDDEN", 404: "NOT_FOUND", 409: "CONFLICT",
             413: "REQUEST_ENTITY_TOO_LARGE", 422: "UNPROCESSABLE_ENTITY",
             503: "SERVICE_UNAVAILABLE"}
    return {str(status): names[status] for status in statuses}


def public(view: Callable[..., Any] | None = None, *, errors: tuple[int, ...] = ()) -> Any:
    """Anyone may call the route; it carries no security requirement. `@public`, or
    `@public(errors=(404,))` with the refusals it can answer."""
    declare = _declare(Rule(public=True), {"security": [], "responses": _refusals(errors)})
    return declare if view is None else declare(view)


def allow(*, acts_as: str | None = None, sign_in: str | None = None,
          errors: tuple[int, ...] = (), **grants: str) -> Callable[[Callable[..., Any]], Any]:
    """These roles (keyword: role=reach) may call the route; `errors` are the other refusals
    the route itself can answer (404, 409, 422...), documented beside 401, 403 and 503."""
    unknown = {reach for reach in grants.values() if reach not in _WIDTH}
    if not grants or unknown:
        raise ValueError(f"allow() needs role=SELF|CREATED|ANY, got {grants}")
    statuses = tuple(sorted({401, 403, 503, *errors}))
    return _declare(Rule(dict(grants), acts_as=acts_as, sign_in=sign_in),
                    {"security": [{SCHEME: []}], "responses": _refusals(statuses)})


def machine(check: Callable[[Request], bool], description: str
            ) -> Callable[[Callable[..., Any]], Any]:
    """A route for processes, not people: `check(request)` accepts their credential."""
    return _declare(Rule(check=check), {"description": description,
                                        "responses": _refusals((401,))})


@dataclass(frozen=True)
class Access:
    """The caller of this request and how far its rule reaches."""

    principal: Principal | None
    reach: str | None

    @property
    def actor(self) -> str | None:
        return self.principal.sub if self.principal else None

    @property
    def own(self) -> str | None:
        """The student a SELF caller is (to narrow a query by student_id); None for wider."""
        return self.principal.sub if self.principal and self.reach == SELF else None

    @property
    def creator(self) -> str | None:
        """The creator a CREATED caller is; None for a wider reach."""
        return self.principal.sub if self.principal and self.reach == CREATED else None


ANONYMOUS = Access(None, None)


def current() -> Access:
    """The request's Access, set by the gate before the view runs."""
    return getattr(g, "access", ANONYMOUS)


class Sessions(Protocol):
    """A browser sign-in session beside bearer tokens (the console's)."""

    def principal(self, request: Request) -> Principal | None: ...

    def csrf_ok(self, request: Request) -> bool: ...


class Refused(Exception):
    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status, self.detail, self.headers = status, detail, headers or {}


class Gate:
    """The before-request check of every route of an app."""

    def __init__(self, verifier: Verifier, sessions: Sessions | None = None) -> None:
        self.verifier, self.sessions = verifier, sessions

    def install(self, app: Flask, respond: Callable[[int, str], Response]) -> None:
        def check() -> Any:
            try:
                g.access = self.admit()
            except Refused as refused:
                reply = respond(refused.status, refused.detail)
                reply.headers.update(refused.headers)
                return reply
            except _SignIn as go:
                return redirect(go.url)
            return None
        app.before_request(check)

    def admit(self) -> Access:
        if request.routing_exception is not None or request.endpoint is None:
            return ANONYMOUS  # the router answers 404 or 405 itself
        rule = getattr(current_app.view_functions[request.endpoint], RULE, None)
        if rule is None:
            log.error("route %s declares no access rule: refused", request.endpoint,
                      extra={"outcome": "denied"})
            raise Refused(403, "This route declares no access rule, so nobody may call it.")
        if rule.public:
            return ANONYMOUS
        if rule.check is not None:
            if not rule.check(request):
                raise Refused(401, "This route accepts only its exporters' credential.")
            return ANONYMOUS
        access = Access(who := self.caller(rule), _reach(rule, who))
        _acting_for(rule, access)
        return access

    def caller(self, rule: Rule) -> Principal:
        header = request.headers.get("Authorization")
        if header is None and self.sessions is not None:
            principal = self.sessions.principal(request)
            if principal is not None:
                if request.method not in SAFE_METHODS and not self.sessions.csrf_ok(request):
                    raise Refused(403, "A change through a sign-in session needs the session's "
                                       "CSRF token (X-CSRF-Token).")
                return principal
            if rule.sign_in and request.method in SAFE_METHODS:
                raise _SignIn(rule.sign_in)
        try:
            return self.verifier.verify(bearer(header))
        except Unauthenticated as exc:
            error = "" if header is None else ' error="invalid_token"'
            raise Refused(401, str(exc), {"WWW-Authenticate": f"Bearer{error}"}) from None
        except KeysUnavailable as exc:
            log.warning("access tokens cannot be checked: %s", exc,
                        extra={"outcome": "keys_unavailable"})
            raise Refused(503, "The identity provider's keys cannot be fetched; retry later.",
                          {"Retry-After": "5"}) from None


class _SignIn(Exception):
    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.url = url


def _reach(rule: Rule, who: Principal) -> str:
    reaches = [rule.grants[role] for role in who.roles if role in rule.grants]
    if not reaches:
        needed = " or ".join(sorted(rule.grants))
        raise Refused(403, f"This route is for the role {needed}; the token has "
                           f"{', '.join(sorted(who.roles)) or 'no role'}.")
    return max(reaches, key=_WIDTH.__getitem__)


def _acting_for(rule: Rule, access: Access) -> None:
    """A SELF caller may name only itself as the student it acts for."""
    if rule.acts_as is None or access.own is None:
        return
    named = [request.view_args.get(rule.acts_as) if request.view_args else None,
             request.args.get(rule.acts_as)]
    body = request.get_json(silent=True) if request.is_json else None
    if isinstance(body, dict):
        named.append(body.get(rule.acts_as))
    if any(value is not None and value != access.own for value in named):
        raise Refused(403, f"A student may act only as themselves: {rule.acts_as} must be the "
                           "token's subject.")
