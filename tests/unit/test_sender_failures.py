"""The sender's rule for failures, without an SMTP server: which failures a retry may mend and
which end a letter `failed`, reasons without addresses, contacts with control characters refused
while composing, `failed` in the API's contract, and one letter's unexpected exception kept on
its own row (in-memory SQLite, a mailer that fails for one address)."""

from __future__ import annotations

import re
import smtplib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage

import pytest
from sqlalchemy import insert, select

from services.notification import mail
from services.notification.schemas import NotificationOut
from services.notification.sender import Sender, permanent, reason, unreachable
from services.notification.tables import contacts, metadata, notifications
from shared.backoff import Backoff
from tests.support.fakes import memory_engine

ADA = "ada@example.com"
NOW = datetime(2026, 11, 23, 9, 30, tzinfo=UTC)


@pytest.mark.parametrize(("error", "is_permanent", "is_unreachable"), [
    (ConnectionRefusedError(111, "Connection refused"), False, True),
    (TimeoutError("timed out"), False, True),
    (smtplib.SMTPServerDisconnected("Connection unexpectedly closed"), False, True),
    (smtplib.SMTPConnectError(554, b"no service"), False, True),
    (smtplib.SMTPRecipientsRefused({ADA: (450, b"mailbox busy")}), False, False),
    (smtplib.SMTPRecipientsRefused({ADA: (550, b"no such user")}), True, False),
    (smtplib.SMTPSenderRefused(451, b"try later", "no-reply@school.example"), False, False),
    (smtplib.SMTPSenderRefused(552, b"too big", "no-reply@school.example"), True, False),
    (smtplib.SMTPDataError(554, b"content rejected"), True, False),
    (smtplib.SMTPDataError(421, b"closing"), False, False),
    (smtplib.SMTPHeloError(501, b"bad helo"), False, False),  # the server's, not the letter's
    (smtplib.SMTPNotSupportedError("SMTPUTF8 not supported"), True, False),
    (ValueError("Header values may not contain linefeed"), True, False),
    (UnicodeEncodeError("ascii", "é", 0, 1, "no"), True, False),
], ids=lambda value: type(value).__name__ if isinstance(value, Exception) else str(value))
def test_only_a_refusal_of_the_letter_itself_is_permanent(
        error: Exception, is_permanent: bool, is_unreachable: bool) -> None:
    assert (permanent(error), unreachable(error)) == (is_permanent, is_unreachable)


def test_a_reason_keeps_the_reply_and_blanks_the_addresses() -> None:
    refused = smtplib.SMTPRecipientsRefused({ADA: (550, b"5.1.1 <ada@example.com>: unknown")})
    assert ADA in str(refused)  # what logging it raw would print
    assert reason(refused) == "SMTPRecipientsRefused: 550 5.1.1 <<address>>: unknown"
    assert reason(smtplib.SMTPDataError(554, b"spam from x.y@school.example")) == (
        "SMTPDataError: 554 spam from <address>")
    assert reason(ValueError("a" * 600)) == ("ValueError: " + "a" * 600)[:500]


@pytest.mark.parametrize(("name", "email", "found"), [
    ("Eve\r\nBcc: victim@evil.example", ADA, "name contains control characters (U+000D, U+000A)"),
    ("Nel\x85", ADA, "name contains control characters (U+0085)"),
    ("Nul\x00", ADA, "name contains control characters (U+0000)"),
    ("Ada", "ada@example.com\r\nBcc: victim@evil.example", "address contains control"),
])
def test_a_contact_with_control_characters_cannot_be_composed(name: str, email: str,
                                                               found: str) -> None:
    letter = mail.Letter("n-1", "ev-1", "enrollment.confirmed", "c", "s",
                         {"student_id": "s-1", "enrollment_id": "e-1", "course_id": "c-1"})
    with pytest.raises(mail.Unsendable, match=re.escape(found)) as refused:
        mail.compose(mail.templates(), letter, name, email, NOW)
    assert "victim" not in str(refused.value)  # the reason names code points, not the value


def test_the_contract_lists_failed_among_the_statuses() -> None:
    from apispec import APISpec
    from apispec.ext.marshmallow import MarshmallowPlugin

    spec = APISpec("school", "1", "3.0.3", plugins=[MarshmallowPlugin()])
    spec.components.schema("NotificationOut", schema=NotificationOut)
    body = spec.to_dict()["components"]["schemas"]["NotificationOut"]
    assert body["properties"]["status"]["enum"] == ["pending", "sent", "failed"]


@dataclass
class Picky:
    """A mailer that raises `error` for one address and keeps every other message."""

    address: str
    error: Exception
    sent: list[EmailMessage] = field(default_factory=list)

    def send(self, message: EmailMessage) -> None:
        if self.address in str(message["To"]):
            raise self.error
        self.sent.append(message)


def test_an_unexpected_exception_stays_on_its_row_and_the_pass_goes_on() -> None:
    engine = memory_engine(metadata)
    with engine.begin() as conn:
        for number, student in enumerate(("stu-odd", "stu-ada")):
            conn.execute(insert(contacts).values(student_id=student, name="Someone",
                                                 email=f"{student}@example.com",
                                                 registered_at=NOW))
            conn.execute(insert(notifications).values(
                id=f"n-{student}", event_id=f"e-{student}", event_type="enrollment.confirmed",
                student_id=student, correlation_id="c", subject="Hi", status="pending",
                data={"student_id": student, "enrollment_id": "e", "course_id": "c"},
                attempts=0, next_attempt_at=NOW, created_at=NOW.replace(second=number)))
    mailer = Picky("stu-odd@", ValueError("something nobody expected"))
    sender = Sender(engine, mailer, mail.templates(),  # type: ignore[arg-type]
                    backoff=Backoff(base=60, cap=60))
    assert sender.run_once() == 1  # the letter behind the odd one went out
    with engine.connect() as conn:
        found = {r.id: r for r in conn.execute(select(notifications))}
    assert (found["n-stu-ada"].status, len(mailer.sent)) == ("sent", 1)
    odd = found["n-stu-odd"]
    assert (odd.status, odd.attempts, odd.last_error) == (
        "pending", 1, "ValueError: something nobody expected")
    engine.dispose()
