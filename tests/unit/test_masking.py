"""Dead letters as operators see them: payment tokens and emails masked
field by field, the rest of the body readable and in its order."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest

from services.console import conversation, queues
from shared import cli
from shared.masking import MASK, MASKED_EMAIL, mask_body, mask_text, sensitive
from shared.topology import TOPOLOGY

REQUESTED: dict[str, Any] = {"event_id": "0b1c7a4e-6f1d-4a53-9a43-6f3c2e1d9b10",
             "event_type": "enrollment.requested", "event_version": 2,
             "occurred_at": "2026-11-22T10:30:00.123Z",
             "correlation_id": "5d9f2b8e-0c1a-4e8b-b7a2-3c4d5e6f7a8b", "causation_id": None,
             "producer": "enrollment", "actor": "student-7",
             "data": {"enrollment_id": "en-1", "student_id": "st-1", "course_id": "co-1",
                      "amount_cents": 4900, "currency": "USD", "payment_token": "tok_ok"}}
REGISTERED = {"event_id": "e-2", "event_type": "student.registered", "event_version": 1,
              "data": {"student_id": "st-2", "name": "Ada", "email": "ada@example.com"}}


def masked(body: object) -> object:
    return json.loads(mask_body(json.dumps(body)))


def test_a_payment_token_is_masked_and_nothing_else_is_touched() -> None:
    shown = masked(REQUESTED)
    expected = json.loads(json.dumps(REQUESTED))
    expected["data"]["payment_token"] = MASK
    assert shown == expected


def test_the_body_stays_compact_json_in_its_key_order() -> None:
    body = json.dumps(REGISTERED, indent=2)
    shown = mask_body(body)
    assert list(json.loads(shown)) == list(REGISTERED)
    assert list(json.loads(shown)["data"]) == ["student_id", "name", "email"]
    assert shown == json.dumps(json.loads(shown), separators=(",", ":"))
    assert "ada@example.com" not in shown and "example.com" not in shown
    assert json.loads(shown)["data"] == {"student_id": "st-2", "name": "Ada", "email": MASK}


def test_nested_and_listed_values_are_walked() -> None:
    body = {"batch": [{"data": {"payment_token": "secret-9"}},
                      {"data": {"contact": {"email": "x@y.org", "phone": "+441234"}}}],
            "recipients": ["a@b.io", "c@d.io"]}
    assert masked(body) == {"batch": [{"data": {"payment_token": MASK}},
                                      {"data": {"contact": {"email": MASK, "phone": MASK}}}],
                            "recipients": MASK}


def test_an_sns_wrapped_body_is_masked_inside_its_message() -> None:
    """Raw delivery off: the event is a JSON string in the notification's Message."""
    wrapper = {"Type": "Notification", "MessageId": "m-1", "TopicArn": "arn:aws:sns:x",
               "Message": json.dumps(REGISTERED), "Timestamp": "2026-11-22T10:30:00.123Z"}
    shown = masked(wrapper)
    assert isinstance(shown, dict) and list(shown) == list(wrapper)
    assert isinstance(shown["Message"], str)  # still a string, as SNS sent it
    inner = json.loads(shown["Message"])
    assert inner["data"] == {"student_id": "st-2", "name": "Ada", "email": MASK}
    assert inner["event_id"] == "e-2" and shown["TopicArn"] == "arn:aws:sns:x"


def test_an_email_under_an_innocent_key_is_masked() -> None:
    body = {"data": {"note": "please write to ada.lovelace+school@mail.example.co.uk soon",
                     "content": "ADA@EXAMPLE.COM"}}
    shown = masked(body)
    assert shown == {"data": {"note": f"please write to {MASKED_EMAIL} soon",
                              "content": MASKED_EMAIL}}


def test_ids_and_other_values_are_untouched() -> None:
    body = {"student_id": "st-1", "enrollment_id": "c1f0e5f2-8d0a-4c7e-9a55-0d8b5e7a1f3c",
            "token_use": "access", "payment_token_id": "pt-1", "score": 9.5, "flagged": False,
            "due_at": None, "title": "Intro to tokens & email etiquette", "to_do": ["read"]}
    assert masked(body) == body


@pytest.mark.parametrize("key", ["payment_token", "paymentToken", "Payment-Token", "token",
                                 "Token", "email", "student_email", "to", "To", "recipient",
                                 "access_token", "password"])
def test_the_keys_that_name_a_secret_or_a_contact(key: str) -> None:
    assert sensitive(key)
    assert masked({key: 12345, "kept": "yes"}) == {key: MASK, "kept": "yes"}


@pytest.mark.parametrize("key", ["student_id", "token_use", "payment_id", "topic", "name",
                                 "TopicArn", "event_type", "tokens_used"])
def test_the_keys_that_do_not(key: str) -> None:
    assert not sensitive(key)


def test_a_null_stays_null() -> None:
    assert masked({"payment_token": None, "email": None}) == {"payment_token": None,
                                                              "email": None}


def test_a_gateway_token_in_any_text_is_masked_without_its_prefix() -> None:
    shown = masked({"error": "declined: tok_declined (card)", "id": "stock_1"})
    assert shown == {"error": f"declined: {MASK} (card)", "id": "stock_1"}


def test_a_body_that_is_not_json_keeps_its_text_but_not_its_secrets() -> None:
    poison = ('{not json; payment_token=tok_live_77&email=ada%40example.com '
              '"payment_token": "opaque-secret-1", \'to\': \'bob@example.org\', '
              'student_id=st-1 course_id: co-1')
    shown = mask_body(poison)
    for secret in ("tok_live_77", "ada%40example.com", "opaque-secret-1", "bob@example.org",
                   "example"):
        assert secret not in shown
    assert shown == ('{not json; payment_token=***&email=*** "payment_token": "***", '
                     "'to': '***', student_id=st-1 course_id: co-1")


def test_a_broken_sns_wrapper_and_a_cut_value_are_masked_too() -> None:
    body = json.dumps({"Message": json.dumps(REQUESTED)})
    cut = body[:body.index("tok_ok") + 5]  # cut inside the token: "tok_o"
    assert "tok_o" not in mask_body(cut)
    escaped = '{"Message": "{\\"payment_token\\": \\"opaque-7\\", \\"student_id\\": \\"st'
    shown = mask_body(escaped)
    assert "opaque-7" not in shown and '\\"student_id\\": \\"st' in shown


def test_json_that_is_not_an_object_and_deep_nesting() -> None:
    assert mask_body('"ada@example.com"') == json.dumps(MASKED_EMAIL)
    assert mask_body("[1, 2]") == "[1,2]"
    assert mask_body("") == ""
    deep = "[" * 50_000 + '"ada@example.com"' + "]" * 50_000  # beyond any walk's depth
    shown = mask_body(deep)
    assert "ada@example.com" not in shown and shown.startswith("[[[")


def test_free_text_such_as_an_error() -> None:
    assert mask_text("ValueError('cannot mail ada@example.com with token=abc')") == (
        f"ValueError('cannot mail {MASKED_EMAIL} with token={MASK}')")
    assert mask_text("retries_exhausted; GatewayUnavailable") == (
        "retries_exhausted; GatewayUnavailable")


def dead_letter(body: str, error: str | None) -> dict[str, object]:
    attributes = {"event_type": {"DataType": "String", "StringValue": "enrollment.requested"}}
    if error is not None:
        attributes["dlq_error"] = {"DataType": "String", "StringValue": error}
    return {"MessageId": "m-1", "Body": body, "MessageAttributes": attributes,
            "Attributes": {"MessageGroupId": "st-1", "SentTimestamp": "1700000000000"}}


def test_both_views_mask_the_body_before_cutting_it_and_mask_the_error() -> None:
    data = {"note": "x" * 490, **REQUESTED["data"], "payment_token": "opaque-token-123"}
    body = json.dumps(REQUESTED | {"data": data})
    message = dead_letter(body, "PermanentError('no card for opaque@example.com')")
    spec = TOPOLOGY.queue("payment-requests.fifo")
    for shown in (cli._described(message), queues._described(spec, message)):
        text = json.dumps(shown)
        assert "opaque-token-123" not in text and "opaque@example.com" not in text
        assert "tok_" not in text
        assert shown["event_type"] == "enrollment.requested"
        assert REQUESTED["event_id"] in shown["body"]
        assert shown["dlq_error"] == f"PermanentError('no card for {MASKED_EMAIL}')"
    assert cli._described(dead_letter(body, None))["dlq_error"] is None
    assert message["Body"] == body  # the message itself, which a redrive moves, is untouched


def test_the_conversation_view_masks_an_attempt_s_detail() -> None:
    at = datetime(2026, 11, 22, 10, 30, tzinfo=UTC)
    rows = [SimpleNamespace(kind="create", span_id="s1", parent_id=None, event_id="e-1",
                            event_type="enrollment.requested", service="enrollment",
                            causation_id=None, started_at=at,
                            destination="payment-requests.fifo"),
            SimpleNamespace(kind="process", span_id="s2", parent_id="s1", event_id=None,
                            event_type=None, service="payment", causation_id=None,
                            started_at=at, destination="payment-requests.fifo",
                            outcome="dead_lettered", duration_ms=1.0,
                            detail="permanent_failure; card of ada@example.com: tok_declined")]
    found = conversation.assemble("c-1", rows)
    assert found is not None
    payment = next(h for h in found["events"][0]["handlings"] if h["service"] == "payment")
    assert payment["attempts"][0]["detail"] == (
        f"permanent_failure; card of {MASKED_EMAIL}: {MASK}")
