"""JSON log lines carrying service, correlation_id, event_id and outcome (STYLE rule 9)."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from pythonjsonlogger.json import JsonFormatter

correlation_id: ContextVar[str | None] = ContextVar("correlation_id", default=None)
event_id: ContextVar[str | None] = ContextVar("event_id", default=None)


class _Context(logging.Filter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def filter(self, record: logging.LogRecord) -> bool:
        record.service = self.service
        if not hasattr(record, "correlation_id"):
            record.correlation_id = correlation_id.get()
        if not hasattr(record, "event_id"):
            record.event_id = event_id.get()
        return True


def configure(service: str, level: str = "INFO") -> None:
    """Send every log record to stderr as one JSON object per line."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(
        "{asctime}{levelname}{name}{service}{correlation_id}{event_id}{message}",
        style="{", rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
    ))
    handler.addFilter(_Context(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("botocore", "urllib3", "boto3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


@contextmanager
def bound(*, correlation: str | None = None, event: str | None = None) -> Iterator[None]:
    """Bind correlation and event ids to every log line written inside the block."""
    tokens = [(correlation_id, correlation_id.set(correlation)) if correlation else None,
              (event_id, event_id.set(event)) if event else None]
    try:
        yield
    finally:
        for pair in tokens:
            if pair:
                pair[0].reset(pair[1])
