"""One trace per request across every queue: all five services export OTLP/HTTP to a
receiver in this process, and one enrollment's spans form one connected trace."""

from __future__ import annotations

import uuid
from collections import Counter
from typing import Any

import pytest

from deploy.local.traces import Receiver, Span, receiving, svg, tree
from shared.settings import ROOT
from tests.support.messages import wait_for
from tests.support.school import School

SERVICES = ("enrollment", "payment", "assignment", "notification", "analytics")


@pytest.fixture(scope="module")
def otlp() -> Any:
    with receiving() as (receiver, endpoint):
        yield receiver, endpoint


@pytest.fixture(scope="module")
def traced_stack(otlp, sqs, sns, settings, db_kind, tmp_path_factory, mailbox
                 ):  # type: ignore[no-untyped-def]
    from tests.conftest import service_stack
    _, endpoint = otlp
    yield from service_stack(SERVICES, "otel" + uuid.uuid4().hex[:3], sqs, sns, settings, db_kind,
                             tmp_path_factory, {
                                 "SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(mailbox.port),
                                 "SCHOOL_BACKOFF_BASE": "1", "SCHOOL_BACKOFF_CAP": "2",
                                 "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
                                 # export within a fraction of a second, not after 5 s / 60 s
                                 "OTEL_BSP_SCHEDULE_DELAY": "200",
                                 "OTEL_METRIC_EXPORT_INTERVAL": "1000",
                                 # what `make up` might pass to every process: ignored for the name
                                 "OTEL_SERVICE_NAME": "not-a-service"})


@pytest.fixture(scope="module")
def receiver(otlp, traced_stack) -> Receiver:  # type: ignore[no-untyped-def]
    return otlp[0]


@pytest.fixture(scope="module")
def school(traced_stack) -> School:  # type: ignore[no-untyped-def]
    return School(traced_stack.urls, token=traced_stack.admin())


def request_trace(receiver: Receiver, correlation: str, needs: Any, what: str) -> list[Span]:
    """The trace of the POST /enrollments sent with `correlation`, once `needs(spans)` holds."""
    def found() -> list[Span] | None:
        servers = [s for s in receiver.spans
                   if s.name == "POST /enrollments" and s.kind == "server"
                   and any(p.attributes.get("messaging.message.conversation_id") == correlation
                           for p in receiver.trace(s.trace_id))]
        if not servers:
            return None
        spans = receiver.trace(servers[0].trace_id)
        ids = {s.span_id for s in spans}  # and every parent has arrived (spans end, and are
        whole = all(not s.parent_id or s.parent_id in ids for s in spans)  # sent, children first)
        return spans if whole and needs(spans) else None
    try:
        return wait_for(found, 60, what)
    except TimeoutError as exc:  # say what did arrive
        with receiver.lock:
            seen = Counter((s.service, s.process, s.kind, s.name) for s in receiver.spans)
        raise AssertionError(f"{exc}; spans received: {sorted(seen.items())}") from None


def drawn(spans: list[Span], name: str) -> None:
    """Keep the trace as text and as a picture under var/traces/ (docs/ holds one of them)."""
    folder = ROOT / "var" / "traces"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.txt").write_text(tree(spans) + "\n")
    (folder / f"{name}.svg").write_text(svg(spans))


def processed(spans: list[Span], service: str, event_type: str) -> list[Span]:
    return [s for s in spans if s.service == service and s.kind == "consumer"
            and s.attributes.get("school.event_type") == event_type]


def complete(spans: list[Span]) -> bool:
    """The saga's last hop has arrived: enrollment.confirmed at notification and analytics."""
    return bool(processed(spans, "enrollment", "payment.succeeded")
                and processed(spans, "notification", "enrollment.confirmed")
                and processed(spans, "analytics", "enrollment.confirmed"))


def connected(spans: list[Span]) -> None:
    """One root, and every other span's parent is in the trace."""
    ids = {s.span_id for s in spans}
    roots = [s for s in spans if not s.parent_id]
    orphans = [s.name for s in spans if s.parent_id and s.parent_id not in ids]
    assert len(roots) == 1 and roots[0].kind == "server", [(r.service, r.name) for r in roots]
    assert not orphans, orphans


def test_one_paid_enrollment_is_one_trace_through_every_process(
        school: School, receiver: Receiver) -> None:
    student, course = school.student(), school.course()
    reply = school.send("POST", "enrollment", "/enrollments", {
        "student_id": student, "course_id": course, "payment_token": "tok_ok"},
        correlation_id="trace-paid")
    school.wait_status(reply.json()["id"], "active")

    spans = request_trace(receiver, "trace-paid", complete, "the paid enrollment's trace")
    connected(spans)
    drawn(spans, "paid-enrollment")
    processes = {(s.service, s.process) for s in spans}
    assert {("enrollment", "api"), ("enrollment", "worker"), ("payment", "worker"),
            ("notification", "worker"), ("analytics", "worker")} <= processes, processes
    assert {s.service for s in spans} <= set(SERVICES)  # OTEL_SERVICE_NAME did not rename any
    by_id = {s.span_id: s for s in spans}

    # charge.requested: created in the request, sent by the enrollment relay, processed
    # by the payment worker under its creation context, on the FIFO queue with its group.
    [payment] = processed(spans, "payment", "charge.requested")
    create = by_id[payment.parent_id]
    assert (create.service, create.process, create.kind) == ("enrollment", "api", "producer")
    assert create.name == "create payment-requests.fifo" and create.attributes[
        "messaging.operation.type"] == "create"
    assert by_id[create.parent_id].kind == "server"  # the POST /enrollments span
    [send] = [s for s in spans if s.parent_id == create.span_id and s.kind == "producer"]
    assert (send.service, send.process, send.name) == (
        "enrollment", "worker", "send payment-requests.fifo")
    assert send.attributes["messaging.message.id"]
    attributes = payment.attributes
    assert attributes["messaging.system"] == "aws_sqs"
    assert attributes["messaging.operation.type"] == "process"
    assert attributes["messaging.destination.name"].endswith("-payment-requests.fifo")
    assert attributes["messaging.message.id"] and attributes["school.outcome"] == "handled"
    assert attributes["messaging.aws_sqs.message.group_id"] == create.attributes[
        "messaging.aws_sqs.message.group_id"]
    assert attributes["messaging.message.conversation_id"] == "trace-paid"

    # payment.succeeded: created in the payment worker's process span, back to enrollment.
    [back] = processed(spans, "enrollment", "payment.succeeded")
    assert by_id[by_id[back.parent_id].parent_id].span_id == payment.span_id
    # the topic's fan-out: notification and analytics process what enrollment published
    [note] = processed(spans, "notification", "enrollment.confirmed")
    assert by_id[note.parent_id].name == "create school-events"
    assert by_id[note.parent_id].attributes["messaging.system"] == "aws.sns"
    # the request's database work is in the trace too (SQLAlchemy's instrumentation)
    assert any(s.kind == "client" and s.attributes.get("db.statement", "").startswith("INSERT")
               and s.service == "enrollment" for s in spans)


def test_a_retried_payment_shows_each_failed_attempt_in_the_trace(
        school: School, receiver: Receiver) -> None:
    reply = school.send("POST", "enrollment", "/enrollments", {
        "student_id": school.student(), "course_id": school.course(),
        "payment_token": "tok_flaky_2"}, correlation_id="trace-flaky")
    school.wait_status(reply.json()["id"], "active", timeout=60)
    spans = request_trace(receiver, "trace-flaky", complete, "the flaky payment's trace")
    connected(spans)
    drawn(spans, "flaky-payment")
    attempts = processed(spans, "payment", "charge.requested")
    assert [s.attributes["school.outcome"] for s in attempts] == ["retry", "retry", "handled"]
    for failed in attempts[:2]:
        assert failed.status == 2 and "retry" in failed.event_names
        assert "exception" in failed.event_names  # the handler's error, recorded
    # every attempt is a child of the same creation context: the retries are one journey
    assert len({s.parent_id for s in attempts}) == 1


def test_a_dead_lettered_payment_ends_its_trace_with_the_reason(
        school: School, receiver: Receiver) -> None:
    reply = school.send("POST", "enrollment", "/enrollments", {
        "student_id": school.student(), "course_id": school.course(),
        "payment_token": "tok_down"}, correlation_id="trace-down")
    assert reply.status_code == 202
    spans = request_trace(receiver, "trace-down", lambda spans: any(
        s.attributes.get("school.outcome") == "dead_lettered"
        for s in processed(spans, "payment", "charge.requested")), "the dead-lettered trace")
    connected(spans)
    drawn(spans, "dead-lettered-payment")
    attempts = processed(spans, "payment", "charge.requested")
    outcomes = Counter(s.attributes["school.outcome"] for s in attempts)
    assert outcomes["dead_lettered"] == 1 and outcomes["retry"] >= 1, outcomes
    [last] = [s for s in attempts if s.attributes["school.outcome"] == "dead_lettered"]
    assert last.status == 2
    assert dict(last.events)["dead_lettered"]["reason"] == "retries_exhausted"


def test_the_metrics_count_outcomes_durations_and_the_outbox(
        school: School, receiver: Receiver) -> None:
    """Run after the traces above: a handled, a retried and a dead-lettered payment."""
    def outcomes() -> set[str]:
        return {a["school.outcome"] for a, _ in receiver.metric(
            "payment", "school.consumer.messages")}
    wait_for(lambda: {"handled", "retry", "dead_lettered"} <= outcomes(), 30,
             "the payment consumer's outcome counts")
    assert receiver.metric("payment", "school.handler.duration")
    assert any(a.get("messaging.operation.name") == "SendMessageBatch"
               for a, _ in receiver.metric("enrollment", "school.relay.publish.duration"))
    for gauge in ("school.outbox.backlog", "school.outbox.oldest_age", "school.outbox.dead_rows"):
        wait_for(lambda g=gauge: receiver.metric("enrollment", g), 30, f"enrollment's {gauge}")
    assert all(v == 0 for _, v in receiver.metric("enrollment", "school.outbox.dead_rows"))
