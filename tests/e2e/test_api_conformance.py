"""Every service answers whatever Schemathesis sends it as its OpenAPI document says: no 5xx, a
documented status, the documented content type (problem+json for every error) and a body that
matches the documented schema.

The services run as real processes under gunicorn, on the session's LocalStack and a real database
(DB=postgres included), because gunicorn's own limits and PostgreSQL's refusals (NUL characters,
over-long values) are part of what is checked; an in-process Flask client would see neither."""

from __future__ import annotations

import uuid

import pytest

from deploy.local.client import Client, ProblemError
from shared.settings import SERVICES
from tests.support.conformance import Findings, run

pytestmark = pytest.mark.e2e

# Cases per operation and generation mode (positive, negative); 29 operations over five services.
EXAMPLES = 25


def test_every_service_conforms_to_its_openapi_document(school_stack) -> None:  # type: ignore[no-untyped-def]
    findings = Findings()
    for service in SERVICES:
        run(school_stack.urls[service], EXAMPLES, findings,
            {"Authorization": f"Bearer {school_stack.admin()}"})
    print(f"schemathesis: {findings.summary()}")
    assert not findings.failures, "\n\n".join(findings.failures)
    # and the run really ran: every operation, at least EXAMPLES cases each on average
    assert findings.operations >= 25 and findings.cases >= findings.operations * EXAMPLES


@pytest.fixture(scope="module")
def client(school_stack) -> Client:  # type: ignore[no-untyped-def]
    return Client(school_stack.urls, timeout=10, token=school_stack.admin())


@pytest.mark.parametrize(("path", "headers", "status"), [
    ("/healthz?q=" + "x" * 5000, {}, 414),
    ("/healthz", {"X-Padding": "x" * 20_000}, 431),
    ("/healthz", {f"X-Many-{n}": "x" for n in range(150)}, 431),
])
def test_gunicorn_limits_answer_in_problem_json(client: Client, path: str,
                                                headers: dict[str, str], status: int) -> None:
    reply = client.send("GET", "enrollment", path, headers=headers)
    assert reply.status_code == status
    assert reply.headers["Content-Type"] == "application/problem+json"
    assert reply.json()["status"] == status


# Each of these was once a 500 on PostgreSQL, before the hostile-input fixes; on SQLite most were
# a 500 too, or a 201 storing what PostgreSQL would refuse (a NUL, a four-character currency).
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
        client: Client, method: str, service: str, path: str, body: str | None,
        status: int) -> None:
    reply = client.send(method, service, path, data=body,
                        headers={"Content-Type": "application/json"} if body else {})
    assert reply.status_code == status, reply.text
    assert reply.headers["Content-Type"] == "application/problem+json"


def test_an_essay_with_a_nul_character_is_422(client: Client) -> None:
    task = client.create_assignment(course_id="c1", title="Essay", max_score=10)["id"]
    with pytest.raises(ProblemError) as refused:
        client.submit(task, "s1", "an essay\u0000")
    assert refused.value.status == 422 and "content" in refused.value.body["errors"]


def test_a_correlation_id_that_cannot_be_a_message_attribute_is_replaced(
        client: Client) -> None:
    reply = client.send("GET", "analytics", "/healthz",
                        headers={"X-Correlation-ID": "caf\u00e9".encode()})
    made = reply.headers["X-Correlation-ID"]
    assert str(uuid.UUID(made)) == made
