"""The enrollment worker: consumes payment results and relays the outbox."""

from __future__ import annotations

from services.enrollment import handlers, tables
from shared import logs
from shared.runtime import Runtime, serve
from shared.settings import Settings


def main() -> int:
    settings = Settings.from_env()
    logs.configure("enrollment", settings.log_level)
    runtime = Runtime.build("enrollment", outbox=tables.outbox, inbox=tables.inbox,
                            settings=settings)
    consumer = runtime.consumer(runtime.dispatcher(handlers.HANDLERS))
    return serve(runtime, consumer, runtime.relay())
