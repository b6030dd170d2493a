"""Every service answers whatever Schemathesis sends it as its OpenAPI document says: no 5xx, a
documented status, the documented content type (problem+json for every error) and a body that
matches the documented schema (issue 12, defect 4).

The services run as real processes under gunicorn, on the session's LocalStack and a real database
(DB=postgres included), because gunicorn's own limits and PostgreSQL's refusals (NUL characters,
over-long values) are part of what is checked; an in-process Flask client would see neither."""

from __future__ import annotations

import uuid

import pytest
import requests

from shared.settings import SERVICES
from tests.support.conformance import Findings, run

pytestmark = pytest.mark.e2e

# Cases per operation and generation mode (positive, negative); 29 operations over five services.
EXAMPLES = 25


def test_every_service_conforms_to_its_openapi_document(school_stack) -> None:  # type: ignore[no-untyped-def]
    findings = Findings()
    for service in SERVICES:
        run(school_stack.urls[service], EXAMPLES, findings)
    print(f"schemathesis: {findings.summary()}")
    assert not findings.failures, "\n\n".join(findings.failures)
    # and the run really ran: every operation, at least EXAMPLES cases each on average
    assert findings.operations >= 25 and findings.cases >= findings.operations * EXAMPLES


@pytest.mark.parametrize(("path", "headers", "status"), [
    ("/healthz?q=" + "x" * 5000, {}, 414),
    ("/healthz", {"X-Padding": "x" * 10_000}, 431),
    ("/healthz", {f"X-Many-{n}": "x" for n in range(150)}, 431),
])
def test_gunicorn_limits_answer_in_problem_json(school_stack, path: str,  # type: ignore[no-untyped-def]
                                                headers: dict[str, str], status: int) -> None:
    reply = requests.get(school_stack.urls["enrollment"] + path, headers=headers, timeout=10)
    assert reply.status_code == status
    assert reply.headers["Content-Type"] == "application/problem+json"
    assert reply.json()["status"] == status


# Each of these was a 500 on PostgreSQL before issue 12's fix; on SQLite most were a 500 too, or a
# 201 storing what PostgreSQL would refuse (a NUL, a four-character currency).
HOSTILE = [
    ("POST", "enrollment", "/students", '{"name": "Ada\\u0000", "email": "ada@example.com"}', 422),
    ("POST", "enrollment", "/students", '{"name": "Ada\\ud800", "email": "ada@example.com"}', 422),
    ("POST", "enrollment", "/courses",
     '{"title": "T", "price_cents": 1, "currency": "USD\\n", "capacity": 1}', 422),
    ("POST", "assignment", "/assignments", "[" * 100_000 + "]" * 100_000, 400),
    ("POST", "assignment", "/assignments", '{"course_id": "c", "title": "T", "max_score": 1, '
     '"due_at": "0001-01-01T00:00:00+05:00"}', 422),
    ("PUT", "assignment", "/simulator/grader", '{"student_ids": ["\\u0000"]}', 422),
    ("GET", "enrollment", "/students/a%00b", None, 404),
    ("GET", "payment", "/payments?enrollment_id=%00", None, 422),
]


@pytest.mark.parametrize(("method", "service", "path", "body", "status"), HOSTILE)
def test_hostile_input_is_a_client_error_in_problem_json(
        school_stack, method: str, service: str, path: str,  # type: ignore[no-untyped-def]
        body: str | None, status: int) -> None:
    reply = requests.request(method, school_stack.urls[service] + path, data=body, timeout=10,
                             headers={"Content-Type": "application/json"} if body else {})
    assert reply.status_code == status, reply.text
    assert reply.headers["Content-Type"] == "application/problem+json"


def test_an_essay_with_a_nul_character_is_422(school_stack) -> None:  # type: ignore[no-untyped-def]
    url = school_stack.urls["assignment"]
    task = requests.post(f"{url}/assignments", timeout=10, json={
        "course_id": "c1", "title": "Essay", "max_score": 10}).json()["id"]
    reply = requests.post(f"{url}/assignments/{task}/submissions", timeout=10,
                          json={"student_id": "s1", "content": "an essay\u0000"})
    assert reply.status_code == 422 and "content" in reply.json()["errors"]


def test_a_correlation_id_that_cannot_be_a_message_attribute_is_replaced(
        school_stack) -> None:  # type: ignore[no-untyped-def]
    reply = requests.get(school_stack.urls["analytics"] + "/healthz", timeout=10,
                         headers={"X-Correlation-ID": "caf\u00e9".encode()})
    made = reply.headers["X-Correlation-ID"]
    assert str(uuid.UUID(made)) == made
