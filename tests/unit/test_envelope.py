"""The envelope: body, attributes, parsing and the 256 KiB limit."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from shared.envelope import (
    MAX_MESSAGE_BYTES,
    Envelope,
    MessageTooLarge,
    PoisonMessage,
    message_size,
)

FIELDS = {"event_id", "event_type", "event_version", "occurred_at", "correlation_id",
          "causation_id", "producer", "data"}


def envelope(**data: Any) -> Envelope:
    return Envelope("probe.ping", 1, dict(data), "probe", correlation_id="c-1")


def body_with(**changes: Any) -> str:
    return json.dumps(json.loads(envelope(n=1).body()) | changes)


def body_without(name: str) -> str:
    raw = json.loads(envelope(n=1).body())
    del raw[name]
    return json.dumps(raw)


def reason_of(body: str) -> str:
    with pytest.raises(PoisonMessage) as caught:
        Envelope.parse(body)
    return caught.value.reason


def test_the_body_is_json_with_every_envelope_field() -> None:
    event = envelope(n=1)
    body = json.loads(event.body())
    assert set(body) == FIELDS | {"actor"}
    assert body["event_type"] == "probe.ping" and body["event_version"] == 1
    assert body["data"] == {"n": 1} and body["producer"] == "probe"
    assert body["correlation_id"] == "c-1" and body["causation_id"] is None
    assert str(uuid.UUID(body["event_id"])) == event.event_id
    assert body["occurred_at"].endswith("Z")


def test_attributes_are_typed_as_the_contract_says() -> None:
    assert envelope().attributes() == {
        "event_type": {"DataType": "String", "StringValue": "probe.ping"},
        "event_version": {"DataType": "Number", "StringValue": "1"},
        "correlation_id": {"DataType": "String", "StringValue": "c-1"},
    }


def test_a_new_envelope_gets_its_own_ids() -> None:
    first = Envelope("probe.ping", 1, {}, "probe")
    second = Envelope("probe.ping", 1, {}, "probe")
    assert first.event_id != second.event_id
    uuid.UUID(first.correlation_id)


def test_parse_round_trips() -> None:
    original = Envelope("probe.ping", 2, {"n": 3}, "probe", correlation_id="c",
                        causation_id=str(uuid.uuid4()))
    assert Envelope.parse(original.body()) == original


@pytest.mark.parametrize("body", ["{not json", "", '{"event_id": '])
def test_broken_json_is_poison(body: str) -> None:
    assert reason_of(body) == "broken_json"


@pytest.mark.parametrize("body", ["[1, 2]", '"text"', "null", "42"])
def test_a_body_that_is_not_an_object_is_an_invalid_envelope(body: str) -> None:
    assert reason_of(body) == "invalid_envelope"


@pytest.mark.parametrize("name", sorted(FIELDS))
def test_a_missing_field_is_an_invalid_envelope(name: str) -> None:
    assert reason_of(body_without(name)) == "invalid_envelope"


def test_an_event_from_before_actor_existed_reads_with_no_actor() -> None:
    assert Envelope.parse(body_without("actor")).actor is None


def test_the_actor_is_carried_in_the_body() -> None:
    event = Envelope("x.y", 1, {}, "probe", actor="student-7")
    assert Envelope.parse(event.body()).actor == "student-7"


@pytest.mark.parametrize("change", [
    {"actor": ""},
    {"actor": "x" * 65},
    {"event_id": "not-a-uuid"},
    {"event_version": "1"},
    {"event_version": True},
    {"event_version": -1},
    {"occurred_at": "2026-11-22T10:30:00"},  # no time zone
    {"occurred_at": "yesterday"},
    {"event_type": ""},
    {"producer": None},
    {"correlation_id": ""},
    {"data": [1]},
])
def test_an_invalid_field_is_an_invalid_envelope(change: dict[str, Any]) -> None:
    with pytest.raises(PoisonMessage) as caught:
        Envelope.parse(body_with(**change))
    assert caught.value.reason == "invalid_envelope"
    assert next(iter(change)) in caught.value.detail


def sized(total: int) -> Envelope:
    """An envelope whose message (body and attributes) is exactly `total` bytes."""
    overhead = message_size(envelope(text="").body(), envelope(text="").attributes())
    event = envelope(text="x" * (total - overhead))
    assert message_size(event.body(), event.attributes()) == total
    return event


@pytest.mark.parametrize("total", [MAX_MESSAGE_BYTES - 1, MAX_MESSAGE_BYTES])
def test_a_message_up_to_256_kib_is_accepted(total: int) -> None:
    sized(total).check_size()


def test_a_message_over_256_kib_is_refused() -> None:
    assert MAX_MESSAGE_BYTES == 262144
    with pytest.raises(MessageTooLarge, match="at most 262144 bytes"):
        sized(MAX_MESSAGE_BYTES + 1).check_size()


def test_the_attributes_count_against_the_limit() -> None:
    event = sized(MAX_MESSAGE_BYTES + 1)
    assert len(event.body().encode()) < MAX_MESSAGE_BYTES
    with pytest.raises(MessageTooLarge):
        event.check_size()


@pytest.mark.parametrize(("text", "size"), [("é", 2), ("€", 3), ("😀", 4), ("a", 1)])
def test_message_size_counts_utf8_bytes(text: str, size: int) -> None:
    assert message_size(text * 10, {}) == 10 * size


def test_attribute_values_are_counted_in_bytes() -> None:
    plain = Envelope("probe.ping", 1, {}, "probe", correlation_id="e" * 10)
    accented = Envelope("probe.ping", 1, {}, "probe", correlation_id="é" * 10)
    assert message_size("", accented.attributes()) - message_size("", plain.attributes()) == 10


def test_a_message_under_the_limit_in_characters_but_over_in_bytes_is_refused() -> None:
    def event(text: str) -> Envelope:
        return Envelope("probe.ping", 1, {"text": text}, "probe", correlation_id="é" * 100)

    empty = event("")
    chars = len(empty.body()) + sum(len(k) + len(a["DataType"]) + len(a["StringValue"])
                                    for k, a in empty.attributes().items())
    big = event("x" * (MAX_MESSAGE_BYTES - 50 - chars))  # 50 characters under, 50 bytes over
    with pytest.raises(MessageTooLarge):
        big.check_size()
