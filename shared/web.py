"""What every service's Flask app shares: problem+json errors (RFC 9457), X-Correlation-ID,
/healthz, /readyz, /openapi.json and Swagger UI at /docs, served without a CDN.

Hostile input ends here as a 4xx problem, never a 500: a body nested deeper than
MAX_JSON_DEPTH is a 400, an id in a path that no record can have is a 404, and an
X-Correlation-ID that could not travel as an SQS message attribute is replaced by a new id."""

from __future__ import annotations

import http
import json
import logging
import re
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import swagger_ui_bundle
from flask import Flask, Response, current_app, g, request, send_from_directory
from flask_smorest import Api, Blueprint
from flask_smorest.utils import prepare_response
from sqlalchemy.exc import DBAPIError
from werkzeug.exceptions import HTTPException
from werkzeug.routing import BaseConverter

from shared import logs
from shared.access import SCHEME, Gate, public
from shared.errors import Conflict, DomainError, Invalid, NotFound, TooLarge
from shared.schemas import ID_MAX, HealthSchema, NotReadySchema, ProblemSchema, ReadySchema

log = logging.getLogger(__name__)
PROBLEM = "application/problem+json"
ReadyCheck = Callable[[], None]  # raises when the dependency is not reachable
MAX_JSON_DEPTH = 32  # arrays and objects inside each other; no request body needs more
# An SQS or SNS message attribute value must be non-empty, and this one is also a log field and a
# String(100) column: printable ASCII only, at most 100 characters.
_CORRELATION_ID = re.compile(r"[\x20-\x7e]{1,100}")
CORRELATION_RULE = ("X-Correlation-ID: a value of 1 to 100 printable ASCII characters is kept "
                    "and echoed; anything else (missing, longer, control or non-ASCII "
                    "characters) is replaced by a new UUID, which is echoed instead.")


class Problem(Exception):
    """An error a client can act on; rendered as problem+json with its status. The web layer's
    own refusals; a command raises a shared.errors.DomainError instead."""

    def __init__(self, status: int, detail: str, errors: dict[str, Any] | None = None) -> None:
        super().__init__(detail)
        self.status, self.detail, self.errors = status, detail, errors


# The status of each kind of domain error; a service declares its own kinds beside these. The
# most specific class that an error is an instance of decides (TooLarge before Invalid).
DOMAIN_STATUSES: dict[type[DomainError], int] = {NotFound: 404, Conflict: 409, TooLarge: 413,
                                                 Invalid: 422}


def _status_of(error: DomainError, statuses: dict[type[DomainError], int]) -> int:
    for kind in type(error).__mro__:
        if kind in statuses:
            return statuses[kind]
    return 400


def problem(status: int, detail: str, errors: dict[str, Any] | None = None) -> Response:
    return Response(json.dumps(problem_body(status, detail, errors)), status=status,
                    mimetype=PROBLEM)


TITLES = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
          405: "Method Not Allowed", 409: "Conflict",
          413: "Content Too Large", 414: "URI Too Long", 415: "Unsupported Media Type",
          417: "Expectation Failed", 422: "Unprocessable Content",
          431: "Request Header Fields Too Large", 500: "Internal Server Error",
          501: "Not Implemented", 503: "Service Unavailable"}


def problem_body(status: int, detail: str, errors: dict[str, Any] | None = None
                 ) -> dict[str, Any]:
    """An RFC 9457 problem; shared with the gunicorn worker, which answers before Flask does."""
    body: dict[str, Any] = {"type": "about:blank", "title": TITLES.get(status, "Error"),
                            "status": status, "detail": detail}
    if errors is not None:
        body["errors"] = errors
    return body


class IdConverter(BaseConverter):
    """A record id in a path: 1 to 64 characters (the id columns' length), no control
    characters. Anything else cannot name a record, so the router answers 404 before a query
    would carry a NUL to PostgreSQL."""

    regex = rf"[^/\x00-\x1f\x7f]{{1,{ID_MAX}}}"


def _id_parameter(converter: BaseConverter) -> dict[str, Any]:
    return {"type": "string", "minLength": 1, "maxLength": ID_MAX}


_LOCATIONS = ("json", "query", "headers", "path", "form")


def _field_errors(messages: Any) -> dict[str, Any]:
    """webargs nests errors by location ({"json": {...}}); clients want them per field."""
    if isinstance(messages, dict):
        merged: dict[str, Any] = {}
        for location, errors in messages.items():
            if location in _LOCATIONS and isinstance(errors, dict):
                merged.update(errors)
            else:
                merged[location] = errors
        return merged
    return {"_schema": messages}


class ProblemApi(Api):  # type: ignore[misc]
    """flask-smorest's Api, with every error rendered and documented as problem+json."""

    ERROR_SCHEMA = ProblemSchema

    def _register_responses(self) -> None:
        """flask-smorest documents its error responses (one per status, and DEFAULT_ERROR, which
        every operation refers to) as application/json; ours are application/problem+json."""
        for status in http.HTTPStatus:
            response: dict[str, Any] = {"description": status.phrase}
            if status >= 400:
                response["schema"] = self.ERROR_SCHEMA
            prepare_response(response, self.spec, PROBLEM)
            self.spec.components.response(status.name, response, lazy=True)
        default = {"description": "An error, as problem+json", "schema": self.ERROR_SCHEMA}
        prepare_response(default, self.spec, PROBLEM)
        self.spec.components.response(self.DEFAULT_ERROR_RESPONSE_NAME, default, lazy=True)

    def handle_http_exception(self, error: HTTPException) -> Response:
        status = error.code or 500
        data = getattr(error, "data", {}) or {}
        if status == 422 and "messages" in data:
            return problem(422, "The request has invalid fields.",
                           _field_errors(data["messages"]))
        detail = data.get("message") or error.description or error.name
        return _with_headers(problem(status, str(detail)), error)


def _with_headers(response: Response, error: HTTPException) -> Response:
    """Keep the exception's own headers, such as Allow on a 405 (RFC 9110, 15.5.6)."""
    for name, value in error.get_headers():
        if name.lower() != "content-type":
            response.headers[name] = value
    return response


def correlation_id(header: str | None) -> str:
    """The client's X-Correlation-ID if it can travel as a message attribute, else a new id."""
    value = (header or "").strip()
    return value if _CORRELATION_ID.fullmatch(value) else str(uuid.uuid4())


def _correlation() -> None:
    g.correlation_id = correlation_id(request.headers.get("X-Correlation-ID"))
    g.log_token = logs.correlation_id.set(g.correlation_id)


RAW_BODY = "takes_raw_body"


def raw_body(view: Callable[..., Any]) -> Callable[..., Any]:
    """Mark a view that reads a body that is not JSON itself (the console's OTLP/HTTP intake,
    protobuf): `_require_json` lets it through."""
    setattr(view, RAW_BODY, True)
    return view


def _require_json() -> Response | None:
    """400 for a body that is not JSON, before webargs would call it missing (422), and for one
    nested too deeply: json.loads raises RecursionError (not a ValueError) near depth 1000, and
    anything that walks a deep body later could too."""
    if getattr(current_app.view_functions.get(request.endpoint or ""), RAW_BODY, False):
        return None  # before reading it: such a view may allow a larger body
    if request.method not in ("POST", "PUT", "PATCH") or not request.get_data():
        return None
    if not request.is_json:
        return problem(400, "The body must be JSON, sent as Content-Type: application/json.")
    try:
        body = json.loads(request.get_data())
    except ValueError as exc:
        return problem(400, f"The body is not valid JSON: {exc.__class__.__name__} at "
                            f"position {getattr(exc, 'pos', '?')}.")
    except RecursionError:
        return _too_deep()
    return _too_deep() if _depth(body) > MAX_JSON_DEPTH else None


def _too_deep() -> Response:
    return problem(400, f"The body nests arrays or objects more than {MAX_JSON_DEPTH} deep.")


def _depth(value: Any) -> int:
    """How many arrays and objects nest inside each other in a parsed JSON value (1 for
    `{"a": 1}`), counted without recursion."""
    deepest, pending = 0, [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, depth)
            children = item.values() if isinstance(item, dict) else item
            pending.extend((child, depth + 1) for child in children)
    return deepest


def _finish(response: Response) -> Response:
    response.headers["X-Correlation-ID"] = getattr(g, "correlation_id", "")
    token = g.pop("log_token", None)
    if token is not None:
        logs.correlation_id.reset(token)
    return response


def create_app(service: str, blueprints: Iterable[Blueprint], ready_checks: dict[str, ReadyCheck],
               *, gate: Gate, max_body_bytes: int = 1024 * 1024,
               errors: Mapping[type[DomainError], int] | None = None) -> Flask:
    """A service's Flask app with the platform's routes and error handling.

    Bodies over `max_body_bytes` are cut off by the server (Werkzeug answers 413 and closes the
    connection before reading the rest); the services' own limits sit well below it so that a
    merely too-large field still gets a proper 413 or 422 problem. A DomainError a command
    raises is answered with the status DOMAIN_STATUSES or the service's own `errors` give it.
    Every request passes `gate` (shared.access) before its view runs.
    """
    statuses = DOMAIN_STATUSES | dict(errors or {})
    app = Flask(service, static_folder=None)  # no implicit /static route without a rule
    app.config.update(
        API_TITLE=f"{service} service", API_VERSION="1", OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/", OPENAPI_JSON_PATH="openapi.json",
        OPENAPI_SWAGGER_UI_PATH="docs", OPENAPI_SWAGGER_UI_URL="/docs/static/",
        MAX_CONTENT_LENGTH=max_body_bytes, JSON_SORT_KEYS=False,
        API_SPEC_OPTIONS={"info": {"description": CORRELATION_RULE}},
    )
    app.url_map.converters["id"] = IdConverter
    api = ProblemApi(app)
    api.register_converter(IdConverter, _id_parameter)
    _documentation_is_public(app)
    api.spec.components.security_scheme(SCHEME, {
        "type": "http", "scheme": "bearer", "bearerFormat": "JWT",
        "description": "An access token of the school's identity provider (docs/security.md)."})
    app.before_request(_correlation)
    gate.install(app, problem)
    app.before_request(_require_json)
    app.after_request(_finish)
    app.register_error_handler(Problem, lambda e: problem(e.status, e.detail, e.errors))
    app.register_error_handler(DomainError, lambda e: problem(_status_of(e, statuses), e.detail,
                                                              e.errors))
    app.register_error_handler(Exception, _unexpected)
    api.register_blueprint(_platform(ready_checks))
    for blueprint in blueprints:
        api.register_blueprint(blueprint)
    app.add_url_rule("/docs/static/<path:name>", "swagger_static", public(
        lambda name: send_from_directory(swagger_ui_bundle.swagger_ui_path, name)))
    return app


def _documentation_is_public(app: Flask) -> None:
    """/openapi.json and /docs, which flask-smorest serves with bound methods that cannot carry
    a rule: each is wrapped in a function that can."""
    for endpoint, view in list(app.view_functions.items()):
        if endpoint.startswith("api-docs."):
            app.view_functions[endpoint] = public(
                lambda *args, _view=view, **kwargs: _view(*args, **kwargs))


def _unexpected(error: Exception) -> Response:
    if isinstance(error, HTTPException):  # raised outside flask-smorest's views (404, 405)
        return _with_headers(problem(error.code or 500, error.description or error.name), error)
    if isinstance(error, DBAPIError) and error.connection_invalidated:
        # The database dropped the connection (a restart, a failover, pg_terminate_backend);
        # the transaction rolled back, the pool reconnects, and the same request can be retried.
        log.warning("database connection lost: %s", error.orig, extra={"outcome": "db_lost"})
        response = problem(503, "The database connection was lost; retry the request.")
        response.headers["Retry-After"] = "1"
        return response
    log.exception("unhandled error", extra={"outcome": "error"})
    return problem(500, "An unexpected error occurred; it has been logged.")


def _platform(ready_checks: dict[str, ReadyCheck]) -> Blueprint:
    bp = Blueprint("platform", __name__, description="Liveness and readiness")

    @bp.route("/healthz")
    @public
    @bp.response(200, HealthSchema)
    def healthz() -> Any:
        """The process is alive."""
        return {"status": "ok"}

    @bp.route("/readyz")
    @public
    @bp.response(200, ReadySchema)
    @bp.alt_response(503, schema=NotReadySchema, content_type=PROBLEM,
                     description="A dependency is not reachable")
    def readyz() -> Any:
        """The service's database and queues are reachable."""
        failed = {}
        for name, check in ready_checks.items():
            try:
                check()
            except Exception as exc:  # reported, not raised: readiness is the answer
                failed[name] = type(exc).__name__
        if failed:
            body = problem_body(503, "Not ready: " + ", ".join(sorted(failed)) + " failed.")
            return Response(json.dumps(body | {"failed": failed}), status=503, mimetype=PROBLEM)
        return {"status": "ready", "checks": sorted(ready_checks)}

    return bp
