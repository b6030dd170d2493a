"""The analytics service's rules through its handlers and its summary: every event counted by
type, net revenue per currency, a fact per graded submission, and duplicates counted apart
(in-memory SQLite; duplicates go through the real inbox and dispatcher)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest
from sqlalchemy import Engine, select

from services.analytics import commands, domain
from services.analytics.service import SERVICE
from services.analytics.tables import counters, grades
from shared import db
from shared.envelope import Envelope
from shared.events import CATALOGUE
from shared.handling import Context, Dispatcher, Outcome
from shared.inbox import Inbox
from tests.support.fakes import event, handle, transaction


def payment(event_type: str, cents: int, currency: str = "EUR") -> Envelope:
    return event(event_type, {"payment_id": "pay-1", "enrollment_id": "enr-1",
                              "student_id": "stu-1", "amount_cents": cents,
                              "currency": currency})


def graded(score: float, version: int = 1, student_id: str = "stu-1") -> Envelope:
    return event("submission.graded", {
        "submission_id": f"sub-{student_id}-{version}", "assignment_id": "asg-1",
        "student_id": student_id, "version": version, "score": score, "max_score": 10,
        "plagiarism_score": 0.1, "flagged": False})


def registered(student_id: str = "stu-1") -> Envelope:
    return event("student.registered", {"student_id": student_id})


def count(engine: Engine, *envelopes: Envelope) -> None:
    for envelope in envelopes:
        handle(SERVICE, engine, envelope, None)


def summary(engine: Engine) -> dict[str, Any]:
    return commands.summary(engine)


def test_the_summary_of_nothing_is_zero(engine: Engine) -> None:
    assert summary(engine) == {"events_by_type": {}, "revenue_cents_by_currency": {},
                               "average_score": None, "events_processed": 0,
                               "duplicates_absorbed": 0}


def test_every_event_is_counted_by_type(engine: Engine) -> None:
    count(engine, registered("stu-1"), registered("stu-2"), registered("stu-3"),
          payment("payment.succeeded", 100))
    result = summary(engine)
    assert result["events_by_type"] == {"student.registered": 3, "payment.succeeded": 1}
    assert result["events_processed"] == 4


def test_revenue_goes_up_with_a_charge_and_down_with_a_refund_per_currency(
        engine: Engine) -> None:
    count(engine, payment("payment.succeeded", 4990), payment("payment.succeeded", 1000),
          payment("payment.refunded", 4990), payment("payment.succeeded", 700, "JPY"))
    assert summary(engine)["revenue_cents_by_currency"] == {"EUR": 1000, "JPY": 700}


def test_a_failed_payment_brings_no_revenue(engine: Engine) -> None:
    count(engine, event("payment.failed", {"payment_id": "pay-1", "enrollment_id": "enr-1",
                                           "student_id": "stu-1", "reason": "card_declined"}))
    result = summary(engine)
    assert result["revenue_cents_by_currency"] == {}
    assert result["events_by_type"] == {"payment.failed": 1}


def test_each_graded_submission_is_a_fact_in_the_average(engine: Engine) -> None:
    first = graded(6.0, version=1)
    count(engine, first, graded(9.0, version=2), graded(4.5, student_id="stu-2"))
    with transaction(engine) as session:
        facts = {row.event_id: row for row in session.execute(select(grades))}
    assert len(facts) == 3
    fact = facts[first.event_id]
    assert (fact.submission_id, fact.assignment_id, fact.student_id, fact.version, fact.score,
            fact.max_score) == ("sub-stu-1-1", "asg-1", "stu-1", 1, 6.0, 10)
    assert db.utc(fact.graded_at) == datetime.fromisoformat(first.occurred_at)
    assert summary(engine)["average_score"] == pytest.approx(6.5)


def test_a_duplicate_is_counted_apart_and_changes_nothing_else(engine: Engine) -> None:
    assert SERVICE.inbox is not None  # analytics consumes, so it declares an inbox
    dispatch = Dispatcher(db.session_factory(engine), Inbox(SERVICE.inbox, "analytics"),
                          CATALOGUE, SERVICE.consumes, on_duplicate=SERVICE.on_duplicate,
                          transaction_budget=0)
    charge, grade = payment("payment.succeeded", 4990), graded(8.0)
    assert [dispatch(charge), dispatch(grade)] == [Outcome.HANDLED, Outcome.HANDLED]
    assert [dispatch(charge), dispatch(charge), dispatch(grade)] == [Outcome.DUPLICATE] * 3
    result = summary(engine)
    assert result["duplicates_absorbed"] == 3
    assert result["events_by_type"] == {"payment.succeeded": 1, "submission.graded": 1}
    assert result["revenue_cents_by_currency"] == {"EUR": 4990}
    assert result["average_score"] == 8.0


def test_a_duplicate_adds_to_its_own_counter_only(engine: Engine) -> None:
    assert SERVICE.on_duplicate is not None
    with transaction(engine) as session:
        SERVICE.on_duplicate(Context(registered(), session, None))
        SERVICE.on_duplicate(Context(registered(), session, None))
        assert session.execute(select(counters.c.value).where(
            counters.c.name == domain.DUPLICATES)).scalar_one() == 2
    result = summary(engine)
    assert (result["duplicates_absorbed"], result["events_processed"]) == (2, 0)
