"""The messaging contract as an AsyncAPI 3.0.0 document: docs/asyncapi.json.

Everything in it is read from the contract: the catalogue (shared.events: every event type and
version, its schema and producer, the upcasters and what older versions `carried`), the topology
(shared.topology: the topic, the queues, their FIFO grouping, subscriptions, filter policies and
private messages) and the envelope (shared.envelope: its fields and message attributes).

    python -m deploy.asyncapi            rewrite docs/asyncapi.json from the contract
    python -m deploy.asyncapi --check    fail (exit 1) when the committed document has drifted

Both validate the document against the AsyncAPI specification's own JSON Schema, from the npm
package @asyncapi/specs at the pinned SPECS_VERSION, which `make` fetches into var/ (git-ignored).

It lives in deploy/, beside the other tools that read the contract (the CDK app, the local stack),
and not in shared/: it is tooling, not messaging. The services never import it, their package
and images (pyproject.toml, deploy/docker) leave it out, and jsonschema stays a test tool.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tomllib
import unicodedata
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from marshmallow import RAISE, Schema, fields, missing, validate

from shared import events, provision, telemetry, text
from shared.envelope import Envelope, EnvelopeSchema
from shared.events import CATALOGUE, Catalogue, EventKind
from shared.settings import SERVICES, Settings
from shared.topology import (
    DLQ_RETENTION_SECONDS,
    LONG_POLL_SECONDS,
    QUEUE_RETENTION_SECONDS,
    TOPOLOGY,
    QueueSpec,
    Topology,
)

ROOT = Path(__file__).resolve().parent.parent
DOCUMENT = ROOT / "docs" / "asyncapi.json"
ASYNCAPI = "3.0.0"
# @asyncapi/specs on the npm registry: the Makefile's ASYNCAPI_SPECS names the same version
# (tests/unit/test_asyncapi.py holds them together) and extracts its 3.0.0 schema to here.
SPECS_VERSION = "6.11.1"
SPEC_SCHEMA = ROOT / "var" / f"asyncapi-specs-{SPECS_VERSION}" / f"{ASYNCAPI}-without-id.json"
SNS_BINDING = "0.1.0"  # the binding versions the 3.0.0 schema of SPECS_VERSION knows
SQS_BINDING = "0.2.0"
ENV_PARAMETER = "env"
# W3C Trace Context, version-trace_id-parent_id-flags (shared.telemetry.TRACEPARENT)
TRACEPARENT = "^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$"


class Unconvertible(TypeError):
    """A marshmallow field or validator this converter has no JSON Schema for."""


# --- marshmallow to JSON Schema (draft 7, which AsyncAPI 3.0.0's Schema Object extends) --------

def _escaped(chars: str) -> str:
    """Control characters as \\uXXXX escapes, the rest as they are (for an ECMA 262 pattern)."""
    return "".join(f"\\u{ord(c):04x}" if unicodedata.category(c) == "Cc" else c for c in chars)


def printable_pattern() -> str:
    """shared.text.Printable as a pattern: any text without a character of text.CONTROL."""
    control = text.CONTROL.pattern
    if not (control.startswith("[") and control.endswith("]")) or control.startswith("[^"):
        raise Unconvertible(f"shared.text.CONTROL is no longer one character class: {control!r}")
    return f"^[^{_escaped(control[1:-1])}]*$"


def _regexp(validator: validate.Regexp) -> dict[str, Any]:
    pattern = validator.regex.pattern
    if not isinstance(pattern, str) or validator.regex.flags & ~re.UNICODE:  # str's default
        raise Unconvertible(f"Regexp {pattern!r} is bytes or has flags")
    # marshmallow matches from the start (re.match); a JSON Schema pattern may match anywhere.
    return {"pattern": pattern if pattern.startswith("^") else f"^(?:{pattern})"}


def _length(validator: validate.Length) -> dict[str, Any]:
    if validator.equal is not None:
        return {"minLength": validator.equal, "maxLength": validator.equal}
    out = {"minLength": validator.min} if validator.min is not None else {}
    return out | ({"maxLength": validator.max} if validator.max is not None else {})


def _range(validator: validate.Range) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if validator.min is not None:
        out["minimum" if validator.min_inclusive else "exclusiveMinimum"] = validator.min
    if validator.max is not None:
        out["maximum" if validator.max_inclusive else "exclusiveMaximum"] = validator.max
    return out


def validator_schema(validator: Any) -> dict[str, Any]:
    """The JSON Schema keywords of one marshmallow validator."""
    if isinstance(validator, events._PriceValidator):  # a custom validator: its pattern
        return {"pattern": events.PRICE.pattern}
    if isinstance(validator, text.Printable):
        return {"pattern": printable_pattern()}
    if type(validator) is validate.Length:
        return _length(validator)
    if type(validator) is validate.Regexp:
        return _regexp(validator)
    if type(validator) is validate.OneOf:
        return {"enum": list(validator.choices)}
    if type(validator) is validate.Range:
        return _range(validator)
    if type(validator) is validate.Email:
        return {"format": "email"}
    raise Unconvertible(f"no JSON Schema for the validator {type(validator).__name__}")


def _base(field: fields.Field) -> dict[str, Any]:
    """The type of a field: exact classes only, so that a new subclass must be taught here."""
    kind = type(field)
    if kind in (fields.String, fields.Email):
        return {"type": "string"}  # Email's own validator adds the format
    if kind is fields.UUID:
        return {"type": "string", "format": "uuid"}
    if kind is fields.Integer and isinstance(field, fields.Integer):
        if not field.strict:
            raise Unconvertible("a non-strict Integer also reads numeric strings")
        return {"type": "integer"}
    if kind is fields.Float:
        return {"type": "number"}
    if kind is fields.Boolean:
        return {"type": "boolean"}
    if kind is fields.AwareDateTime and isinstance(field, fields.AwareDateTime):
        if field.format not in (None, "iso") or field.default_timezone is not None:
            raise Unconvertible("an AwareDateTime other than ISO 8601 with its offset")
        return {"type": "string", "format": "date-time"}
    if kind is fields.Dict:
        return {"type": "object"}
    raise Unconvertible(f"no JSON Schema for the field {kind.__name__}")


def _merge(into: dict[str, Any], extra: dict[str, Any]) -> None:
    for key, value in extra.items():
        if key == "pattern" and "pattern" in into:  # one `pattern` keyword: the rest in allOf
            into.setdefault("allOf", []).append({"pattern": value})
        elif key in into:
            raise Unconvertible(f"two validators set {key!r}")
        else:
            into[key] = value


def field_schema(field: fields.Field) -> dict[str, Any]:
    """One marshmallow field as JSON Schema: its type, validators, null and default."""
    out = _base(field)
    for validator in field.validators:
        _merge(out, validator_schema(validator))
    if field.allow_none:
        out["type"] = [out["type"], "null"]
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
    if field.load_default is not missing:
        if callable(field.load_default):
            raise Unconvertible("a callable load_default has no JSON value")
        out["default"] = field.load_default
    return out


def object_schema(schema: type[Schema] | Schema) -> dict[str, Any]:
    """A marshmallow schema as a JSON Schema object: what its load() accepts."""
    instance = schema() if isinstance(schema, type) else schema
    loaded = {field.data_key or name: field for name, field in instance.load_fields.items()}
    return {
        "type": "object",
        "title": type(instance).__name__,
        "properties": {name: field_schema(field) for name, field in loaded.items()},
        "required": sorted(name for name, field in loaded.items() if field.required),
        # RAISE refuses unknown fields (marshmallow's default), INCLUDE and EXCLUDE do not.
        "additionalProperties": instance.unknown != RAISE,
    }


# --- the document ------------------------------------------------------------------------------

def message_id(kind: EventKind) -> str:
    return f"{kind.event_type}.v{kind.version}"


def kinds(catalogue: Catalogue, event_types: Iterable[str] | None = None) -> list[EventKind]:
    """Every (event_type, version) the catalogue knows, or those of `event_types`, in order."""
    wanted = None if event_types is None else set(event_types)
    return [k for k in catalogue.kinds() if wanted is None or k.event_type in wanted]


def envelope_payload(kind: EventKind) -> dict[str, Any]:
    """The message body: the envelope (shared.envelope) of this kind, its `data` the event's."""
    payload = object_schema(EnvelopeSchema)
    props = payload["properties"]
    props["event_type"] = {"type": "string", "const": kind.event_type}
    props["event_version"] = {"type": "integer", "const": kind.version}
    props["producer"] = {"type": "string", "const": kind.producer}
    props["data"] = object_schema(kind.schema)
    payload["title"] = f"{kind.event_type} v{kind.version}"
    return payload


def headers(kind: EventKind) -> dict[str, Any]:
    """The message attributes every SQS and SNS message of the event carries."""
    sample = Envelope(event_type=kind.event_type, event_version=kind.version, data={},
                      producer=kind.producer)
    envelope = envelope_payload(kind)["properties"]
    props: dict[str, Any] = {}
    for name, attribute in sample.attributes().items():
        props[name] = envelope[name] | {"x-sqs-data-type": attribute["DataType"]}
    for name, attribute in telemetry.RESERVED.items():
        props[name] = {"type": "string", "pattern": TRACEPARENT,
                       "description": "W3C Trace Context of the message's creation, when traced",
                       "x-sqs-data-type": attribute["DataType"]}
    return {"type": "object", "properties": props,
            "required": sorted(sample.attributes()), "additionalProperties": True}


def _message(catalogue: Catalogue, topology: Topology, kind: EventKind) -> dict[str, Any]:
    newest = catalogue.latest(kind.event_type)
    message: dict[str, Any] = {
        "name": kind.event_type,
        "title": f"{kind.event_type} v{kind.version}",
        "contentType": "application/json",
        "payload": envelope_payload(kind),
        "headers": headers(kind),
        "correlationId": {"location": "$message.header#/correlation_id",
                          "description": "shared by every event of one conversation"},
        "x-event-type": kind.event_type,
        "x-event-version": kind.version,
        "x-newest": kind.version == newest,
        "x-producer": kind.producer,
        "x-private": not topology.published(kind.event_type),
    }
    summary = [f"Written by {kind.producer}."]
    if kind.version < newest:
        message["deprecated"] = True  # only the newest is written; older ones are still read
        summary.append(f"Superseded: consumers read it upcast to v{newest}.")
    if catalogue.upcasts(kind.event_type, kind.version):
        message["x-upcast-to"] = kind.version + 1
    if successor := catalogue.successor(kind.event_type, kind.version):
        message["x-carried"] = successor
        summary.append(f"Carried what {successor} carries now: a consumer of {successor} "
                       f"reads it as {successor}.")
    if message["x-private"]:
        summary.append("Private: sent to its one queue, never published on the topic.")
    message["summary"] = " ".join(summary)
    return message


def arriving(topology: Topology, catalogue: Catalogue, queue: QueueSpec) -> list[str]:
    """The event types that reach a queue: sent to it directly, or through its subscription."""
    types = set(queue.sent_here)
    if queue.subscribed:
        published = topology.on_topic(catalogue.event_types())
        types |= {t for t in published
                  if queue.filter_events is None or t in queue.filter_events}
    return sorted(types)


def _refs(prefix: str, ids: Iterable[str]) -> dict[str, Any]:
    return {i: {"$ref": f"{prefix}/{i}"} for i in ids}


def _channel(name: str, server: str, messages: Iterable[str], description: str,
             bindings: dict[str, Any], **extensions: Any) -> dict[str, Any]:
    return {
        "address": f"{{{ENV_PARAMETER}}}-{name}",  # shared.topology.physical
        "title": name,
        "description": description,
        "parameters": {ENV_PARAMETER: {
            "description": "SCHOOL_ENV: every physical name is `<SCHOOL_ENV>-<name>`",
            "default": Settings().school_env, "examples": ["dev", "prod"]}},
        "servers": [{"$ref": f"#/servers/{server}"}],
        "messages": _refs("#/components/messages", messages),
        "bindings": bindings,
    } | extensions


def _sqs_queue(queue: QueueSpec) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": queue.name, "fifoQueue": queue.fifo,
        "visibilityTimeout": queue.visibility_timeout,
        "receiveMessageWaitTime": LONG_POLL_SECONDS,
        "messageRetentionPeriod": QUEUE_RETENTION_SECONDS,
        "redrivePolicy": {"deadLetterQueue": {"name": queue.dlq_name},
                          "maxReceiveCount": queue.redrive_max_receives},
    }
    known = {"DeduplicationScope": "deduplicationScope",
             "FifoThroughputLimit": "fifoThroughputLimit"}
    for key, value in queue.sqs_attributes.items():
        if key in known:
            out[known[key]] = value
        else:
            out.setdefault("x-attributes", {})[key] = value
    return out


def _dlq(queue: QueueSpec) -> dict[str, Any]:
    return {"name": queue.dlq_name, "fifoQueue": queue.fifo,
            "messageRetentionPeriod": DLQ_RETENTION_SECONDS}


def _subscription(queue: QueueSpec) -> dict[str, Any]:
    """How the topic delivers to a subscribed queue (shared.provision: raw, filtered)."""
    policy = provision.filter_policy(queue)
    out: dict[str, Any] = {"protocol": "sqs", "endpoint": {"name": queue.name},
                           "rawMessageDelivery": True}
    if policy:
        out |= {"filterPolicy": json.loads(policy), "filterPolicyScope": "MessageAttributes"}
    return out


def _queue_channels(topology: Topology, catalogue: Catalogue, queue: QueueSpec
                    ) -> dict[str, dict[str, Any]]:
    ids = [message_id(k) for k in kinds(catalogue, arriving(topology, catalogue, queue))]
    how = [f"Consumed by {queue.consumer}, {queue.max_receive_count} handler attempts at most "
           f"before the message is dead-lettered to {queue.dlq_name}."]
    extra: dict[str, Any] = {"x-consumer": queue.consumer,
                             "x-retry-budget": queue.max_receive_count}
    if queue.fifo:
        how.append(f"FIFO: ordered per message group, the group id is "
                   f"`{':'.join('<' + k + '>' for k in queue.group_by)}` of the event's data; "
                   f"the deduplication id is the event_id.")
        extra["x-message-group-id"] = {
            "fields": list(queue.group_by), "separator": ":", "source": "$message.payload#/data",
            "description": "the fields' values joined by ':' (shared.topology.safe_group_id "
                           "encodes what SQS would refuse)"}
        extra["x-message-deduplication-id"] = {"location": "$message.payload#/event_id"}
    if queue.subscribed:
        sub = _subscription(queue)
        how.append("Subscribed to the topic, raw delivery"
                   + (", filtered on the event_type attribute." if "filterPolicy" in sub
                      else ", unfiltered."))
        extra["x-subscription"] = {"topic": topology.topic.name} | {
            k: v for k, v in sub.items() if k not in ("protocol", "endpoint")}
    if queue.sent_here:
        how.append("Sent here directly by the producer's outbox: "
                   + ", ".join(sorted(queue.sent_here)) + ".")
    if queue.private:
        how.append("Private here (never on the topic): " + ", ".join(sorted(queue.private)) + ".")
    channels = {queue.name: _channel(
        queue.name, "sqs", ids, " ".join(how),
        {"sqs": {"queue": _sqs_queue(queue), "deadLetterQueue": _dlq(queue),
                 "bindingVersion": SQS_BINDING}}, **extra)}
    channels[queue.dlq_name] = _channel(
        queue.dlq_name, "sqs", ids,
        f"The dead letters of {queue.name}: a message its consumer gave up on, copied with its "
        f"body and attributes and three more attributes (dlq_reason, dlq_error, source_queue). "
        f"It may hold a message that no schema reads. `school redrive` sends them back.",
        {"sqs": {"queue": _dlq(queue), "bindingVersion": SQS_BINDING}},
        **{"x-dead-letters-of": queue.name})
    return channels


def _operations(topology: Topology, catalogue: Catalogue, channels: dict[str, Any]
                ) -> dict[str, Any]:
    topic = topology.topic.name
    subscribed = sorted((q for q in topology.queues if q.subscribed), key=lambda q: q.name)
    ops: dict[str, Any] = {}

    def refs(channel: str, ids: Iterable[str]) -> list[dict[str, str]]:
        for i in ids:
            if i not in channels[channel]["messages"]:
                raise ValueError(f"{i} is not a message of the channel {channel}")
        return [{"$ref": f"#/channels/{channel}/messages/{i}"} for i in sorted(ids)]

    def newest(event_types: Iterable[str]) -> list[str]:
        return [f"{t}.v{catalogue.latest(t)}" for t in event_types]

    for service in SERVICES:
        produced = catalogue.produced_by(service)
        if on_topic := topology.on_topic(produced):
            ops[f"{service}.sends.{topic}"] = {
                "action": "send", "channel": {"$ref": f"#/channels/{topic}"},
                "summary": f"{service} publishes through its transactional outbox.",
                "messages": refs(topic, newest(on_topic)),
                "bindings": {
                    "sns": {"consumers": [_subscription(q) for q in subscribed],
                            "bindingVersion": SNS_BINDING},
                    "sqs": {"queues": [{"name": q.name, "fifoQueue": q.fifo} for q in subscribed],
                            "bindingVersion": SQS_BINDING}},
            }
        for queue in topology.queues:
            if direct := sorted(set(produced) & set(queue.sent_here)):
                ops[f"{service}.sends.{queue.name}"] = {
                    "action": "send", "channel": {"$ref": f"#/channels/{queue.name}"},
                    "summary": f"{service} sends to the queue directly, through its outbox.",
                    "messages": refs(queue.name, newest(direct)),
                }
    for queue in topology.queues:
        ids = list(channels[queue.name]["messages"])
        ops[f"{queue.consumer}.receives.{queue.name}"] = {
            "action": "receive", "channel": {"$ref": f"#/channels/{queue.name}"},
            "summary": f"{queue.consumer} consumes the queue; older versions are upcast.",
            "messages": refs(queue.name, ids),
        }
        ops[f"{queue.consumer}.dead-letters.{queue.dlq_name}"] = {
            "action": "send", "channel": {"$ref": f"#/channels/{queue.dlq_name}"},
            "summary": f"{queue.consumer} copies a message it gives up on to the DLQ.",
            "messages": refs(queue.dlq_name, ids),
        }
    return ops


def _version() -> str:
    with (ROOT / "pyproject.toml").open("rb") as f:
        version: str = tomllib.load(f)["project"]["version"]
    return version


def _server(protocol: str, what: str) -> dict[str, Any]:
    return {"host": f"{protocol}.{{region}}.amazonaws.com", "protocol": protocol,
            "description": f"{what}; locally, LocalStack (`make up`)",
            "variables": {"region": {"default": Settings().aws_region,
                                     "description": "AWS_DEFAULT_REGION"}}}


def build(catalogue: Catalogue = CATALOGUE, topology: Topology = TOPOLOGY) -> dict[str, Any]:
    """The AsyncAPI 3.0.0 document of a catalogue and a topology."""
    unknown = {k.producer for k in kinds(catalogue)} - set(SERVICES)
    unknown |= {q.consumer for q in topology.queues} - set(SERVICES)
    if unknown:
        raise ValueError(f"not services (shared.settings.SERVICES): {sorted(unknown)}")
    topic = topology.topic.name
    published = topology.on_topic(catalogue.event_types())
    channels = {topic: _channel(
        topic, "sns", [message_id(k) for k in kinds(catalogue, published)],
        "Every event but the private ones, published by its producer's outbox; a standard "
        "(unordered) topic that fans out to the subscribed queues.",
        {"sns": {"name": topic, "ordering": {"type": "standard"},
                 "bindingVersion": SNS_BINDING}})}
    for queue in topology.queues:
        channels |= _queue_channels(topology, catalogue, queue)
    return {
        "asyncapi": ASYNCAPI,
        "id": "urn:online-school:events",
        "info": {
            "title": "Online school events",
            "version": _version(),
            "description": (
                "The events of the online school's five services on SNS and SQS. Generated "
                "from the contract (shared/events.py, shared/topology.py, shared/envelope.py) "
                "by `python -m deploy.asyncapi`: do not edit by hand."),
        },
        "defaultContentType": "application/json",
        "servers": {"sns": _server("sns", "Amazon SNS"), "sqs": _server("sqs", "Amazon SQS")},
        "channels": channels,
        "operations": _operations(topology, catalogue, channels),
        "components": {"messages": {message_id(k): _message(catalogue, topology, k)
                                    for k in kinds(catalogue)}},
    }


def render(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


# --- checks ------------------------------------------------------------------------------------

def differences(committed: Any, generated: Any, path: str = "") -> Iterator[str]:
    """What differs between two JSON values, as JSON Pointers into the document."""
    if isinstance(committed, dict) and isinstance(generated, dict):
        for key in sorted(set(committed) | set(generated)):
            where = f"{path}/{str(key).replace('~', '~0').replace('/', '~1')}"
            if key not in generated:
                yield f"{where}: in the committed document, no longer in the contract"
            elif key not in committed:
                yield f"{where}: in the contract, missing from the committed document"
            else:
                yield from differences(committed[key], generated[key], where)
    elif isinstance(committed, list) and isinstance(generated, list) and len(
            committed) == len(generated):
        for index, (old, new) in enumerate(zip(committed, generated, strict=True)):
            yield from differences(old, new, f"{path}/{index}")
    elif committed != generated:
        yield (f"{path or '/'}: committed {_short(committed)}, the contract says "
               f"{_short(generated)}")


def _short(value: Any, limit: int = 80) -> str:
    shown = json.dumps(value, sort_keys=True)
    return shown if len(shown) <= limit else shown[:limit - 3] + "..."


def spec_errors(document: dict[str, Any], spec_schema: Path = SPEC_SCHEMA) -> list[str]:
    """Where the document breaks the AsyncAPI specification's JSON Schema ([] when it is valid)."""
    import jsonschema  # a test tool (pyproject.toml); only the checks need it

    schema = json.loads(spec_schema.read_text())
    validator = jsonschema.validators.validator_for(schema)(schema)
    return sorted(f"{'/' + '/'.join(map(str, e.absolute_path))}: {e.message}"
                  for e in validator.iter_errors(document))


def _shown(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m deploy.asyncapi",
        description="Write (or --check) the AsyncAPI 3.0.0 document of the messaging contract.")
    parser.add_argument("--check", action="store_true",
                        help="fail when the committed document differs from the contract")
    parser.add_argument("--output", type=Path, default=DOCUMENT, help="default: %(default)s")
    parser.add_argument("--spec-schema", type=Path, default=None,
                        help="the AsyncAPI 3.0.0 JSON Schema; required to exist when given "
                             f"(default: {_shown(SPEC_SCHEMA)}, when `make` has fetched it)")
    args = parser.parse_args(argv)
    out = args.output
    document = build()
    rendered = render(document)
    counts = (f"{len(document['channels'])} channels, {len(document['operations'])} operations, "
              f"{len(document['components']['messages'])} messages")

    spec = args.spec_schema or SPEC_SCHEMA
    if spec.exists():
        if errors := spec_errors(document, spec):
            print(f"the generated document breaks the AsyncAPI {ASYNCAPI} schema ({_shown(spec)}):",
                  *errors[:20], sep="\n  ", file=sys.stderr)
            return 1
        valid = f"valid AsyncAPI {ASYNCAPI} (@asyncapi/specs {SPECS_VERSION})"
    elif args.spec_schema is not None:
        print(f"{_shown(spec)} does not exist: `make lint` fetches it", file=sys.stderr)
        return 1
    else:
        valid = f"not validated: {_shown(spec)} is not fetched yet (`make lint` fetches it)"

    if args.check:
        if not out.exists():
            print(f"{_shown(out)} is missing: run `python -m deploy.asyncapi` and commit it",
                  file=sys.stderr)
            return 1
        committed = out.read_text()
        if committed == rendered:
            print(f"{_shown(out)} matches the contract ({counts}; {valid})")
            return 0
        try:
            found = list(differences(json.loads(committed), document))
        except ValueError as exc:
            found = [f"not JSON ({exc})"]
        found = found or ["the same content, laid out otherwise than the generator writes it"]
        print(f"{_shown(out)} has drifted from the contract (shared/events.py, "
              f"shared/topology.py, shared/envelope.py): {len(found)} difference(s)",
              *found[:20], *([f"... and {len(found) - 20} more"] if len(found) > 20 else []),
              "run `python -m deploy.asyncapi` to rewrite it, then commit it",
              sep="\n  ", file=sys.stderr)
        return 1
    if out.exists() and out.read_text() == rendered:
        print(f"{_shown(out)} is up to date ({counts}; {valid})")
        return 0
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(rendered)
    print(f"wrote {_shown(out)} ({counts}; {valid})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
