"""The enrollment saga end to end: real processes, HTTP only, LocalStack."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from deploy.local.client import ProblemError
from shared.envelope import Envelope, new_id
from tests.support.messages import depth, wait_for
from tests.support.school import School

SCHOOL_CLI = str(Path(sys.executable).parent / "school")


@pytest.fixture(scope="module")
def school(saga_stack) -> School:
    return School(saga_stack.urls, token=saga_stack.admin())


def test_a_paid_enrollment_becomes_active_with_one_charge(school: School) -> None:
    student, course = school.student(), school.course(price_cents=4990)
    reply = school.send("POST", "enrollment", "/enrollments", {
        "student_id": student, "course_id": course, "payment_token": "tok_ok"},
        correlation_id="corr-paid")
    assert reply.status_code == 202 and reply.json()["status"] == "pending_payment"
    assert reply.headers["X-Correlation-ID"] == "corr-paid"
    enrollment = school.wait_status(reply.json()["id"], "active")
    assert enrollment["cancel_reason"] is None and enrollment["refunded"] is False
    [payment] = school.payments(enrollment["id"])
    assert (payment["status"], payment["amount_cents"], payment["currency"],
            payment["gateway_attempts"]) == ("succeeded", 4990, "USD", 1)
    assert school.seats_taken(course) == 1


def test_a_declined_payment_cancels_and_releases_the_seat(school: School) -> None:
    student, course = school.student(), school.course(capacity=1)
    enrollment_id = school.enroll(student, course, "tok_declined")["id"]
    enrollment = school.wait_status(enrollment_id, "cancelled")
    assert (enrollment["cancel_reason"], enrollment["refunded"]) == ("payment_declined", False)
    [payment] = school.payments(enrollment_id)
    assert (payment["status"], payment["failure_reason"]) == ("failed", "card_declined")
    assert school.seats_taken(course) == 0
    school.enroll(school.student(), course)  # a 202: the seat is free again


def test_a_flaky_gateway_succeeds_on_the_third_attempt(school: School) -> None:
    enrollment_id = school.enroll(school.student(), school.course(), "tok_flaky_2")["id"]
    school.wait_status(enrollment_id, "active", timeout=60)
    [payment] = school.payments(enrollment_id)
    assert payment["gateway_attempts"] == 3 and payment["status"] == "succeeded"


def test_payments_held_behind_a_flaky_one_are_never_dead_lettered_untried(
        school: School, sqs, saga_stack) -> None:
    """A regression: one student enrolling with tok_flaky_2, tok_flaky_2, tok_ok. Each failure of
    the first two handed the later requests of the student's FIFO group back untried, and those
    receives counted toward maxReceiveCount (3): the last two ended in the DLQ, the tok_ok one
    never charged. The budget now counts handler attempts."""
    student = school.student()
    tokens = ("tok_flaky_2", "tok_flaky_2", "tok_ok")
    enrollments = [school.enroll(student, school.course(), token)["id"]
                   for token in tokens]
    for enrollment_id in enrollments:
        school.wait_status(enrollment_id, "active", timeout=90)
    attempts = [school.payments(e)[0]["gateway_attempts"] for e in enrollments]
    assert attempts == [3, 3, 1]
    assert depth(sqs, saga_stack.report.queues["payment-requests.fifo"].dlq_url) == 0


def test_a_down_gateway_dead_letters_and_redrive_completes(
        school: School, sqs, saga_stack) -> None:
    dlq = saga_stack.report.queues["payment-requests.fifo"].dlq_url
    enrollment_id = school.enroll(school.student(), school.course(), "tok_down")["id"]
    wait_for(lambda: depth(sqs, dlq) == 1, 60, "the payment request in the payment DLQ")
    assert school.enrollment(enrollment_id)["status"] == "pending_payment"
    assert school.payments(enrollment_id) == []
    listed = subprocess.run([SCHOOL_CLI, "dlq", "list", "payment-requests.fifo"],
                            capture_output=True, text=True, timeout=60,
                            env=os.environ | saga_stack.env)
    assert '"dlq_reason": "retries_exhausted"' in listed.stdout, listed.stdout + listed.stderr
    # the operator reads the charge, its ids and amount, but not its payment token
    assert "charge.requested" in listed.stdout and enrollment_id in listed.stdout
    assert "tok_down" not in listed.stdout, listed.stdout
    school.gateway_outage(False)
    try:
        redrive = subprocess.run([SCHOOL_CLI, "dlq", "redrive", "payment-requests.fifo"],
                                 capture_output=True, text=True, timeout=120,
                                 env=os.environ | saga_stack.env)
        assert redrive.returncode == 0, redrive.stdout + redrive.stderr
        school.wait_status(enrollment_id, "active")
    finally:
        school.gateway_outage(True)
    [payment] = school.payments(enrollment_id)
    assert payment["gateway_attempts"] == 4  # the budget of 3 before the DLQ, 1 after redrive
    assert payment["status"] == "succeeded"  # the redrive moved the token, unmasked


def test_a_full_course_and_a_second_enrollment_are_conflicts(school: School) -> None:
    course, student = school.course(capacity=1), school.student()
    school.enroll(student, course)
    with pytest.raises(ProblemError) as again:
        school.enroll(student, course)
    assert again.value.status == 409 and "already has" in again.value.body["detail"]
    with pytest.raises(ProblemError) as full:
        school.enroll(school.student(), course)
    assert full.value.status == 409 and "full" in full.value.body["detail"]
    assert full.value.reply.headers["Content-Type"] == "application/problem+json"


def test_the_same_idempotency_key_gives_the_same_enrollment(school: School) -> None:
    student, course, key = school.student(), school.course(), new_id()
    first, second = school.enroll(student, course, key=key), school.enroll(student, course, key=key)
    assert first == second  # both 202
    school.wait_status(first["id"], "active")
    assert [p["gateway_attempts"] for p in school.payments(first["id"])] == [1]
    with pytest.raises(ProblemError) as other_body:
        school.enroll(student, school.course(), key=key)
    assert other_body.value.status == 422 and "Idempotency-Key" in other_body.value.body["errors"]


def test_cancelling_refunds_and_releases_the_seat(school: School) -> None:
    course = school.course(capacity=1)
    enrollment_id = school.enroll(school.student(), course)["id"]
    school.wait_status(enrollment_id, "active")
    assert school.cancel(enrollment_id)["status"] == "cancelling"  # a 202
    enrollment = school.wait_status(enrollment_id, "cancelled")
    assert (enrollment["cancel_reason"], enrollment["refunded"]) == ("student_request", True)
    assert [p["status"] for p in school.payments(enrollment_id)] == ["refunded"]
    assert school.seats_taken(course) == 0
    with pytest.raises(ProblemError) as again:
        school.cancel(enrollment_id)
    assert again.value.status == 409


def _send_request(sqs, stack, envelope: Envelope) -> None:
    sqs.send_message(QueueUrl=stack.report.queues["payment-requests.fifo"].url,
                     MessageBody=envelope.body(), MessageAttributes=envelope.attributes(),
                     MessageGroupId=envelope.data["student_id"],
                     MessageDeduplicationId=new_id())


def test_the_same_payment_request_twice_charges_once(school: School, sqs, saga_stack) -> None:
    enrollment_id = new_id()
    request = Envelope("enrollment.requested", 2, {
        "enrollment_id": enrollment_id, "student_id": new_id(), "course_id": new_id(),
        "amount_cents": 1500, "currency": "EUR", "payment_token": "tok_ok"}, "enrollment")
    for _ in range(2):
        _send_request(sqs, saga_stack, request)
    wait_for(lambda: school.payments(enrollment_id), 30, "the payment")
    wait_for(lambda: depth(sqs, saga_stack.report.queues["payment-requests.fifo"].url) == 0, 30,
             "both deliveries consumed")
    [payment] = school.payments(enrollment_id)
    assert payment["gateway_attempts"] == 1 and payment["amount_cents"] == 1500


def test_a_v1_payment_request_is_upcast_to_cents(school: School, sqs, saga_stack) -> None:
    enrollment_id = new_id()
    v1 = Envelope("enrollment.requested", 1, {
        "enrollment_id": enrollment_id, "student_id": new_id(), "course_id": new_id(),
        "price": "49.90", "payment_token": "tok_ok"}, "enrollment")
    _send_request(sqs, saga_stack, v1)
    [payment] = wait_for(lambda: school.payments(enrollment_id), 30, "the v1 payment")
    assert (payment["amount_cents"], payment["currency"], payment["status"]) == (
        4990, "USD", "succeeded")


BAD_INPUT: list[tuple[str, str, str, Any, dict[str, str], int]] = [
    ("enrollment", "POST", "/students", "not json", {"Content-Type": "text/plain"}, 400),
    ("enrollment", "POST", "/students", "{broken", {"Content-Type": "application/json"}, 400),
    ("enrollment", "POST", "/students", {}, {}, 422),
    ("enrollment", "POST", "/students", {"name": "A", "email": "not-an-email"}, {}, 422),
    ("enrollment", "POST", "/students", {"name": "A" * 201, "email": "a@b.io"}, {}, 422),
    ("enrollment", "POST", "/students", {"name": "A", "email": "a@b.io", "x": 1}, {}, 422),
    ("enrollment", "GET", "/students/nope", None, {}, 404),
    ("enrollment", "POST", "/courses", {"title": "T", "price_cents": -1, "capacity": 1}, {}, 422),
    ("enrollment", "POST", "/courses", {"title": "T", "price_cents": "10", "capacity": 1}, {},
     422),
    ("enrollment", "POST", "/courses",
     {"title": "T", "price_cents": 1, "capacity": 1, "currency": "usd"}, {}, 422),
    ("enrollment", "POST", "/courses", {"title": "T", "price_cents": 1, "capacity": 0}, {}, 422),
    ("enrollment", "GET", "/courses/nope", None, {}, 404),
    ("enrollment", "POST", "/enrollments", {}, {}, 422),
    ("enrollment", "POST", "/enrollments",
     {"student_id": "nope", "course_id": "nope", "payment_token": "tok_ok"}, {}, 404),
    ("enrollment", "POST", "/enrollments",
     {"student_id": "a", "course_id": "b", "payment_token": "tok_ok"},
     {"Idempotency-Key": "k" * 201}, 422),
    ("enrollment", "GET", "/enrollments", None, {}, 422),
    ("enrollment", "GET", "/enrollments/nope", None, {}, 404),
    ("enrollment", "POST", "/enrollments/nope/cancel", None, {}, 404),
    ("enrollment", "DELETE", "/students", None, {}, 405),
    ("enrollment", "GET", "/nowhere", None, {}, 404),
    ("payment", "GET", "/payments", None, {}, 422),
    ("payment", "GET", "/payments/nope", None, {}, 404),
    ("payment", "PUT", "/simulator/gateway", {"outage": "maybe"}, {}, 422),
]


@pytest.mark.parametrize(("service", "method", "path", "body", "headers", "status"), BAD_INPUT)
def test_bad_input_is_a_4xx_problem(school: School, service: str, method: str, path: str,
                                    body: Any, headers: dict[str, str], status: int) -> None:
    kwargs: dict[str, Any] = {"data": body} if isinstance(body, str) else {"body": body}
    reply = school.send(method, service, path, headers=headers, **kwargs)
    assert reply.status_code == status, reply.text
    assert reply.headers["Content-Type"] == "application/problem+json"
    problem = reply.json()
    assert {"type", "title", "status", "detail"} <= set(problem) and problem["status"] == status
    if status == 422 and path != "/simulator/gateway" and method == "POST" and body:
        assert problem["errors"]


def test_fifty_students_race_for_ten_seats(school: School) -> None:
    course = school.course(capacity=10)
    students = [school.student() for _ in range(50)]

    def enroll(student: str) -> int:
        try:
            school.enroll(student, course)
        except ProblemError as exc:
            return exc.status
        return 202

    with ThreadPoolExecutor(50) as pool:
        codes = sorted(pool.map(enroll, students))
    assert codes.count(202) == 10 and codes.count(409) == 40, codes
    assert school.seats_taken(course) == 10
