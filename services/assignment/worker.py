"""The assignment worker: grades submissions in order per student, and relays the outbox."""

from __future__ import annotations

from services.assignment import handlers, tables
from shared import logs
from shared.runtime import Runtime, serve
from shared.settings import Settings


def main() -> int:
    settings = Settings.from_env()
    logs.configure("assignment", settings.log_level)
    runtime = Runtime.build("assignment", outbox=tables.outbox, inbox=tables.inbox,
                            settings=settings)
    consumer = runtime.consumer(runtime.dispatcher(handlers.HANDLERS))
    return serve(runtime, consumer, runtime.relay())
