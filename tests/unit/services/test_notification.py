"""The notification service's rules through its handlers, commands and sender: contacts kept
once, one pending email per event, templates tried before the event is accepted, and the sender
delivering due emails or keeping them for a retry (in-memory SQLite, a fake mailer)."""

from __future__ import annotations

import smtplib
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from jinja2 import DictLoader, Environment, StrictUndefined
from sqlalchemy import Engine, select

from services.notification import commands, mail
from services.notification.sender import Sender
from services.notification.service import SERVICE
from services.notification.tables import contacts, notifications
from shared.backoff import Backoff
from shared.db import utc
from shared.envelope import Envelope
from shared.handling import PermanentError
from tests.support.fakes import FakeMailer, event, handle, transaction

CORR = "corr-notification"
RETRY_AFTER = 10.0


@pytest.fixture(scope="module")
def templates() -> Environment:
    return mail.templates()


def registered(student_id: str = "stu-1", name: str = "Ada Lovelace",
               email: str = "ada@example.com") -> Envelope:
    return event("contact.recorded", {"student_id": student_id, "name": name,
                                      "email": email}, correlation_id=CORR)


def confirmed(student_id: str = "stu-1", enrollment_id: str = "enr-1") -> Envelope:
    return event("enrollment.confirmed", {"enrollment_id": enrollment_id,
                                          "student_id": student_id, "course_id": "crs-1"},
                 correlation_id=CORR)


def refunded(student_id: str = "stu-1") -> Envelope:
    return event("payment.refunded", {"payment_id": "pay-1", "enrollment_id": "enr-1",
                                      "student_id": student_id, "amount_cents": 4990,
                                      "currency": "EUR"}, correlation_id=CORR)


def rows(engine: Engine, table: Any = notifications) -> list[Any]:
    with transaction(engine) as session:
        return list(session.execute(select(table)).all())


def sender(engine: Engine, mailer: FakeMailer, templates: Environment) -> Sender:
    return Sender(engine, mailer, templates,  # type: ignore[arg-type]
                  backoff=Backoff(base=RETRY_AFTER, cap=RETRY_AFTER, jitter=lambda: 1.0))


def test_a_contact_is_stored_once(engine: Engine, templates: Environment) -> None:
    handle(SERVICE, engine, registered(), None, templates)
    handle(SERVICE, engine, registered(name="Someone Else", email="else@example.com"), None,
           templates)  # another event for the same student
    [contact] = rows(engine, contacts)
    assert (contact.student_id, contact.name, contact.email) == (
        "stu-1", "Ada Lovelace", "ada@example.com")


def test_each_email_event_records_one_pending_notification(engine: Engine,
                                                           templates: Environment) -> None:
    first, second = confirmed(), refunded()
    handle(SERVICE, engine, first, None, templates)
    handle(SERVICE, engine, second, None, templates)
    found = {row.event_id: row for row in rows(engine)}
    assert set(found) == {first.event_id, second.event_id}
    row = found[first.event_id]
    assert (row.event_type, row.student_id, row.correlation_id, row.status, row.attempts,
            row.recipient) == ("enrollment.confirmed", "stu-1", CORR, "pending", 0, None)
    assert row.subject == "Your enrollment is confirmed"
    assert row.data == first.data  # kept as JSON, rendered when sent
    assert found[second.event_id].subject == "Your refund of 49.90 EUR"


def test_an_email_the_templates_cannot_render_is_permanent(engine: Engine) -> None:
    broken = Environment(loader=DictLoader({
        "enrollment.confirmed.txt": "Hello {{ name }}, {{ no_such_field }}",
        "enrollment.confirmed.html": "<p>Hello {{ name }}</p>"}), undefined=StrictUndefined)
    with pytest.raises(PermanentError, match="enrollment.confirmed"):
        handle(SERVICE, engine, confirmed(), None, broken)
    with pytest.raises(PermanentError, match="payment.refunded"):  # no template at all
        handle(SERVICE, engine, refunded(), None, broken)
    assert rows(engine) == []


def test_notifications_show_to_once_the_contact_exists(engine: Engine,
                                                       templates: Environment) -> None:
    handle(SERVICE, engine, confirmed(), None, templates)
    handle(SERVICE, engine, confirmed(student_id="stu-2", enrollment_id="enr-2"), None,
           templates)
    with transaction(engine) as session:
        before = commands.list_notifications(session, "stu-1")
    assert [(row["event_type"], row["to"]) for row in before] == [("enrollment.confirmed", None)]
    handle(SERVICE, engine, registered(), None, templates)
    with transaction(engine) as session:
        after = commands.list_notifications(session, "stu-1")
        assert commands.list_notifications(session, "nobody") == []
    assert [(row["student_id"], row["to"]) for row in after] == [("stu-1", "ada@example.com")]


def test_the_sender_sends_due_emails_to_known_contacts_and_marks_them_sent(
        engine: Engine, templates: Environment) -> None:
    handle(SERVICE, engine, confirmed(), None, templates)
    handle(SERVICE, engine, confirmed(student_id="stu-2", enrollment_id="enr-2"), None,
           templates)  # stu-2 has no contact yet: it waits
    handle(SERVICE, engine, registered(), None, templates)
    mailer = FakeMailer()
    assert sender(engine, mailer, templates).run_once() == 1
    [message] = mailer.sent
    assert message["To"] == "Ada Lovelace <ada@example.com>"
    assert message["Subject"] == "Your enrollment is confirmed"
    assert message["X-Correlation-ID"] == CORR
    plain = message.get_body(("plain",))
    assert plain is not None
    assert "enr-1" in plain.get_content()
    by_student = {row.student_id: row for row in rows(engine)}
    sent = by_student["stu-1"]
    assert (sent.status, sent.recipient, sent.attempts, sent.last_error) == (
        "sent", "ada@example.com", 1, None)
    assert sent.sent_at is not None
    assert (by_student["stu-2"].status, by_student["stu-2"].attempts) == ("pending", 0)
    assert sender(engine, mailer, templates).run_once() == 0  # nothing is sent twice
    assert len(mailer.sent) == 1


@pytest.mark.parametrize("failure", [
    smtplib.SMTPRecipientsRefused({"ada@example.com": (550, b"no such user")}),
    ConnectionRefusedError(111, "Connection refused"),
], ids=["refused", "unreachable"])
def test_an_smtp_failure_keeps_the_email_pending_for_a_retry(
        engine: Engine, templates: Environment, failure: Exception) -> None:
    handle(SERVICE, engine, registered(), None, templates)
    handle(SERVICE, engine, confirmed(), None, templates)
    mailer = FakeMailer(failure=failure)
    started = datetime.now(UTC)
    assert sender(engine, mailer, templates).run_once() == 0
    [row] = rows(engine)
    assert (row.status, row.attempts, row.recipient, row.sent_at) == ("pending", 1, None, None)
    assert row.last_error.startswith(type(failure).__name__)
    assert utc(row.next_attempt_at) >= started + timedelta(seconds=RETRY_AFTER)
    mailer.failure = None  # the server is back, but the email is not due yet
    assert sender(engine, mailer, templates).run_once() == 0
    assert mailer.sent == []


def test_an_unreachable_server_ends_the_pass(engine: Engine, templates: Environment) -> None:
    handle(SERVICE, engine, registered(), None, templates)
    handle(SERVICE, engine, confirmed(), None, templates)
    handle(SERVICE, engine, refunded(), None, templates)
    mailer = FakeMailer(failure=ConnectionRefusedError(111, "Connection refused"))
    assert sender(engine, mailer, templates).run_once() == 0
    assert sorted(row.attempts for row in rows(engine)) == [0, 1]  # the second was not tried
