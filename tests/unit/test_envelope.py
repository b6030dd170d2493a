"""The envelope: body, attributes, parsing and the 256 KiB limit (DESIGN section 4)."""

from __future__ import annotations

import json

import pytest

from shared.envelope import (
    MAX_MESSAGE_BYTES,
    Envelope,
    MessageTooLarge,
    PoisonMessage,
    message_size,
)


def envelope(**data: object) -> Envelope:
    return Envelope("probe.ping", 1, dict(data), "probe", correlation_id="c-1")


def test_body_carries_every_envelope_field() -> None:
    body = json.loads(envelope(n=1).body())
    assert set(body) == {"event_id", "event_type", "event_version", "occurred_at",
                         "correlation_id", "causation_id", "producer", "data"}
    assert body["occurred_at"].endswith("Z") and body["causation_id"] is None


def test_attributes_are_typed_as_the_contract_says() -> None:
    attrs = envelope().attributes()
    assert attrs == {
        "event_type": {"DataType": "String", "StringValue": "probe.ping"},
        "event_version": {"DataType": "Number", "StringValue": "1"},
        "correlation_id": {"DataType": "String", "StringValue": "c-1"},
    }


def test_parse_round_trips() -> None:
    original = envelope(n=3)
    assert Envelope.parse(original.body()) == original


@pytest.mark.parametrize(("body", "reason"), [
    ("{not json", "broken_json"),
    ("[1, 2]", "invalid_envelope"),
    ('{"event_type": "x"}', "invalid_envelope"),
])
def test_unreadable_bodies_are_poison(body: str, reason: str) -> None:
    with pytest.raises(PoisonMessage) as caught:
        Envelope.parse(body)
    assert caught.value.reason == reason


def test_an_invalid_field_is_poison() -> None:
    body = json.loads(envelope().body()) | {"event_id": "not-a-uuid"}
    with pytest.raises(PoisonMessage, match="event_id"):
        Envelope.parse(json.dumps(body))


def test_the_size_limit_counts_body_and_attributes() -> None:
    small = envelope(text="")
    overhead = message_size(small.body(), small.attributes())
    fits = envelope(text="x" * (MAX_MESSAGE_BYTES - overhead))
    fits.check_size()
    too_big = envelope(text="x" * (MAX_MESSAGE_BYTES - overhead + 1))
    with pytest.raises(MessageTooLarge, match="at most 262144 bytes"):
        too_big.check_size()


def test_size_is_counted_in_bytes_not_characters() -> None:
    plain = Envelope("probe.ping", 1, {}, "probe", correlation_id="e" * 10)
    accented = Envelope("probe.ping", 1, {}, "probe", correlation_id="é" * 10)
    # attributes go as UTF-8: "é" is 2 bytes; the JSON body escapes it as \u00e9 (6 bytes)
    assert message_size("", accented.attributes()) - message_size("", plain.attributes()) == 10
    assert (message_size(accented.body(), accented.attributes())
            - message_size(plain.body(), plain.attributes())) == 10 + 50
