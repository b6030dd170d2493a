"""Emails: rendered from templates as plain text and HTML, sent over SMTP."""

from __future__ import annotations

import smtplib
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, formataddr
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from services.notification import domain
from shared.text import control_characters

FROM = formataddr(("Online School", "no-reply@school.example"))
TEMPLATES = Path(__file__).resolve().parent / "templates"


class Unsendable(ValueError):
    """This letter's own data cannot make an email: no retry changes that."""


def templates() -> Environment:
    """HTML is autoescaped (names and ids come from users); a missing field is an error."""
    env = Environment(loader=FileSystemLoader(TEMPLATES), undefined=StrictUndefined,
                      autoescape=select_autoescape(["html"]), keep_trailing_newline=True,
                      trim_blocks=True, lstrip_blocks=True)
    env.filters["money"] = domain.money
    env.filters["score"] = domain.score
    return env


@dataclass(frozen=True)
class Letter:
    """One notification, ready to be rendered for its recipient."""

    id: str
    event_id: str
    event_type: str
    correlation_id: str
    subject: str
    data: dict[str, Any]


def render(env: Environment, event_type: str, data: dict[str, Any], name: str, subject: str,
           reference: str) -> tuple[str, str]:
    """The email's plain text and HTML; a TemplateError if the templates cannot render it."""
    context = data | {"name": name, "subject": subject, "reference": reference}
    return (env.get_template(f"{event_type}.txt").render(context),
            env.get_template(f"{event_type}.html").render(context))


def printable(what: str, value: str) -> None:
    """Refuse a contact's field holding control characters (shared.text: a line break would
    start a header of its own, `Eve\\r\\nBcc: ...`), naming them, not the value: the reason is
    logged, and logs carry no names or addresses."""
    if found := control_characters(value):
        raise Unsendable(f"the contact's {what} contains control characters "
                         f"({', '.join(found)})")


def compose(env: Environment, letter: Letter, name: str, email: str, now: datetime
            ) -> EmailMessage:
    """The email for `name` <`email`>; Unsendable for a contact with control characters (stored
    before the API refused them), and whatever rendering or a header raises otherwise."""
    printable("name", name)
    printable("address", email)
    text, html = render(env, letter.event_type, letter.data, name, letter.subject, letter.id)
    message = EmailMessage()
    message["From"] = FROM
    message["To"] = formataddr((name, email))
    message["Subject"] = letter.subject
    message["Date"] = format_datetime(now)
    # A stable Message-ID: should a resend ever happen (a crash between the SMTP server's
    # acceptance and our commit), mail systems can recognise it as the same message.
    message["Message-ID"] = f"<{letter.id}@school.example>"
    message["X-Event-ID"] = letter.event_id
    message["X-Event-Type"] = letter.event_type
    message["X-Correlation-ID"] = letter.correlation_id
    message.set_content(text)
    message.add_alternative(html, subtype="html")
    return message


@dataclass(frozen=True)
class Mailer:
    """SMTP to `SMTP_HOST`:`SMTP_PORT` (the sink under `make up` and the tests)."""

    host: str
    port: int
    timeout: float = 10.0

    def send(self, message: EmailMessage) -> None:
        with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
            smtp.send_message(message)
