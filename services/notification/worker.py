"""The notification worker: keeps the contacts, records emails, and sends them over SMTP."""

from __future__ import annotations

from services.notification import mail, tables
from services.notification.handlers import HANDLERS
from services.notification.sender import Sender
from shared import logs
from shared.backoff import Backoff
from shared.runtime import Runtime, serve
from shared.settings import Settings


def main() -> int:
    settings = Settings.from_env()
    logs.configure("notification", settings.log_level)
    runtime = Runtime.build("notification", inbox=tables.inbox, settings=settings)
    consumer = runtime.consumer(runtime.dispatcher(HANDLERS))
    sender = Sender(runtime.engine, mail.Mailer(settings.smtp_host, settings.smtp_port),
                    mail.templates(),
                    backoff=Backoff(settings.backoff_base, settings.backoff_cap))
    return serve(runtime, consumer, None, jobs={"sender": sender.run})
