"""The AsyncAPI document (deploy/asyncapi.py): it covers the contract, keeps private messages off
the topic, converts the schemas faithfully, notices drift and is valid AsyncAPI 3.0.0."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from marshmallow import Schema, ValidationError, fields, validate

from deploy import asyncapi
from shared.events import CATALOGUE
from shared.text import Printable
from shared.topology import TOPOLOGY

PRIVATE = {"charge.requested": "payment-requests.fifo", "contact.recorded": "notifications"}
TOPIC = TOPOLOGY.topic.name


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return asyncapi.build()


def channel_types(doc: dict[str, Any], channel: str) -> set[str]:
    return {doc["components"]["messages"][m]["x-event-type"]
            for m in doc["channels"][channel]["messages"]}


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from refs(value)


def resolve(doc: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = doc
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


# --- what the document covers ------------------------------------------------------------------

def test_every_event_type_and_version_is_a_message_the_newest_marked(doc: dict[str, Any]) -> None:
    messages = doc["components"]["messages"]
    known = {(k.event_type, k.version) for k in asyncapi.kinds(CATALOGUE)}
    assert {(m["x-event-type"], m["x-event-version"]) for m in messages.values()} == known
    assert set(CATALOGUE.event_types()) == {t for t, _ in known}
    assert {v for t, v in known if t == "enrollment.requested"} == {1, 2, 3}  # all versions
    for message_id, message in messages.items():
        newest = CATALOGUE.latest(message["x-event-type"]) == message["x-event-version"]
        assert message["x-newest"] is newest, message_id
        assert message.get("deprecated", False) is not newest, message_id
        assert message["payload"]["properties"]["event_version"]["const"] == message[
            "x-event-version"]


def test_every_queue_and_its_dlq_is_a_channel_with_its_grouping(doc: dict[str, Any]) -> None:
    channels = doc["channels"]
    assert set(channels) == {TOPIC} | {q.name for q in TOPOLOGY.queues} | {
        q.dlq_name for q in TOPOLOGY.queues}
    assert channels[TOPIC]["bindings"]["sns"]["name"] == TOPIC
    for queue in TOPOLOGY.queues:
        channel = channels[queue.name]
        binding = channel["bindings"]["sqs"]
        assert binding["queue"]["name"] == queue.name
        assert binding["queue"]["fifoQueue"] is queue.fifo
        assert binding["deadLetterQueue"]["name"] == queue.dlq_name
        assert channel["address"] == f"{{env}}-{queue.name}"
        assert channel["x-consumer"] == queue.consumer
        if queue.fifo:
            assert channel["x-message-group-id"]["fields"] == list(queue.group_by)
            assert binding["queue"]["deduplicationScope"] == "messageGroup"
        else:
            assert "x-message-group-id" not in channel
        assert channel_types(doc, queue.dlq_name) == channel_types(doc, queue.name)
    assert channels["assignment-submissions.fifo"]["x-message-group-id"]["fields"] == [
        "assignment_id", "student_id"]
    assert channels["notifications"]["x-subscription"]["filterPolicy"] == {
        "event_type": sorted(TOPOLOGY.queue("notifications").filter_events or ())}
    assert "filterPolicy" not in channels["analytics"]["x-subscription"]


def test_a_private_message_is_only_on_its_queue_never_on_the_topic(doc: dict[str, Any]) -> None:
    assert {t for q in TOPOLOGY.queues for t in q.private} == set(PRIVATE)
    for event_type, queue in PRIVATE.items():
        dlq = TOPOLOGY.queue(queue).dlq_name
        holding = {name for name in doc["channels"] if event_type in channel_types(doc, name)}
        assert holding == {queue, dlq}, event_type
        assert event_type not in channel_types(doc, TOPIC)
        topic_ops = [op for op in doc["operations"].values()
                     if op["channel"]["$ref"] == f"#/channels/{TOPIC}"]
        assert topic_ops
        assert not any(event_type in ref for op in topic_ops for ref in refs(op["messages"]))
        assert doc["components"]["messages"][f"{event_type}.v1"]["x-private"] is True
    assert channel_types(doc, TOPIC) == set(TOPOLOGY.on_topic(CATALOGUE.event_types()))


def test_operations_follow_the_producers_and_the_consumers(doc: dict[str, Any]) -> None:
    ops = doc["operations"]
    for queue in TOPOLOGY.queues:
        receive = ops[f"{queue.consumer}.receives.{queue.name}"]
        assert receive["action"] == "receive"
        assert len(receive["messages"]) == len(doc["channels"][queue.name]["messages"])
    sent = {}
    for service in ("enrollment", "payment", "assignment"):
        op = ops[f"{service}.sends.{TOPIC}"]
        sent[service] = {resolve(doc, r["$ref"])["$ref"].rsplit("/", 1)[1].rsplit(".v", 1)[0]
                         for r in op["messages"]}
        assert sent[service] == set(TOPOLOGY.on_topic(CATALOGUE.produced_by(service)))
        consumers = {c["endpoint"]["name"] for c in op["bindings"]["sns"]["consumers"]}
        assert consumers == {q.name for q in TOPOLOGY.queues if q.subscribed}
    assert f"notification.sends.{TOPIC}" not in ops  # it consumes, it publishes nothing
    charge = ops["enrollment.sends.payment-requests.fifo"]["messages"]
    assert {r["$ref"].rsplit("/", 1)[1] for r in charge} == {"charge.requested.v1",
                                                             "refund.requested.v1"}


def test_every_reference_resolves(doc: dict[str, Any]) -> None:
    found = list(refs(doc))
    assert len(found) > 100
    for ref in found:
        resolve(doc, ref)


# --- marshmallow to JSON Schema ----------------------------------------------------------------

@pytest.mark.parametrize(("field", "expected"), [
    (fields.String(required=True, validate=validate.Length(min=1, max=64)),
     {"type": "string", "minLength": 1, "maxLength": 64}),
    (fields.String(validate=validate.Regexp(r"^[A-Z]{3}$")),
     {"type": "string", "pattern": "^[A-Z]{3}$"}),
    (fields.String(validate=validate.Regexp(r"[a-z]+")),  # re.match anchors at the start
     {"type": "string", "pattern": "^(?:[a-z]+)"}),
    (fields.String(validate=validate.OneOf(["payment_declined", "student_request"])),
     {"type": "string", "enum": ["payment_declined", "student_request"]}),
    (fields.Email(required=True), {"type": "string", "format": "email"}),
    (fields.Integer(strict=True, validate=validate.Range(min=1)),
     {"type": "integer", "minimum": 1}),
    (fields.Integer(strict=True, validate=validate.Range(min=0, max=10, max_inclusive=False)),
     {"type": "integer", "minimum": 0, "exclusiveMaximum": 10}),
    (fields.Float(validate=validate.Range(min=0, max=1)),
     {"type": "number", "minimum": 0, "maximum": 1}),
    (fields.Boolean(truthy={True}, falsy={False}), {"type": "boolean"}),
    (fields.AwareDateTime(load_default=None, allow_none=True, format="iso"),
     {"type": ["string", "null"], "format": "date-time", "default": None}),
    (fields.String(allow_none=True, validate=validate.OneOf(["a"])),
     {"type": ["string", "null"], "enum": ["a", None]}),
])
def test_a_field_converts(field: fields.Field, expected: dict[str, Any]) -> None:
    assert asyncapi.field_schema(field) == expected


def test_required_fields_and_unknown_ones() -> None:
    schema = Schema.from_dict({"a": fields.String(required=True),
                               "b": fields.Integer(strict=True, load_default=0),
                               "c": fields.String(required=True, data_key="C")}, name="Sample")
    converted = asyncapi.object_schema(schema)
    assert converted["required"] == ["C", "a"]
    assert set(converted["properties"]) == {"a", "b", "C"}
    assert converted["properties"]["b"] == {"type": "integer", "default": 0}
    assert converted["additionalProperties"] is False  # marshmallow RAISEs on unknown fields
    assert converted["title"] == "Sample"


def test_printable_names_and_prices_become_patterns() -> None:
    name = asyncapi.field_schema(fields.String(validate=[validate.Length(min=1, max=200),
                                                         Printable()]))
    assert (name["minLength"], name["maxLength"]) == (1, 200)
    printable = re.compile(name["pattern"])
    for good in ("Ada Lovelace", "Zoë O'Brien", "李"):
        assert printable.search(good)
    for bad in ("Eve\r\nBcc: x", "tab\there", "del\x7f", "nel\x85"):
        assert not printable.search(bad), repr(bad)
    data = asyncapi.kinds(CATALOGUE, ["enrollment.requested"])[0].schema
    price = asyncapi.object_schema(data)["properties"]["price"]
    assert price["pattern"] == r"^\d{1,10}(\.\d{1,2})?$"
    for good, ok in (("49.90", True), ("49", True), ("4.999", False), ("1e3", False)):
        assert bool(re.search(price["pattern"], good)) is ok


@pytest.mark.parametrize("field", [fields.Integer(), fields.List(fields.String()),
                                   fields.String(validate=validate.ContainsOnly(["a"]))])
def test_what_the_converter_does_not_know_is_refused(field: fields.Field) -> None:
    with pytest.raises(asyncapi.Unconvertible):
        asyncapi.field_schema(field)


@pytest.mark.parametrize(("event_type", "data", "valid"), [
    ("assignment.created", {"assignment_id": "a", "course_id": "c", "title": "Essay",
                            "max_score": 10}, True),
    ("assignment.created", {"assignment_id": "a", "course_id": "c", "title": "Essay",
                            "max_score": 10, "due_at": None}, True),
    ("assignment.created", {"assignment_id": "a", "course_id": "c", "title": "Es\nsay",
                            "max_score": 10}, False),
    ("assignment.created", {"assignment_id": "a", "course_id": "c", "title": "Essay",
                            "max_score": 0}, False),
    ("assignment.created", {"assignment_id": "", "course_id": "c", "title": "Essay",
                            "max_score": 1}, False),
    ("enrollment.cancelled", {"enrollment_id": "e", "student_id": "s", "course_id": "c",
                              "reason": "student_request", "refunded": True}, True),
    ("enrollment.cancelled", {"enrollment_id": "e", "student_id": "s", "course_id": "c",
                              "reason": "bored", "refunded": True}, False),
    ("enrollment.cancelled", {"enrollment_id": "e", "student_id": "s", "course_id": "c",
                              "reason": "student_request", "refunded": True, "x": 1}, False),
    ("course.created", {"course_id": "c", "title": "Maths", "price_cents": 100,
                        "currency": "usd", "capacity": 3}, False),
    ("submission.graded", {"submission_id": "s", "assignment_id": "a", "student_id": "s",
                           "version": 1, "score": 7.5, "max_score": 10,
                           "plagiarism_score": 1.5, "flagged": False}, False),
])
def test_the_payload_agrees_with_the_catalogue(doc: dict[str, Any], event_type: str,
                                               data: dict[str, Any], valid: bool) -> None:
    version = CATALOGUE.latest(event_type)
    try:
        CATALOGUE.validate(event_type, version, data)
        loads = True
    except ValidationError:
        loads = False
    assert loads is valid
    message = doc["components"]["messages"][f"{event_type}.v{version}"]
    envelope = json.loads(CATALOGUE.new(event_type, data).body()) if valid else {
        "event_id": "3f1c2b0e-0000-4000-8000-000000000000", "event_type": event_type,
        "event_version": version, "occurred_at": "2025-01-01T00:00:00.000Z",
        "correlation_id": "c", "causation_id": None, "producer": message["x-producer"],
        "actor": None, "data": data}
    checker = jsonschema.Draft7Validator(message["payload"],
                                         format_checker=jsonschema.FormatChecker())
    assert checker.is_valid(envelope) is valid


def test_the_headers_are_the_message_attributes(doc: dict[str, Any]) -> None:
    envelope = CATALOGUE.new("enrollment.confirmed", {"enrollment_id": "e", "student_id": "s",
                                                      "course_id": "c"})
    message = doc["components"]["messages"]["enrollment.confirmed.v1"]
    attributes = envelope.attributes()
    assert set(message["headers"]["required"]) == set(attributes) == {
        "event_type", "event_version", "correlation_id"}
    values = {name: int(a["StringValue"]) if a["DataType"] == "Number" else a["StringValue"]
              for name, a in attributes.items()}
    jsonschema.validate(values, message["headers"])
    for name, attribute in attributes.items():
        assert message["headers"]["properties"][name]["x-sqs-data-type"] == attribute["DataType"]


# --- the drift check and the specification -----------------------------------------------------

def test_the_committed_document_matches_the_contract() -> None:
    assert asyncapi.DOCUMENT.read_text() == asyncapi.render(asyncapi.build()), (
        "docs/asyncapi.json has drifted: run `.venv/bin/python -m deploy.asyncapi`")


def test_the_check_fails_on_a_modified_document(tmp_path: Path, doc: dict[str, Any],
                                                capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "asyncapi.json"
    path.write_text(asyncapi.render(doc))
    assert asyncapi.main(["--check", "--output", str(path)]) == 0
    assert "matches the contract" in capsys.readouterr().out

    changed = copy.deepcopy(doc)
    del changed["channels"]["analytics-dlq"]
    changed["components"]["messages"]["course.created.v1"]["payload"]["properties"]["data"][
        "properties"]["capacity"]["minimum"] = 0
    path.write_text(asyncapi.render(changed))
    assert asyncapi.main(["--check", "--output", str(path)]) == 1
    err = capsys.readouterr().err
    assert "has drifted from the contract" in err and "2 difference(s)" in err
    assert "/channels/analytics-dlq: in the contract, missing from the committed document" in err
    assert ("/components/messages/course.created.v1/payload/properties/data/properties/capacity"
            "/minimum: committed 0, the contract says 1") in err
    assert "python -m deploy.asyncapi" in err

    path.write_text(json.dumps(doc))  # the same content, another layout
    assert asyncapi.main(["--check", "--output", str(path)]) == 1
    assert "laid out otherwise" in capsys.readouterr().err

    path.unlink()
    assert asyncapi.main(["--check", "--output", str(path)]) == 1
    assert "is missing" in capsys.readouterr().err


def test_without_the_flag_it_rewrites_the_document(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "docs" / "asyncapi.json"
    assert asyncapi.main(["--output", str(path)]) == 0
    assert "wrote" in capsys.readouterr().out
    assert path.read_text() == asyncapi.render(asyncapi.build())
    assert asyncapi.main(["--output", str(path)]) == 0
    assert "up to date" in capsys.readouterr().out


def test_the_makefile_fetches_the_pinned_specs() -> None:
    makefile = (asyncapi.ROOT / "Makefile").read_text()
    pin = re.search(r"^ASYNCAPI_SPECS := (\S+)$", makefile, re.M)
    target = re.search(r"^ASYNCAPI_SCHEMA := (\S+)$", makefile, re.M)
    assert pin and target
    assert pin[1] == asyncapi.SPECS_VERSION
    assert target[1].replace("$(ASYNCAPI_SPECS)", pin[1]) == str(
        asyncapi.SPEC_SCHEMA.relative_to(asyncapi.ROOT))


@pytest.mark.skipif(not asyncapi.SPEC_SCHEMA.exists(),
                    reason=f"{asyncapi.SPEC_SCHEMA.relative_to(asyncapi.ROOT)} is not fetched: "
                           "`make test` and `make lint` fetch @asyncapi/specs "
                           f"{asyncapi.SPECS_VERSION} from the npm registry")
def test_the_document_is_valid_asyncapi_3(doc: dict[str, Any]) -> None:
    assert asyncapi.spec_errors(doc) == []
    broken = copy.deepcopy(doc)
    broken["operations"]["payment.receives.payment-requests.fifo"]["action"] = "subscribe"
    broken["channels"]["school-events"]["bindings"]["sns"]["ordering"] = {"type": "fifo"}
    errors = asyncapi.spec_errors(broken)
    assert any(e.startswith("/operations/payment.receives.payment-requests.fifo") for e in errors)
    assert any(e.startswith("/channels/school-events") for e in errors)
