"""The payment worker: charges and refunds through the gateway, and relays the outbox."""

from __future__ import annotations

from services.payment import tables
from services.payment.app import build_gateway
from services.payment.handlers import handlers
from shared import logs
from shared.runtime import Runtime, serve
from shared.settings import Settings


def main() -> int:
    settings = Settings.from_env()
    logs.configure("payment", settings.log_level)
    runtime = Runtime.build("payment", outbox=tables.outbox, inbox=tables.inbox,
                            settings=settings)
    consumer = runtime.consumer(runtime.dispatcher(handlers(build_gateway(settings))))
    return serve(runtime, consumer, runtime.relay())
