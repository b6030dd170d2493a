"""The shared web helpers on a small app: problem+json, correlation ids, health, docs
(DESIGN section 7)."""

from __future__ import annotations

import uuid
from typing import Any

from flask.testing import FlaskClient
from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate
from werkzeug.test import TestResponse

from shared.web import Problem, create_app

PROBLEM = "application/problem+json"


class ThingIn(Schema):
    name = fields.String(required=True, validate=validate.Length(max=200))


def ok_check() -> None:
    return None


def failing_check() -> None:
    raise ConnectionError("database unreachable")


def client(checks: dict[str, Any] | None = None) -> FlaskClient:
    bp = Blueprint("things", __name__)

    @bp.route("/things", methods=["POST"])
    @bp.arguments(ThingIn)
    @bp.response(201, ThingIn)
    def post(body: dict[str, Any]) -> Any:
        return body

    @bp.route("/conflict")
    def conflict() -> Any:
        raise Problem(409, "It is already there.")

    @bp.route("/boom")
    def boom() -> Any:
        raise RuntimeError("secret internals")

    return create_app("probe", [bp], checks or {"db": ok_check}).test_client()


def assert_problem(reply: TestResponse, status: int) -> dict[str, Any]:
    assert reply.status_code == status
    assert reply.mimetype == PROBLEM
    body: dict[str, Any] = reply.get_json(force=True)
    assert {"type", "title", "status", "detail"} <= set(body)
    assert body["status"] == status and body["title"] and body["detail"]
    return body


def test_healthz_is_ok() -> None:
    reply = client().get("/healthz")
    assert reply.status_code == 200 and reply.get_json() == {"status": "ok"}


def test_readyz_is_ok_when_every_check_passes() -> None:
    reply = client().get("/readyz")
    assert reply.status_code == 200 and reply.get_json()["checks"] == ["db"]


def test_readyz_is_503_naming_the_failed_check() -> None:
    reply = client({"db": failing_check, "queues": ok_check}).get("/readyz")
    assert reply.status_code == 503
    assert reply.get_json()["failed"] == {"db": "ConnectionError"}


def test_openapi_lists_the_routes() -> None:
    paths = client().get("/openapi.json").get_json()["paths"]
    assert {"/things", "/conflict", "/healthz", "/readyz"} <= set(paths)
    assert "post" in paths["/things"]


def test_swagger_ui_is_served_without_a_cdn() -> None:
    app = client()
    page = app.get("/docs")
    assert page.status_code == 200 and page.mimetype == "text/html"
    assert b"/docs/static/swagger-ui-bundle.js" in page.data
    script = app.get("/docs/static/swagger-ui-bundle.js")
    assert script.status_code == 200 and len(script.data) > 1000


def test_a_sent_correlation_id_is_echoed() -> None:
    reply = client().get("/healthz", headers={"X-Correlation-ID": "abc-123"})
    assert reply.headers["X-Correlation-ID"] == "abc-123"


def test_a_missing_correlation_id_is_made() -> None:
    made = client().get("/healthz").headers["X-Correlation-ID"]
    assert str(uuid.UUID(made)) == made


def test_errors_carry_the_correlation_id_too() -> None:
    reply = client().get("/nowhere", headers={"X-Correlation-ID": "abc-123"})
    assert reply.headers["X-Correlation-ID"] == "abc-123"


def test_a_body_that_is_not_json_is_400() -> None:
    reply = client().post("/things", data="name=x", content_type="text/plain")
    assert "JSON" in assert_problem(reply, 400)["detail"]


def test_invalid_json_sent_as_json_is_400() -> None:
    reply = client().post("/things", data="{oops", content_type="application/json")
    assert_problem(reply, 400)


def test_invalid_fields_are_422_keyed_by_field() -> None:
    body = assert_problem(client().post("/things", json={"name": "x" * 201, "extra": 1}), 422)
    assert set(body["errors"]) == {"name", "extra"}


def test_a_missing_field_is_422_keyed_by_field() -> None:
    body = assert_problem(client().post("/things", json={}), 422)
    assert "name" in body["errors"] and "json" not in body["errors"]


def test_a_valid_body_is_accepted() -> None:
    reply = client().post("/things", json={"name": "ok"})
    assert reply.status_code == 201 and reply.get_json() == {"name": "ok"}


def test_a_problem_keeps_its_status_and_detail() -> None:
    body = assert_problem(client().get("/conflict"), 409)
    assert body["detail"] == "It is already there." and body["title"] == "Conflict"


def test_an_unexpected_error_is_a_500_without_internals() -> None:
    reply = client().get("/boom")
    assert_problem(reply, 500)
    assert b"secret internals" not in reply.data and b"Traceback" not in reply.data


def test_an_unknown_route_is_a_404_problem() -> None:
    assert_problem(client().get("/nowhere"), 404)


def test_a_wrong_method_is_a_405_problem() -> None:
    assert_problem(client().delete("/things"), 405)


def test_a_405_says_which_methods_are_allowed() -> None:
    """BUG (shared/web.py ProblemApi.handle_http_exception): problem() drops the exception's
    headers, so the Allow header that RFC 9110 section 15.5.6 requires on a 405 is lost."""
    reply = client().delete("/things")
    assert "POST" in reply.headers.get("Allow", "")
