"""Traces and metrics with OpenTelemetry: one trace per request, across every queue.

Nothing is exported unless an OTLP endpoint is set (`OTEL_EXPORTER_OTLP_ENDPOINT`, or the traces
or metrics one): then each process exports OTLP/HTTP with `service.name` = its service, and the
standard `OTEL_*` variables apply. Without one, the OpenTelemetry API stays a no-op.

One request's events form one trace across the queues, through the outbox:
- writing an outbox row starts and ends a `create <destination>` span under the request's or
  handler's span, and stores its context with the row as the W3C `traceparent` message
  attribute (in the row's attributes, so the relay publishes it however much later);
- the relay publishes each row under a `send <destination>` span, a child of that context;
- the consumer runs each message under a `process <queue>` span whose parent is the message's
  creation context, so the events its handler emits join the same trace. The conventions allow
  a parent or a link; a parent, because each message is handled on its own (in its own
  savepoint), and a link would start a new trace at every hop. Retries, duplicates, releases and
  dead-letters are events on that span, with an error status where the handler failed.

The botocore instrumentation is left out on purpose: it rewrites the `traceparent` of every
PublishBatch entry to the batch call's own span, which would merge the traces of the unrelated
requests a relay batch carries, and it makes a trace of every 20 s long poll. Flask and
SQLAlchemy are instrumented; a database query outside any request, handler or relay span (the
relay's polling) starts no trace (`JourneysOnly`).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TypeVar

from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

# The message attribute that carries the creation context (W3C Trace Context). It makes four
# attributes with the envelope's three; a dead-lettered copy adds three more: 7 of SQS's 10.
TRACEPARENT = "traceparent"
# What the attribute takes at most, counted against the 256 KiB limit whether or not this
# process traces: an upstream context passes through a process that does not (the API's no-op
# tracer keeps it), so the limit must not depend on which services trace.
RESERVED = {TRACEPARENT: {"DataType": "String",
                          "StringValue": f"00-{'0' * 32}-{'0' * 16}-00"}}
_W3C = TraceContextTextMapPropagator()
_ENDPOINTS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
              "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT")
# Not in the semantic conventions' registry, named after the systems that have one
# (messaging.rocketmq.message.group, messaging.gcp_pubsub.message.ordering_key).
GROUP_ID = "messaging.aws_sqs.message.group_id"
# A create span carries the ids of the event's data that name a conversation's subject, as
# `school.key.<name>`: what the operations console searches by.
KEY_PREFIX = "school.key."
SEARCH_KEYS = ("enrollment_id", "student_id", "submission_id", "assignment_id", "course_id",
               "payment_id")

log = logging.getLogger(__name__)
T = TypeVar("T")
tracer = trace.get_tracer("school.messaging")
meter = metrics.get_meter("school.messaging")
consumed = meter.create_counter(
    "school.consumer.messages", unit="{message}",
    description="messages a consumer settled, by queue and outcome (handled, duplicate, retry, "
                "dead_lettered, released)")
handler_duration = meter.create_histogram(
    "school.handler.duration", unit="s",
    description="time a handler took, its inbox claim included, by consumer and event type")
publish_duration = meter.create_histogram(
    "school.relay.publish.duration", unit="s",
    description="time of one relay batch call (SendMessageBatch or PublishBatch)")

_lock = threading.Lock()
_configured: bool | None = None


def guarded(fallback: Any) -> Callable[[Callable[..., T]], Callable[..., T]]:
    """Telemetry must never cost a message: a failure in it is logged and `fallback` returned,
    and the publishing or handling goes on."""
    def wrap(func: Callable[..., T]) -> Callable[..., T]:
        @functools.wraps(func)
        def call(*args: Any, **kwargs: Any) -> T:
            try:
                return func(*args, **kwargs)
            except Exception:
                log.exception("telemetry failed in %s; going on without it", func.__name__)
                return fallback  # type: ignore[no-any-return]
        return call
    return wrap


def enabled() -> bool:
    """Whether this process exports: an OTLP endpoint is set and the SDK is not disabled."""
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    return any(os.environ.get(name) for name in _ENDPOINTS)


def configure(service: str, process: str) -> bool:
    """Set up the SDK for this process (once) when `enabled()`; returns whether it did."""
    global _configured
    with _lock:
        if _configured is not None:
            return _configured
        _configured = enabled()
        if _configured:
            _start_sdk(service, process)
        return _configured


def _start_sdk(service: str, process: str) -> None:
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.sampling import ParentBased

    # service.name is the service whatever OTEL_SERVICE_NAME says: `make up` passes one
    # environment to every process. OTEL_RESOURCE_ATTRIBUTES adds to it.
    resource = Resource.create({SERVICE_NAME: service, "service.namespace": "school",
                                "school.process": process})
    sampler = None if os.environ.get("OTEL_TRACES_SAMPLER") else ParentBased(JourneysOnly())
    provider = TracerProvider(resource=resource, sampler=sampler)
    general = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    if general or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    readers = [PeriodicExportingMetricReader(OTLPMetricExporter())] if (
        general or os.environ.get("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT")) else []
    metrics.set_meter_provider(MeterProvider(resource=resource, metric_readers=readers))


def switched_off() -> set[str]:
    """Instrumentations named in OTEL_PYTHON_DISABLED_INSTRUMENTATIONS (`sqlalchemy`, `flask`):
    the standard variable of OpenTelemetry's Python auto-instrumentation, honoured here too. The
    messaging spans (create, send, process) are the project's own and always on with tracing."""
    raw = os.environ.get("OTEL_PYTHON_DISABLED_INSTRUMENTATIONS", "")
    return {name.strip().lower() for name in raw.split(",") if name.strip()}


def instrument_engine(engine: Any) -> None:
    """Trace the statements of the process's database engine, when tracing is on."""
    if _configured and "sqlalchemy" not in switched_off():
        from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

        # 0.66b1 declares SQLAlchemy below 2.1; the engine events it listens to are unchanged
        # in 2.1, and tests/e2e/test_tracing.py checks that a request's INSERT spans arrive.
        SQLAlchemyInstrumentor().instrument(engine=engine, enable_commenter=False,
                                            skip_dep_check=True)


def instrument_app(app: Any) -> None:
    """Trace the Flask app's requests (not its health probes), when tracing is on."""
    if _configured and "flask" not in switched_off():
        from opentelemetry.instrumentation.flask import FlaskInstrumentor
        FlaskInstrumentor().instrument_app(app, excluded_urls="healthz,readyz")


def flush(timeout_millis: int = 5000) -> None:
    """Export what is buffered now (before a process leaves without its exit handlers)."""
    provider = trace.get_tracer_provider()
    if hasattr(provider, "force_flush"):
        provider.force_flush(timeout_millis)


class JourneysOnly(Sampler):
    """Root spans are kept but for a lone client call: a query or a call made outside any
    request, handler or relay span (the relay polling its outbox) is no journey."""

    def should_sample(self, parent_context: Any, trace_id: int, name: str,
                      kind: SpanKind | None = None, attributes: Any = None, links: Any = None,
                      trace_state: Any = None) -> SamplingResult:
        if kind is SpanKind.CLIENT:
            return SamplingResult(Decision.DROP)
        return SamplingResult(Decision.RECORD_AND_SAMPLE, attributes)

    def get_description(self) -> str:
        return "JourneysOnly"


# --- the outbox --------------------------------------------------------------------------------

@guarded({})
def created(destination: str, system: str, event: Mapping[str, Any],
            group_id: str | None) -> dict[str, dict[str, str]]:
    """Start and end a message's `create` span under the current span; its context as the
    `traceparent` message attribute ({} when nothing is traced)."""
    attributes = {"messaging.system": system, "messaging.destination.name": destination,
                  "messaging.operation.type": "create", "messaging.operation.name": "outbox",
                  "messaging.message.conversation_id": event["correlation_id"],
                  "school.event_type": event["event_type"], "school.event_id": event["event_id"]}
    if event.get("causation_id"):
        attributes["school.causation_id"] = event["causation_id"]
    # The ids an operator searches a conversation by (in the operations console).
    data = event.get("data") or {}
    attributes |= {f"{KEY_PREFIX}{name}": str(data[name]) for name in SEARCH_KEYS
                   if data.get(name) is not None}
    if group_id is not None:
        attributes[GROUP_ID] = group_id
    span = tracer.start_span(f"create {destination}", kind=SpanKind.PRODUCER,
                             attributes=attributes)
    span.end()
    if not span.get_span_context().is_valid:
        return {}
    carrier: dict[str, str] = {}
    _W3C.inject(carrier, trace.set_span_in_context(span))
    return {TRACEPARENT: {"DataType": "String", "StringValue": carrier[TRACEPARENT]}}


@guarded(None)
def message_context(attributes: Mapping[str, Any]) -> otel_context.Context | None:
    """The creation context a message carries in its `traceparent` attribute, if any."""
    value = (attributes.get(TRACEPARENT) or {}).get("StringValue")
    if not value:
        return None
    ctx = _W3C.extract({TRACEPARENT: value})
    return ctx if trace.get_current_span(ctx).get_span_context().is_valid else None


@contextmanager
def sending(rows: list[Any], destination: str, target: str, system: str,
            operation: str) -> Iterator[list[Span]]:
    """One `send` span per row, each the child of its row's creation context (a batch span
    with links would leave the relay out of every request's trace), around one batch call."""
    spans = _send_spans(rows, destination, target, system, operation)
    began = time.perf_counter()
    try:
        yield spans
    except Exception as exc:
        _failed(spans, exc)
        raise
    finally:
        _sent(spans, began, target, operation)


@guarded([])
def _send_spans(rows: list[Any], destination: str, target: str, system: str,
                operation: str) -> list[Span]:
    spans = []
    for row in rows:
        attributes: dict[str, Any] = {
            "messaging.system": system, "messaging.destination.name": target,
            "messaging.operation.type": "send", "messaging.operation.name": operation,
            "messaging.batch.message_count": len(rows), "school.event_type": row.event_type,
            "school.event_id": row.event_id, "school.outbox.attempts": row.attempts}
        if row.group_id is not None:
            attributes[GROUP_ID] = row.group_id
        carried = json.loads(row.attributes)
        if correlation := (carried.get("correlation_id") or {}).get("StringValue"):
            attributes["messaging.message.conversation_id"] = correlation
        parent = message_context(carried)
        spans.append(tracer.start_span(f"send {destination}", context=parent,
                                       kind=SpanKind.PRODUCER, attributes=attributes))
    return spans


@guarded(None)
def _failed(spans: list[Span], exc: Exception) -> None:
    for span in spans:
        span.record_exception(exc)
        span.set_status(Status(StatusCode.ERROR, type(exc).__name__))


@guarded(None)
def _sent(spans: list[Span], began: float, target: str, operation: str) -> None:
    publish_duration.record(time.perf_counter() - began, {
        "messaging.destination.name": target, "messaging.operation.name": operation})
    for span in spans:
        span.end()


# --- the consumer ------------------------------------------------------------------------------

@guarded(None)
def processing(queue: str, physical_name: str, message: Mapping[str, Any]) -> Span:
    """The `process` span of a received message, a child of its creation context."""
    attributes: dict[str, Any] = {
        "messaging.system": "aws_sqs", "messaging.destination.name": physical_name,
        "messaging.operation.type": "process", "messaging.operation.name": "process",
        "messaging.message.id": message["MessageId"],
        "messaging.aws_sqs.message.receive_count":
            int(message["Attributes"].get("ApproximateReceiveCount", "1"))}
    message_attributes = message.get("MessageAttributes", {})
    if correlation := message_attributes.get("correlation_id", {}).get("StringValue"):
        attributes["messaging.message.conversation_id"] = correlation
    if event_type := message_attributes.get("event_type", {}).get("StringValue"):
        attributes["school.event_type"] = event_type
    if group_id := message["Attributes"].get("MessageGroupId"):
        attributes[GROUP_ID] = group_id
    return tracer.start_span(f"process {queue}", context=message_context(message_attributes),
                             kind=SpanKind.CONSUMER, attributes=attributes)


@contextmanager
def current(span: Span | None) -> Iterator[None]:
    """Make `span` the current one (what the handler's outbox writes are children of)."""
    if span is None:
        yield
        return
    token = otel_context.attach(trace.set_span_in_context(span))
    try:
        yield
    finally:
        otel_context.detach(token)


@guarded(None)
def settled(span: Span | None, queue: str, outcome: str, **details: Any) -> None:
    """End a `process` span with its outcome, as an event (and an error status when the
    handler failed), and count the outcome."""
    consumed.add(1, {"messaging.destination.name": queue, "school.outcome": outcome})
    if span is None:
        return
    error = details.pop("error", None)
    span.set_attribute("school.outcome", outcome)
    if outcome != "handled":
        span.add_event(outcome, {k: v for k, v in details.items() if v is not None})
    if isinstance(error, BaseException):
        span.record_exception(error)
    if outcome in ("retry", "dead_lettered"):
        span.set_status(Status(StatusCode.ERROR, str(details.get("reason") or outcome)))
    span.end()


# --- the relay ---------------------------------------------------------------------------------

def watch_outbox(relay: Any) -> None:
    """Observe the outbox of `relay` at each metrics export: its backlog, the age of its oldest
    waiting row and its dead rows (when metrics are exported at all)."""
    if not _configured:
        return

    def backlog(_options: Any) -> Iterator[metrics.Observation]:
        yield metrics.Observation(relay.backlog()[0])

    def oldest(_options: Any) -> Iterator[metrics.Observation]:
        yield metrics.Observation(relay.backlog()[1])

    def dead(_options: Any) -> Iterator[metrics.Observation]:
        yield metrics.Observation(relay.dead_rows())

    meter.create_observable_gauge("school.outbox.backlog", [backlog], unit="{row}",
                                  description="outbox rows waiting to be published")
    meter.create_observable_gauge("school.outbox.oldest_age", [oldest], unit="s",
                                  description="age of the oldest outbox row waiting")
    meter.create_observable_gauge("school.outbox.dead_rows", [dead], unit="{row}",
                                  description="outbox rows set aside as dead")
