"""The sender: delivers committed `pending` notifications whose contact is known, over SMTP.

Several worker processes may run at once: a row is claimed by moving its `next_attempt_at` past
now in a conditional UPDATE, so exactly one sender sends it. A claim left by a crashed sender
expires after `lease` seconds and the row is sent again (at least once; the Message-ID is stable).
A failed send is retried with backoff, forever: an email is never dropped. What is retried is
SMTP: the handler already rendered the email once, and dead-letters an event whose templates
cannot render it, so a template error here means the templates changed since (a deploy); the row
waits, with backoff, for the fixed ones.
"""

from __future__ import annotations

import logging
import smtplib
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

from jinja2 import Environment, TemplateError
from sqlalchemy import Engine, Row, select, update

from services.notification.mail import Letter, Mailer, compose
from services.notification.tables import contacts, notifications
from shared.backoff import Backoff
from shared.logs import bound
from shared.runtime import Runtime
from shared.service import Job

log = logging.getLogger(__name__)
# Failures that mean "the server is unreachable now": the rest of this pass would fail too.
UNREACHABLE = (OSError, smtplib.SMTPServerDisconnected, smtplib.SMTPConnectError)


class Sender:
    def __init__(self, engine: Engine, mailer: Mailer, templates: Environment, *,
                 backoff: Backoff | None = None, lease: float = 60.0, batch: int = 50) -> None:
        self.engine, self.mailer, self.templates = engine, mailer, templates
        self.backoff = backoff or Backoff(base=2.0, cap=120.0)
        self.lease, self.batch = timedelta(seconds=lease), batch

    def run_once(self) -> int:
        """Send what is due now; return how many emails went out."""
        sent = 0
        for row in self._due():
            if not self._claim(row.id):
                continue  # another sender has it
            try:
                self._send(row)
            except UNREACHABLE as exc:
                self._failed(row, exc)
                break
            except (smtplib.SMTPException, TemplateError) as exc:
                # Refused by the server, or templates changed since the handler rendered this
                # event: the row stays pending and is tried again later.
                self._failed(row, exc)
                continue
            sent += 1
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

    def _send(self, row: Row[Any]) -> None:
        letter = Letter(row.id, row.event_id, row.event_type, row.correlation_id, row.subject,
                        row.data)
        now = datetime.now(UTC)
        self.mailer.send(compose(self.templates, letter, row.name, row.email, now))
        with self.engine.begin() as conn:
            conn.execute(update(notifications).where(notifications.c.id == row.id).values(
                status="sent", sent_at=now, recipient=row.email, last_error=None,
                attempts=notifications.c.attempts + 1))
        with bound(correlation=row.correlation_id, event=row.event_id):
            log.info("sent %s email to %s", row.event_type, row.email, extra={"outcome": "sent"})

    def _failed(self, row: Row[Any], exc: Exception) -> None:
        attempts = row.attempts + 1
        delay = self.backoff.delay(attempts)
        with self.engine.begin() as conn:
            conn.execute(update(notifications).where(notifications.c.id == row.id).values(
                attempts=attempts, last_error=f"{type(exc).__name__}: {exc}"[:500],
                next_attempt_at=datetime.now(UTC) + timedelta(seconds=delay)))
        with bound(correlation=row.correlation_id, event=row.event_id):
            log.warning("cannot send %s email to %s (attempt %d: %s); retrying in %.1f s",
                        row.event_type, row.email, attempts, exc, delay,
                        extra={"outcome": "send_retry"})

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
