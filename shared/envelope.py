"""The event envelope every message carries: body, message attributes and the 256 KiB limit."""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from functools import cache
from typing import Any

from marshmallow import Schema, ValidationError, fields, validate

# SQS and SNS count the body and the message attributes against one 256 KiB limit.
MAX_MESSAGE_BYTES = 256 * 1024


class MessageTooLarge(ValueError):
    """An event whose message would exceed SQS's 256 KiB limit: refused, never truncated."""


class DeadLetterReason(StrEnum):
    """Why a message is in a dead-letter queue: its `dlq_reason` attribute, one of these."""

    BROKEN_JSON = "broken_json"  # the body is not JSON
    INVALID_ENVELOPE = "invalid_envelope"  # not an envelope, or one that fails its schema
    UNKNOWN_EVENT_TYPE = "unknown_event_type"  # no schema of that type
    UNSUPPORTED_VERSION = "unsupported_version"  # newer than the newest known, or unknown
    INVALID_DATA = "invalid_data"  # the data fail their version's schema
    UNHANDLED_EVENT_TYPE = "unhandled_event_type"  # this consumer has no handler for it
    UNREADABLE = "unreadable"  # reading raised something else
    PERMANENT_FAILURE = "permanent_failure"  # the handler said no retry can help
    RETRIES_EXHAUSTED = "retries_exhausted"  # the retry budget is spent
    # Moved by SQS's RedrivePolicy (the safety net), so without a dlq_reason attribute.
    MAX_RECEIVE_COUNT_EXCEEDED = "max_receive_count_exceeded"


class PoisonMessage(Exception):
    """A message no retry can fix: it goes to the dead-letter queue at once with `reason`."""

    def __init__(self, reason: DeadLetterReason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def utc_now_iso() -> str:
    """ISO 8601 UTC with milliseconds and a Z, as in the envelope example."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def new_id() -> str:
    return str(uuid.uuid4())


class EnvelopeSchema(Schema):
    event_id = fields.UUID(required=True)
    event_type = fields.String(required=True, validate=validate.Length(min=1, max=100))
    event_version = fields.Integer(required=True, strict=True, validate=validate.Range(min=1))
    occurred_at = fields.AwareDateTime(required=True, format="iso")
    correlation_id = fields.String(required=True, validate=validate.Length(min=1, max=100))
    causation_id = fields.String(required=True, allow_none=True)
    producer = fields.String(required=True, validate=validate.Length(min=1, max=50))
    # Who caused it: the `sub` of the request's token, null when the system acts. Optional, so
    # events written before it existed (in a queue or a DLQ) still read.
    actor = fields.String(load_default=None, allow_none=True,
                          validate=validate.Length(min=1, max=64))
    data = fields.Dict(required=True)


@dataclass(frozen=True)
class Envelope:
    event_type: str
    event_version: int
    data: dict[str, Any]
    producer: str
    correlation_id: str = field(default_factory=new_id)
    causation_id: str | None = None
    event_id: str = field(default_factory=new_id)
    occurred_at: str = field(default_factory=utc_now_iso)
    actor: str | None = None

    def body(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"), sort_keys=True)

    def attributes(self) -> dict[str, dict[str, str]]:
        """Message attributes carried on every SQS and SNS message of this event."""
        return {
            "event_type": {"DataType": "String", "StringValue": self.event_type},
            "event_version": {"DataType": "Number", "StringValue": str(self.event_version)},
            "correlation_id": {"DataType": "String", "StringValue": self.correlation_id},
        }

    def check_size(self, attributes: dict[str, dict[str, str]] | None = None) -> None:
        """Refuse the event if its message, with `attributes` (default: its own), is too big."""
        size = message_size(self.body(), attributes or self.attributes())
        if size > MAX_MESSAGE_BYTES:
            raise MessageTooLarge(
                f"{self.event_type} {self.event_id} is {size} bytes with its attributes; "
                f"SQS and SNS accept at most {MAX_MESSAGE_BYTES} bytes"
            )

    @classmethod
    def parse(cls, body: str) -> Envelope:
        """Parse and validate the envelope (not yet the data) or raise PoisonMessage."""
        try:
            raw = json.loads(body)
        except (TypeError, ValueError) as exc:
            raise PoisonMessage(DeadLetterReason.BROKEN_JSON, f"body is not JSON ({exc})") from None
        if not isinstance(raw, dict):
            raise PoisonMessage(DeadLetterReason.INVALID_ENVELOPE, "body is not a JSON object")
        schema = _envelope_schema()
        try:
            schema.load(raw)
        except ValidationError as exc:
            raise PoisonMessage(DeadLetterReason.INVALID_ENVELOPE,
                                json.dumps(exc.messages)) from None
        fields_: dict[str, Any] = {name: raw.get(name) for name in schema.fields}
        return cls(**fields_)


@cache
def _envelope_schema() -> EnvelopeSchema:
    """Built once, on first use (building a schema costs more than loading with it): load()
    keeps no state between calls, so threads may share it."""
    return EnvelopeSchema()


def message_size(body: str, attributes: dict[str, dict[str, str]]) -> int:
    """Bytes SQS counts for a message: body plus each attribute's name, type and value."""
    size = len(body.encode())
    for name, attr in attributes.items():
        size += len(name.encode()) + len(attr["DataType"].encode())
        size += len(attr.get("StringValue", "").encode())
    return size
