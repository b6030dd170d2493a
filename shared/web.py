"""What every service's Flask app shares: problem+json errors (RFC 9457), X-Correlation-ID,
/healthz, /readyz, /openapi.json and Swagger UI at /docs, served without a CDN."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import swagger_ui_bundle
from flask import Flask, Response, current_app, g, jsonify, request, send_from_directory
from flask_smorest import Api, Blueprint
from werkzeug.exceptions import HTTPException

from shared import logs

if TYPE_CHECKING:
    from sqlalchemy import Table

    from shared.runtime import Runtime
    from shared.settings import Settings

log = logging.getLogger(__name__)
PROBLEM = "application/problem+json"
ReadyCheck = Callable[[], None]  # raises when the dependency is not reachable


class Problem(Exception):
    """An error a client can act on; rendered as problem+json with its status."""

    def __init__(self, status: int, detail: str, errors: dict[str, Any] | None = None) -> None:
        super().__init__(detail)
        self.status, self.detail, self.errors = status, detail, errors


def problem(status: int, detail: str, errors: dict[str, Any] | None = None) -> Response:
    titles = {400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
              409: "Conflict", 413: "Content Too Large", 415: "Unsupported Media Type",
              422: "Unprocessable Content", 500: "Internal Server Error",
              503: "Service Unavailable"}
    body: dict[str, Any] = {"type": "about:blank", "title": titles.get(status, "Error"),
                            "status": status, "detail": detail}
    if errors is not None:
        body["errors"] = errors
    response = Response(json.dumps(body), status=status, mimetype=PROBLEM)
    return response


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


def _correlation() -> None:
    header = request.headers.get("X-Correlation-ID", "").strip()
    g.correlation_id = header[:100] if header else str(uuid.uuid4())
    g.log_token = logs.correlation_id.set(g.correlation_id)


def _require_json() -> Response | None:
    """400 for a body that is not JSON, before webargs would call it missing (422)."""
    if request.method not in ("POST", "PUT", "PATCH") or not request.get_data():
        return None
    if not request.is_json:
        return problem(400, "The body must be JSON, sent as Content-Type: application/json.")
    try:
        json.loads(request.get_data())
    except ValueError as exc:
        return problem(400, f"The body is not valid JSON: {exc.__class__.__name__} at "
                            f"position {getattr(exc, 'pos', '?')}.")
    return None


def _finish(response: Response) -> Response:
    response.headers["X-Correlation-ID"] = getattr(g, "correlation_id", "")
    token = g.pop("log_token", None)
    if token is not None:
        logs.correlation_id.reset(token)
    return response


def create_app(service: str, blueprints: Iterable[Blueprint], ready_checks: dict[str, ReadyCheck],
               *, max_body_bytes: int = 1024 * 1024) -> Flask:
    """A service's Flask app with the platform's routes and error handling.

    Bodies over `max_body_bytes` are cut off by the server (Werkzeug answers 413 and closes the
    connection before reading the rest); the services' own limits sit well below it so that a
    merely too-large field still gets a proper 413 or 422 problem.
    """
    app = Flask(service)
    app.config.update(
        API_TITLE=f"{service} service", API_VERSION="1", OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/", OPENAPI_JSON_PATH="openapi.json",
        OPENAPI_SWAGGER_UI_PATH="docs", OPENAPI_SWAGGER_UI_URL="/docs/static/",
        MAX_CONTENT_LENGTH=max_body_bytes, JSON_SORT_KEYS=False,
    )
    api = ProblemApi(app)
    app.before_request(_correlation)
    app.before_request(_require_json)
    app.after_request(_finish)
    app.register_error_handler(Problem, lambda e: problem(e.status, e.detail, e.errors))
    app.register_error_handler(Exception, _unexpected)
    api.register_blueprint(_platform(ready_checks))
    for blueprint in blueprints:
        api.register_blueprint(blueprint)
    app.add_url_rule("/docs/static/<path:name>", "swagger_static",
                     lambda name: send_from_directory(swagger_ui_bundle.swagger_ui_path, name))
    return app


def service_app(service: str, blueprints: Iterable[Blueprint], settings: Settings, *,
                outbox: Table | None = None, inbox: Table | None = None) -> Flask:
    """A service's API as its app.py builds it: logging configured, its Runtime (database,
    outbox, AWS clients) kept in `app.extensions["runtime"]`, and /readyz checking that runtime."""
    from shared.runtime import Runtime
    logs.configure(service, settings.log_level)
    runtime = Runtime.build(service, outbox=outbox, inbox=inbox, settings=settings)
    app = create_app(service, blueprints, runtime.ready_checks())
    app.extensions["runtime"] = runtime
    return app


def current_runtime() -> Runtime:
    """The Runtime the service's create_app() built, for the request being handled."""
    runtime: Runtime = current_app.extensions["runtime"]
    return runtime


def _unexpected(error: Exception) -> Response:
    if isinstance(error, HTTPException):  # raised outside flask-smorest's views (404, 405)
        return _with_headers(problem(error.code or 500, error.description or error.name), error)
    log.exception("unhandled error", extra={"outcome": "error"})
    return problem(500, "An unexpected error occurred; it has been logged.")


def _platform(ready_checks: dict[str, ReadyCheck]) -> Blueprint:
    bp = Blueprint("platform", __name__, description="Liveness and readiness")

    @bp.route("/healthz")
    def healthz() -> Any:
        """The process is alive."""
        return jsonify(status="ok")

    @bp.route("/readyz")
    def readyz() -> Any:
        """The service's database and queues are reachable."""
        failed = {}
        for name, check in ready_checks.items():
            try:
                check()
            except Exception as exc:  # reported, not raised: readiness is the answer
                failed[name] = type(exc).__name__
        if failed:
            body = {"status": "unavailable", "failed": failed}
            return Response(json.dumps(body), status=503, mimetype="application/json")
        return jsonify(status="ready", checks=sorted(ready_checks))

    return bp
