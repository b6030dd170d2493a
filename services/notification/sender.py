"""The sender: delivers committed `pending` notifications whose contact is known, over SMTP.

A letter's status (the `status` column, shown by GET /notifications):
- `pending`: recorded by the handler; waiting for its contact, its turn or its next attempt;
- `sent`: the SMTP server accepted it (`sent_at`, and `recipient` the address it went to);
- `failed`: it can never be sent; `last_error` says why. Final: the sender never tries it again.

Several worker processes may run at once: a row is claimed by moving its `next_attempt_at` past
now in a conditional UPDATE, so exactly one sender sends it. A claim left by a crashed sender
expires after `lease` seconds and the row is sent again (at least once; the Message-ID is stable).

Every failed attempt is recorded on its row (`attempts`, `last_error`) and retried with backoff;
which failures end a letter is the rule of `permanent`:
- transient, retried for ever (an email is never dropped for an outage): the server unreachable
  (which also ends the pass: the rest would fail too), a 4xx reply, any other SMTP trouble that
  is the server's rather than this letter's;
- permanent: the letter cannot be composed (a contact stored with control characters, a header
  that cannot be written, templates that no longer render it), or the server refuses it with a
  5xx reply (to its sender, its recipient or its content). A permanent failure at the
  ATTEMPTS-th attempt or later makes the letter `failed`; the attempts before give a deploy
  (fixed templates, a fixed server) the time of the backoff to mend it. The count is the row's
  `attempts`, transient ones included: a row that had already been retried that often before
  this rule existed settles at its next permanent failure.

One row's failure, whatever it raises, never aborts the pass: only a database error does, and
then the rows stay pending in the database. Log lines and `last_error` name the notification,
its event and its student, never an address (`reason` blanks the ones a server's reply quotes).
"""

from __future__ import annotations

import logging
import re
import smtplib
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from jinja2 import Environment
from sqlalchemy import Engine, Row, select, update

from services.notification.mail import Letter, Mailer, compose
from services.notification.tables import contacts, notifications
from shared.backoff import Backoff
from shared.logs import bound
from shared.runtime import Runtime
from shared.service import Job

log = logging.getLogger(__name__)
# The SMTP failures that mean "the server is unreachable now" (with the sockets' own: see
# `unreachable`): the rest of this pass would fail too.
UNREACHABLE = (smtplib.SMTPServerDisconnected, smtplib.SMTPConnectError)
# Attempts a letter gets before a permanent failure makes it `failed` (with the default backoff,
# 2 s doubling, the five take at most half a minute).
ATTEMPTS = 5
# Anything shaped like an address, as a server's reply quotes it (`<ada@example.com>: unknown`).
ADDRESS = re.compile(r"[^\s<>()\[\]{},;:\"'@]+@[^\s<>()\[\]{},;:\"'@]+")


def unreachable(exc: Exception) -> bool:
    """Whether sending raised because the server cannot be reached now: a socket's error
    (refused, reset, timed out) or a lost SMTP connection. smtplib's exceptions are all OSErrors:
    a server's reply is not one of these, and ends no pass."""
    return isinstance(exc, UNREACHABLE) or (
        isinstance(exc, OSError) and not isinstance(exc, smtplib.SMTPException))


def permanent(exc: Exception) -> bool:
    """Whether no retry can send the letter that raised `exc` on sending: a 5xx refusal of its
    sender, recipient or content, a letter the server cannot take (SMTPUTF8), or smtplib
    failing on the message itself. An OSError and the rest of SMTP are transient."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return all(code >= 500 for code, _ in exc.recipients.values())
    if isinstance(exc, smtplib.SMTPSenderRefused | smtplib.SMTPDataError):
        return exc.smtp_code >= 500
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return True
    return not isinstance(exc, smtplib.SMTPException | OSError)


def reason(exc: Exception) -> str:
    """Why an attempt failed, for the log line and `last_error`: the exception's type and the
    server's reply, with the addresses blanked (SMTPRecipientsRefused's own text is a dict keyed
    by the recipient's address)."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        text = "; ".join(f"{code} {_decoded(reply)}" for code, reply in exc.recipients.values())
    elif isinstance(exc, smtplib.SMTPResponseException):
        text = f"{exc.smtp_code} {_decoded(exc.smtp_error)}"
    else:
        text = str(exc)
    return ADDRESS.sub("<address>", f"{type(exc).__name__}: {text}")[:500]


def _decoded(reply: bytes | str) -> str:
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)


@dataclass(frozen=True)
class Failure:
    """Why one attempt failed: whether a retry could ever succeed, and whether the rest of the
    pass would fail too."""

    error: Exception
    permanent: bool
    unreachable: bool = False


class Sender:
    def __init__(self, engine: Engine, mailer: Mailer, templates: Environment, *,
                 backoff: Backoff | None = None, lease: float = 60.0, batch: int = 50,
                 attempts: int = ATTEMPTS) -> None:
        self.engine, self.mailer, self.templates = engine, mailer, templates
        self.backoff = backoff or Backoff(base=2.0, cap=120.0)
        self.lease, self.batch, self.attempts = timedelta(seconds=lease), batch, attempts

    def run_once(self) -> int:
        """Send what is due now; return how many emails went out. A failure is its row's alone;
        only an unreachable server ends the pass early."""
        sent = 0
        for row in self._due():
            if not self._claim(row.id):
                continue  # another sender has it
            failure = self._attempt(row)
            if failure is None:
                self._sent(row)
                sent += 1
                continue
            self._failed(row, failure)
            if failure.unreachable:
                break
        return sent

    def _due(self) -> list[Row[Any]]:
        query = (select(notifications, contacts.c.name, contacts.c.email)
                 .join(contacts, contacts.c.student_id == notifications.c.student_id)
                 .where(notifications.c.status == "pending",
                        notifications.c.next_attempt_at <= datetime.now(UTC))
                 .order_by(notifications.c.created_at).limit(self.batch))
        with self.engine.connect() as conn:
            return list(conn.execute(query).all())

    def _claim(self, notification_id: str) -> bool:
        now = datetime.now(UTC)
        with self.engine.begin() as conn:
            result = conn.execute(update(notifications).where(
                notifications.c.id == notification_id, notifications.c.status == "pending",
                notifications.c.next_attempt_at <= now).values(next_attempt_at=now + self.lease))
        return result.rowcount == 1

    def _attempt(self, row: Row[Any]) -> Failure | None:
        """Compose and send one letter; what stopped it, if anything. Every exception is caught:
        it belongs to this row, and the next rows are sent all the same."""
        letter = Letter(row.id, row.event_id, row.event_type, row.correlation_id, row.subject,
                        row.data)
        try:
            message = compose(self.templates, letter, row.name, row.email, datetime.now(UTC))
        except Exception as exc:  # the row's data or the templates: no SMTP retry mends it
            return Failure(exc, permanent=True)
        try:
            self.mailer.send(message)
        except Exception as exc:  # classified: 4xx and outages are retried for ever
            return Failure(exc, permanent(exc), unreachable(exc))
        return None

    def _sent(self, row: Row[Any]) -> None:
        # The recipient is copied in SQL rather than bound: a database error's message, which
        # the pass's log line carries, prints the statement's parameters.
        address = select(contacts.c.email).where(
            contacts.c.student_id == row.student_id).scalar_subquery()
        with self.engine.begin() as conn:
            conn.execute(update(notifications).where(notifications.c.id == row.id).values(
                status="sent", sent_at=datetime.now(UTC), recipient=address, last_error=None,
                attempts=notifications.c.attempts + 1))
        with bound(correlation=row.correlation_id, event=row.event_id):
            log.info("sent %s email %s to student %s", row.event_type, row.id, row.student_id,
                     extra={"outcome": "sent"})

    def _failed(self, row: Row[Any], failure: Failure) -> None:
        """Record a failed attempt: `failed` for a permanent failure once the letter has had
        its attempts, otherwise pending again after a backoff."""
        attempts, why = row.attempts + 1, reason(failure.error)
        if failure.permanent and attempts >= self.attempts:
            self._record(row.id, attempts=attempts, last_error=why, status="failed")
            with bound(correlation=row.correlation_id, event=row.event_id):
                log.error("%s email %s to student %s failed after %d attempts: %s",
                          row.event_type, row.id, row.student_id, attempts, why,
                          extra={"outcome": "send_failed"})
            return
        delay = self.backoff.delay(attempts)
        self._record(row.id, attempts=attempts, last_error=why,
                     next_attempt_at=datetime.now(UTC) + timedelta(seconds=delay))
        with bound(correlation=row.correlation_id, event=row.event_id):
            log.warning("cannot send %s email %s to student %s (attempt %d, %s: %s); retrying "
                        "in %.1f s", row.event_type, row.id, row.student_id, attempts,
                        "permanent" if failure.permanent else "transient", why, delay,
                        extra={"outcome": "send_retry"})

    def _record(self, notification_id: str, **values: Any) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(notifications).where(notifications.c.id == notification_id)
                         .values(**values))

    def run(self, stop: threading.Event, interval: float = 0.25) -> None:
        """Send until `stop` is set; a database error is logged and the loop goes on."""
        while not stop.is_set():
            try:
                sent = self.run_once()
            except Exception:  # the rows stay pending in the database: nothing is lost
                log.exception("sender pass failed; trying again", extra={"outcome": "error"})
                stop.wait(5)
                continue
            if not sent:
                stop.wait(interval)


def job(rt: Runtime) -> Job:
    """The worker's sender loop, with the process's templates (the service's resources)."""
    s = rt.settings
    return Sender(rt.engine, Mailer(s.smtp_host, s.smtp_port), rt.resources,
                  backoff=Backoff(s.backoff_base, s.backoff_cap)).run
