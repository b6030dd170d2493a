"""The shared web helpers on a small app: problem+json, correlation ids, health, docs."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from flask.testing import FlaskClient
from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate

from shared.web import Problem, create_app


class ThingIn(Schema):
    name = fields.String(required=True, validate=validate.Length(max=200))


def build(ready: bool = True) -> FlaskClient:
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

    def check() -> None:
        if not ready:
            raise ConnectionError("down")

    return create_app("probe", [bp], {"database": check}).test_client()


@pytest.fixture
def client() -> FlaskClient:
    return build()


def assert_problem(reply: Any, status: int) -> dict[str, Any]:
    assert reply.status_code == status
    assert reply.headers["Content-Type"] == "application/problem+json"
    body: dict[str, Any] = reply.get_json(force=True)
    assert {"type", "title", "status", "detail"} <= set(body) and body["status"] == status
    return body


def test_health_and_readiness() -> None:
    assert build().get("/healthz").status_code == 200
    assert build().get("/readyz").status_code == 200
    down = build(ready=False).get("/readyz")
    assert down.status_code == 503 and down.get_json()["failed"] == {"database": "ConnectionError"}


def test_openapi_and_docs_are_served_without_a_cdn(client: FlaskClient) -> None:
    assert "/things" in client.get("/openapi.json").get_json()["paths"]
    page = client.get("/docs")
    assert page.status_code == 200 and b"/docs/static/swagger-ui-bundle.js" in page.data
    assert client.get("/docs/static/swagger-ui-bundle.js").status_code == 200


def test_the_correlation_id_is_echoed_or_made(client: FlaskClient) -> None:
    assert client.get("/healthz", headers={"X-Correlation-ID": "abc"}).headers[
        "X-Correlation-ID"] == "abc"
    uuid.UUID(client.get("/healthz").headers["X-Correlation-ID"])


def test_a_body_that_is_not_json_is_400(client: FlaskClient) -> None:
    assert_problem(client.post("/things", data="name=x", content_type="text/plain"), 400)
    assert_problem(client.post("/things", data="{oops", content_type="application/json"), 400)


def test_invalid_fields_are_422_per_field(client: FlaskClient) -> None:
    body = assert_problem(client.post("/things", json={"name": "x" * 201, "extra": 1}), 422)
    assert set(body["errors"]) == {"name", "extra"}
    assert client.post("/things", json={"name": "ok"}).status_code == 201


def test_errors_are_problems_without_internals(client: FlaskClient) -> None:
    assert assert_problem(client.get("/conflict"), 409)["detail"] == "It is already there."
    body = assert_problem(client.get("/boom"), 500)
    assert "secret" not in str(body) and "Traceback" not in str(body)
    assert_problem(client.get("/nowhere"), 404)
    assert_problem(client.delete("/things"), 405)
