"""The sender on a real database (SQLite, PostgreSQL with DB=postgres) and a real SMTP server:
a letter that can never be composed or sent ends `failed` with its reason after its attempts,
without holding up the letters behind it; letters stuck from before settle the same way; an
unreachable server or a 4xx reply never fails one; and neither the sender's log nor the sink's
names an address."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import Engine, insert, select

from deploy.local.localstack import free_port
from services.notification import commands, mail
from services.notification.schemas import NotificationOut
from services.notification.sender import ATTEMPTS, Sender
from services.notification.tables import contacts, notifications
from shared import db
from shared.backoff import Backoff
from tests.support.mailbox import Mailbox

# What a user planted in a name, and every address of these tests: none may reach a log line.
PLANTED = "victim@evil.example"
ADDRESSES = (PLANTED, "eve@evil.example", "nel@example.com", "ada@example.com",
             "bob@example.com", "gone@example.com", "busy@example.com")
SUBJECT = "Your enrollment is confirmed"


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    db.migrate("notification", database_url)  # the schema the service really runs on
    engine = db.make_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def sink(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Mailbox]:
    """The project's SMTP sink as a process, at its most talkative level."""
    monkeypatch.setenv("LOG_LEVEL", "DEBUG")
    box = Mailbox(tmp_path / "mail", free_port())
    box.start()
    yield box
    box.stop()


def sink_log(box: Mailbox) -> str:
    return (box.folder.parent / f"smtp-{box.port}.log").read_text()


class Refusing:
    """An SMTP server refusing `gone@` for good and `busy@` for now, quoting the address as
    real servers do."""

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          options: list[str]) -> str:
        if address.startswith("gone@"):
            return f"550 5.1.1 <{address}>: Recipient address rejected: no such user"
        if address.startswith("busy@"):
            return f"451 4.3.0 <{address}>: mailbox busy, try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"


@pytest.fixture
def refusing() -> Iterator[int]:
    controller = Controller(Refusing(), hostname="127.0.0.1", port=free_port())
    controller.start()
    yield controller.port
    controller.stop()


def student(engine: Engine, student_id: str, name: str, email: str, *, attempts: int = 0,
            subject: str = SUBJECT, age: int = 0) -> str:
    """A contact and one due letter for them, `age` seconds old (the sender goes oldest first);
    the letter's id."""
    now = datetime.now(UTC)
    letter_id = f"ntf-{student_id}"
    data = {"enrollment_id": f"enr-{student_id}", "student_id": student_id, "course_id": "crs-1"}
    with engine.begin() as conn:
        conn.execute(insert(contacts).values(student_id=student_id, name=name, email=email,
                                             registered_at=now))
        conn.execute(insert(notifications).values(
            id=letter_id, event_id=f"evt-{student_id}", event_type="enrollment.confirmed",
            student_id=student_id, correlation_id=f"corr-{student_id}", subject=subject,
            data=data, status="pending", attempts=attempts, next_attempt_at=now,
            created_at=now - timedelta(seconds=age)))
    return letter_id


def letter(engine: Engine, letter_id: str) -> Any:
    with engine.connect() as conn:
        return conn.execute(select(notifications).where(notifications.c.id == letter_id)).one()


def sender(engine: Engine, port: int) -> Sender:
    """A sender to 127.0.0.1:`port` retrying at once, so each pass is the next attempt."""
    return Sender(engine, mail.Mailer("127.0.0.1", port, timeout=5), mail.templates(),
                  backoff=Backoff(base=0, cap=0))


def sender_log(caplog: pytest.LogCaptureFixture) -> str:
    """The sender's own lines (the refusing server, in this process, logs what it is sent)."""
    return "\n".join(r.getMessage() for r in caplog.records
                     if r.name == "services.notification.sender")


def assert_no_address(*logs: str) -> None:
    for text in logs:
        assert not [a for a in ADDRESSES if a in text.lower()], text


def test_an_uncomposable_letter_fails_after_its_attempts_and_never_holds_up_the_next(
        engine: Engine, sink: Mailbox, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    eve = student(engine, "stu-eve", f"Eve\r\nBcc: {PLANTED}", "eve@evil.example", age=30)
    bob = student(engine, "stu-bob", "Bob", "bob@example.com", subject=f"Hi\r\nBcc: {PLANTED}",
                  age=20)  # a header Python's email refuses (ValueError) while composing
    ada = student(engine, "stu-ada", "Ada Lovelace", "ada@example.com", age=10)
    it = sender(engine, sink.port)
    assert it.run_once() == 1  # Ada's letter, queued behind both, goes out in the same pass
    assert [str(m["To"]) for m in sink.messages()] == ["Ada Lovelace <ada@example.com>"]
    assert (letter(engine, ada).status, letter(engine, ada).recipient) == (
        "sent", "ada@example.com")
    for _ in range(ATTEMPTS - 1):
        assert (letter(engine, eve).status, letter(engine, bob).status) == ("pending", "pending")
        assert it.run_once() == 0
    failed_eve, failed_bob = letter(engine, eve), letter(engine, bob)
    assert (failed_eve.status, failed_eve.attempts, failed_eve.sent_at) == (
        "failed", ATTEMPTS, None)
    assert failed_eve.last_error == ("Unsendable: the contact's name contains control "
                                     "characters (U+000D, U+000A)")
    assert (failed_bob.status, failed_bob.attempts) == ("failed", ATTEMPTS)
    assert failed_bob.last_error.startswith("ValueError: Header values may not contain")
    assert it.run_once() == 0 and letter(engine, eve).attempts == ATTEMPTS  # final
    assert len(sink.messages()) == 1
    assert not any(PLANTED in m.as_string() for m in sink.messages())
    with db.session_factory(engine)() as session:
        [shown] = NotificationOut(many=True).dump(commands.list_notifications(session, "stu-eve"))
    assert (shown["status"], shown["last_error"]) == ("failed", failed_eve.last_error)
    assert f"{eve} to student stu-eve failed after {ATTEMPTS} attempts" in caplog.text
    assert f"sent enrollment.confirmed email {ada} to student stu-ada" in caplog.text
    assert "stored mail 1 as " in sink_log(sink)
    assert_no_address(caplog.text, sink_log(sink))


def test_letters_stuck_from_before_settle(engine: Engine, sink: Mailbox,
                                          caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    # Retried 40 times before the rule existed: its attempts are spent, it fails at once.
    spent = student(engine, "stu-eve", f"Eve\r\nBcc: {PLANTED}", "eve@evil.example",
                    attempts=40, age=20)
    # A C1 control character (NEL) that Python's email would carry into the To header.
    fresh = student(engine, "stu-nel", "Nel\x85Bcc: x", "nel@example.com", age=10)
    it = sender(engine, sink.port)
    assert it.run_once() == 0
    assert (letter(engine, spent).status, letter(engine, spent).attempts) == ("failed", 41)
    for _ in range(ATTEMPTS - 1):
        assert letter(engine, fresh).status == "pending"
        it.run_once()
    settled = letter(engine, fresh)
    assert (settled.status, settled.attempts) == ("failed", ATTEMPTS)
    assert "U+0085" in settled.last_error
    assert sink.messages() == []
    assert_no_address(caplog.text, sink_log(sink))


def test_a_5xx_refusal_fails_the_letter_and_a_4xx_never_does(
        engine: Engine, refusing: int, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    gone = student(engine, "stu-gone", "Gone", "gone@example.com", age=20)
    busy = student(engine, "stu-busy", "Busy", "busy@example.com", age=10)
    it = sender(engine, refusing)
    for _ in range(ATTEMPTS + 3):
        assert it.run_once() == 0  # both are tried in every pass: a refusal ends no pass
    refused, waiting = letter(engine, gone), letter(engine, busy)
    assert (refused.status, refused.attempts) == ("failed", ATTEMPTS)
    assert refused.last_error == ("SMTPRecipientsRefused: 550 5.1.1 <<address>>: Recipient "
                                  "address rejected: no such user")
    assert (waiting.status, waiting.attempts) == ("pending", ATTEMPTS + 3)
    assert waiting.last_error.startswith("SMTPRecipientsRefused: 451 ")
    assert "ntf-stu-gone to student stu-gone failed after" in sender_log(caplog)
    assert_no_address(sender_log(caplog), refused.last_error, waiting.last_error)


def test_an_unreachable_server_never_fails_a_letter(engine: Engine,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    first = student(engine, "stu-ada", "Ada", "ada@example.com", attempts=100, age=20)
    second = student(engine, "stu-bob", "Bob", "bob@example.com", age=10)
    it = sender(engine, free_port())  # nothing listens there
    for _ in range(3):
        assert it.run_once() == 0
    waiting = letter(engine, first)
    assert (waiting.status, waiting.attempts) == ("pending", 103)
    assert waiting.last_error.startswith("ConnectionRefusedError")
    # Each pass ended at the unreachable server: the letter behind was not tried.
    assert (letter(engine, second).status, letter(engine, second).attempts) == ("pending", 0)
    assert_no_address(caplog.text)
