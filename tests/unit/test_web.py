"""The shared web helpers on a small app: problem+json, correlation ids, health, docs."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from flask.testing import FlaskClient
from flask_smorest import Blueprint
from gunicorn.http import errors
from marshmallow import Schema
from sqlalchemy.exc import OperationalError
from werkzeug.test import TestResponse

from shared.access import public
from shared.schemas import Name
from shared.serve import refusal
from shared.web import MAX_JSON_DEPTH, Problem, create_app
from tests.support.identity import gate

PROBLEM = "application/problem+json"


class ThingIn(Schema):
    name = Name()


def ok_check() -> None:
    return None


def failing_check() -> None:
    raise ConnectionError("database unreachable")


def client(checks: dict[str, Any] | None = None) -> FlaskClient:
    bp = Blueprint("things", __name__)

    @bp.route("/things", methods=["POST"])
    @public
    @bp.arguments(ThingIn)
    @bp.response(201, ThingIn)
    def post(body: dict[str, Any]) -> Any:
        return body

    @bp.route("/things/<id:thing_id>")
    @public
    def get(thing_id: str) -> Any:
        return {"id": thing_id}

    @bp.route("/conflict")
    @public
    def conflict() -> Any:
        raise Problem(409, "It is already there.")

    @bp.route("/boom")
    @public
    def boom() -> Any:
        raise RuntimeError("secret internals")

    @bp.route("/db-lost")
    @public
    def db_lost() -> Any:
        raise OperationalError("SELECT 1", {}, ConnectionError("terminated by administrator"),
                               connection_invalidated=True)

    return create_app("probe", [bp], checks or {"db": ok_check}, gate=gate()).test_client()


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


# --- hostile input: a 4xx problem, never a 500 ----------------------------------------------------

def nested(depth: int) -> str:
    """A body whose name is a value nested `depth` levels deep (the object itself is level 1)."""
    return '{"name": ' + "[" * (depth - 1) + "]" * (depth - 1) + "}"


def test_json_nested_beyond_the_recursion_limit_is_400_not_500() -> None:
    reply = client().post("/things", data="[" * 100_000 + "]" * 100_000,
                          content_type="application/json")
    assert "nests" in assert_problem(reply, 400)["detail"]


def test_json_nested_past_the_depth_limit_is_400() -> None:
    reply = client().post("/things", data=nested(MAX_JSON_DEPTH + 1),
                          content_type="application/json")
    assert_problem(reply, 400)


def test_json_nested_within_the_depth_limit_reaches_validation() -> None:
    reply = client().post("/things", data=nested(MAX_JSON_DEPTH),
                          content_type="application/json")
    assert "name" in assert_problem(reply, 422)["errors"]


@pytest.mark.parametrize("text", [r"Ada\u0000Lovelace", r"Ada\ud800"])
def test_text_a_database_cannot_store_is_422(text: str) -> None:
    """NUL (PostgreSQL refuses it) and a lone surrogate (no encoding exists) in a text field."""
    reply = client().post("/things", data='{"name": "' + text + '"}',
                          content_type="application/json")
    assert "NUL" in assert_problem(reply, 422)["errors"]["name"][0]


def test_a_blank_name_is_422_but_a_leading_space_is_not() -> None:
    assert "name" in assert_problem(client().post("/things", json={"name": " \t"}), 422)["errors"]
    assert client().post("/things", json={"name": " Ada"}).status_code == 201


@pytest.mark.parametrize("thing_id", ["x" * 65, "a%00b", "a%0Ab"])
def test_an_id_no_record_can_have_is_a_404_problem(thing_id: str) -> None:
    assert_problem(client().get(f"/things/{thing_id}"), 404)


def test_an_id_as_long_as_the_id_column_is_routed() -> None:
    reply = client().get("/things/" + "é" * 64)
    assert reply.status_code == 200 and reply.get_json() == {"id": "é" * 64}


@pytest.mark.parametrize("sent", ["x" * 101, "caf\u00e9", "a\tb", "a\x7fb", "   "])
def test_a_correlation_id_that_cannot_be_a_message_attribute_is_replaced(sent: str) -> None:
    made = client().get("/healthz", headers={"X-Correlation-ID": sent}).headers["X-Correlation-ID"]
    assert str(uuid.UUID(made)) == made


def test_a_printable_ascii_correlation_id_of_100_characters_is_kept() -> None:
    sent = "req 42/" + "~" * 93
    assert client().get("/healthz", headers={"X-Correlation-ID": sent}
                        ).headers["X-Correlation-ID"] == sent


def test_readyz_503_is_a_problem_naming_the_failed_check() -> None:
    body = assert_problem(client({"db": failing_check}).get("/readyz"), 503)
    assert body["failed"] == {"db": "ConnectionError"} and "db" in body["detail"]


def test_openapi_documents_errors_as_problem_json() -> None:
    spec = client().get("/openapi.json").get_json()
    for name in ("DEFAULT_ERROR", "UNPROCESSABLE_ENTITY"):
        assert set(spec["components"]["responses"][name]["content"]) == {PROBLEM}
    assert {"type", "title", "status", "detail"} <= set(
        spec["components"]["schemas"]["Problem"]["required"])


def test_openapi_documents_readyz_200_and_503() -> None:
    responses = client().get("/openapi.json").get_json()["paths"]["/readyz"]["get"]["responses"]
    assert "application/json" in responses["200"]["content"]
    assert PROBLEM in responses["503"]["content"]


def test_openapi_bounds_path_ids_and_states_the_correlation_rule() -> None:
    spec = client().get("/openapi.json").get_json()
    parameter = spec["paths"]["/things/{thing_id}"]["parameters"][0]
    assert parameter["schema"]["maxLength"] == 64
    assert "X-Correlation-ID" in spec["info"]["description"]


@pytest.mark.parametrize(("error", "status"), [
    (errors.LimitRequestLine(5000, 4094), 414),
    (errors.LimitRequestHeaders("limit request headers fields size"), 431),
    (errors.InvalidRequestLine("GET"), 400),
    (errors.InvalidHeader("X-Bad"), 400),
])
def test_a_request_gunicorn_refuses_is_answered_in_problem_json(error: Exception,
                                                                status: int) -> None:
    head, _, body = refusal(error).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    assert lines[0].startswith(f"HTTP/1.1 {status} ")
    assert f"Content-Type: {PROBLEM}" in lines and f"Content-Length: {len(body)}" in lines
    problem = json.loads(body)
    assert problem["status"] == status and problem["title"] and problem["detail"]


def test_a_lost_database_connection_is_a_503_to_retry_not_a_500() -> None:
    """A connection the database dropped (pg_terminate_backend in make chaos) rolled the request
    back; the client may retry it, so say so."""
    reply = client().get("/db-lost")
    body = assert_problem(reply, 503)
    assert reply.headers["Retry-After"] == "1"
    assert "terminated" not in json.dumps(body)  # no internals sent back
