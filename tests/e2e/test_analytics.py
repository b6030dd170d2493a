"""Analytics end to end: a full scenario through all five services, and the summary it yields.

The module has a stack of its own (a fresh topology and fresh databases), so the summary must
equal exactly what this scenario emitted: nothing more, nothing counted twice.
"""

from __future__ import annotations

from statistics import mean
from typing import Any

import pytest

from shared.inspect import queue_state
from shared.settings import Settings
from tests.support.messages import wait_for
from tests.support.school import School
from tests.support.stack import ServiceStack

KEYWORDS = ["queue", "fifo", "group", "order"]


@pytest.fixture(scope="module")
def school(school_stack) -> School:
    return School(school_stack.urls, token=school_stack.admin())


def test_the_summary_matches_the_events_of_a_full_scenario(
        school: School, school_stack: ServiceStack, sqs: Any, settings: Settings) -> None:
    ada, bob, cyd = (school.student() for _ in range(3))
    usd = school.course(price_cents=4990, currency="USD")
    eur = school.course(price_cents=1500, currency="EUR")

    paid = school.enroll(ada, usd)["id"]
    flaky = school.enroll(bob, eur, "tok_flaky_1")["id"]
    declined = school.enroll(cyd, usd, "tok_declined")["id"]
    refunded = school.enroll(cyd, eur)["id"]
    for enrollment in (paid, flaky, refunded):
        school.wait_status(enrollment, "active")
    school.wait_status(declined, "cancelled")
    school.cancel(refunded)
    wait_for(lambda: [p["status"] for p in school.payments(refunded)] == ["refunded"], 40,
             "the refund")

    task = school.assignment(course_id=usd, title="Ordering", max_score=100, keywords=KEYWORDS)
    school.submit(task, ada, "a queue")
    school.submit(task, ada, "a queue with fifo group order")
    school.submit(task, bob, "a queue with fifo")
    scores = [r["score"] for who, n in ((ada, 2), (bob, 1))
              for r in school.graded(task, who, n)]

    expected_counts = {
        "student.registered": 3, "course.created": 2, "enrollment.requested": 4,
        "payment.succeeded": 3, "payment.failed": 1, "enrollment.confirmed": 3,
        "enrollment.cancelled": 2, "refund.requested": 1, "payment.refunded": 1,
        "assignment.created": 1, "submission.received": 3, "submission.graded": 3,
    }
    summary: dict[str, Any] = wait_for(
        lambda: (s := school.summary())["events_processed"] >= sum(expected_counts.values())
        and s, 60, "analytics to count every event of the scenario")
    assert summary["events_by_type"] == expected_counts
    assert summary["events_processed"] == 27
    # USD: Ada's 49.90. EUR: Bob's 15.00, and Cyd's 15.00 charged then refunded.
    assert summary["revenue_cents_by_currency"] == {"EUR": 1500, "USD": 4990}
    assert scores == [25, 100, 50]
    assert summary["average_score"] == pytest.approx(mean(scores))
    assert summary["duplicates_absorbed"] == 0

    # Nothing is counted late (a redelivery counted twice would show here): once the analytics
    # queue holds no message, visible or in flight, nothing is left to count.
    assert school_stack.report is not None
    queue = school_stack.report.queues["analytics"].url
    wait_for(lambda: (q := queue_state(sqs, queue, settings)).visible + q.in_flight == 0, 60,
             "the analytics queue to drain")
    assert school.summary() == summary
