"""The notification service's rules and its rendering: no I/O, no SMTP server."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from jinja2 import UndefinedError

from services.analytics.domain import revenue_change
from services.notification import domain, mail
from shared.events import CATALOGUE

NOW = datetime(2026, 11, 23, 9, 30, tzinfo=UTC)
STUDENT = {"student_id": "s-1", "enrollment_id": "e-1", "course_id": "c-1"}
EXAMPLES: dict[str, dict[str, Any]] = {
    "enrollment.confirmed": STUDENT,
    "enrollment.cancelled": STUDENT | {"reason": "payment_declined", "refunded": False},
    "payment.refunded": {"payment_id": "p-1", "enrollment_id": "e-1", "student_id": "s-1",
                         "amount_cents": 4990, "currency": "USD"},
    "submission.graded": {"submission_id": "sub-1", "assignment_id": "a-1", "student_id": "s-1",
                          "version": 2, "score": 7.5, "max_score": 10, "plagiarism_score": 0.93,
                          "flagged": True},
}


@pytest.mark.parametrize(("cents", "currency", "shown"), [
    (4990, "USD", "49.90 USD"), (5, "EUR", "0.05 EUR"), (123456, "GBP", "1,234.56 GBP"),
    (1500, "JPY", "1,500 JPY"), (0, "USD", "0.00 USD")])
def test_money_shows_minor_units_by_currency(cents: int, currency: str, shown: str) -> None:
    assert domain.money(cents, currency) == shown


def test_scores_drop_a_pointless_decimal() -> None:
    assert (domain.score(8.0), domain.score(7.25), domain.score(0)) == ("8", "7.25", "0")


def test_subjects_say_what_happened() -> None:
    assert domain.subject("enrollment.cancelled", EXAMPLES["enrollment.cancelled"]) == (
        "Your enrollment was cancelled: the payment was declined")
    asked = EXAMPLES["enrollment.cancelled"] | {"reason": "student_request", "refunded": True}
    assert domain.subject("enrollment.cancelled", asked) == "Your enrollment was cancelled"
    assert domain.subject("payment.refunded", EXAMPLES["payment.refunded"]) == (
        "Your refund of 49.90 USD")
    assert domain.subject("submission.graded", EXAMPLES["submission.graded"]) == (
        "Your submission was graded: 7.5/10 (flagged for review)")
    clean = EXAMPLES["submission.graded"] | {"flagged": False, "score": 10.0}
    assert domain.subject("submission.graded", clean) == "Your submission was graded: 10/10"


def test_a_non_notifying_event_has_no_subject() -> None:
    with pytest.raises(ValueError, match="student.registered does not send an email"):
        domain.subject("student.registered", {})


def test_every_notifying_event_is_in_the_catalogue_with_its_example() -> None:
    for event_type in domain.EMAIL_EVENTS:
        assert CATALOGUE.new(event_type, EXAMPLES[event_type]).event_type == event_type


@pytest.mark.parametrize("event_type", domain.EMAIL_EVENTS)
def test_each_event_renders_both_parts_with_its_headers(event_type: str) -> None:
    data = EXAMPLES[event_type]
    letter = mail.Letter("n-1", "ev-1", event_type, "corr-1", domain.subject(event_type, data),
                         data)
    message = mail.compose(mail.templates(), letter, "Ada Lovelace", "ada@example.com", NOW)
    assert message["To"] == "Ada Lovelace <ada@example.com>"
    assert message["Message-ID"] == "<n-1@school.example>"
    assert (message["X-Event-ID"], message["X-Event-Type"], message["X-Correlation-ID"]) == (
        "ev-1", event_type, "corr-1")
    assert message["Subject"] == letter.subject
    text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    html = message.get_body(("html",)).get_content()  # type: ignore[union-attr]
    for part in (text, html):
        assert "Ada Lovelace" in part and "n-1" in part  # the greeting and the reference
    assert "<" not in text and "<html" in html.lower()


def test_the_graded_email_shows_score_and_plagiarism() -> None:
    data = EXAMPLES["submission.graded"]
    letter = mail.Letter("n-1", "ev-1", "submission.graded", "c", "s", data)
    message = mail.compose(mail.templates(), letter, "Ada", "ada@example.com", NOW)
    text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "7.5" in text and "10" in text and "93" in text


def test_html_escapes_what_users_typed() -> None:
    data = EXAMPLES["enrollment.confirmed"]
    letter = mail.Letter("n-1", "ev-1", "enrollment.confirmed", "c", "s", data)
    message = mail.compose(mail.templates(), letter, "<script>x</script>", "x@example.com", NOW)
    html = message.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert "<script>" not in html and "&lt;script&gt;" in html


def test_a_template_missing_a_field_fails_loudly() -> None:
    letter = mail.Letter("n-1", "ev-1", "payment.refunded", "c", "s", {"student_id": "s-1"})
    with pytest.raises(UndefinedError):
        mail.compose(mail.templates(), letter, "Ada", "ada@example.com", NOW)


def test_net_revenue_adds_charges_and_takes_back_refunds() -> None:
    money = {"amount_cents": 700, "currency": "GBP"}
    assert revenue_change("payment.succeeded", money) == ("GBP", 700)
    assert revenue_change("payment.refunded", money) == ("GBP", -700)
    assert revenue_change("payment.failed", money) is None
    assert revenue_change("enrollment.confirmed", STUDENT) is None
