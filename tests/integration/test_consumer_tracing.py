"""The consumer's process spans against LocalStack and a real database: each message
is processed under a child of the creation context it carries, and its outcome (handled,
duplicate, retry, dead-lettered) is on that span."""

from __future__ import annotations

from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from shared import telemetry
from shared.handling import Outcome
from tests.integration.test_consumer import FIFO, STANDARD, make, poll_until
from tests.support import probe
from tests.support.messages import ping, send


def creation(name: str) -> tuple[Any, dict[str, dict[str, str]]]:
    """A producer's create span and the traceparent attribute it gives the message."""
    with trace.get_tracer("test").start_as_current_span("request"):
        attribute = telemetry.created(name, "aws_sqs", {
            "correlation_id": "c", "event_type": "probe.ping", "event_id": "e"}, None)
    return trace.get_current_span(telemetry.message_context(attribute)), attribute


def send_traced(sqs: Any, url: str, envelope: Any, attribute: dict[str, Any]) -> None:
    params: dict[str, Any] = {"QueueUrl": url, "MessageBody": envelope.body(),
                              "MessageAttributes": envelope.attributes() | attribute}
    if url.endswith(".fifo"):
        params |= {"MessageGroupId": envelope.data["group"],
                   "MessageDeduplicationId": envelope.event_id}
    sqs.send_message(**params)


def processes(exporter: InMemorySpanExporter) -> list[Any]:
    return [s for s in exporter.get_finished_spans() if s.kind is trace.SpanKind.CONSUMER]


def test_a_duplicate_delivery_is_an_event_of_its_own_process_span(
        sqs, probe_stack, finished_spans: InMemorySpanExporter) -> None:
    consumer = make(sqs, probe_stack, STANDARD, probe.Probe())
    create, attribute = creation(STANDARD)
    event = ping("a", 1)
    for _ in range(2):
        send_traced(sqs, probe_stack.queue(STANDARD).url, event, attribute)
    poll_until(consumer, lambda o: len(o) == 2, what="both deliveries")
    spans = processes(finished_spans)
    assert sorted(s.attributes["school.outcome"] for s in spans) == ["duplicate", "handled"]
    for span in spans:
        # a child of the creation context the message carried, in the producer's trace
        assert span.parent.span_id == create.get_span_context().span_id
        assert span.context.trace_id == create.get_span_context().trace_id
        assert span.name == f"process {STANDARD}"
        assert span.attributes["messaging.system"] == "aws_sqs"
        assert span.attributes["messaging.operation.type"] == "process"
        assert span.attributes["messaging.destination.name"].endswith(STANDARD)
        assert span.attributes["messaging.message.id"]
    [duplicate] = [s for s in spans if s.attributes["school.outcome"] == "duplicate"]
    assert [e.name for e in duplicate.events] == ["duplicate"]


def test_a_failure_on_fifo_retries_then_dead_letters_with_the_group_on_every_span(
        sqs, probe_stack, finished_spans: InMemorySpanExporter) -> None:
    consumer = make(sqs, probe_stack, FIFO, probe.Probe(), max_attempts=2)
    _, attribute = creation(FIFO)
    send_traced(sqs, probe_stack.queue(FIFO).url, ping("g1", 1, fail_times=99), attribute)
    poll_until(consumer, lambda o: Outcome.DEAD_LETTERED in o.values(), 40, "the dead-letter")
    spans = processes(finished_spans)
    outcomes = [s.attributes["school.outcome"] for s in spans]
    assert outcomes == ["retry", "dead_lettered"], outcomes
    assert {s.attributes[telemetry.GROUP_ID] for s in spans} == {"g1"}
    retry, dead = spans
    assert retry.status.status_code is trace.StatusCode.ERROR
    assert [e.name for e in retry.events] == ["retry", "exception"]
    assert dead.status.status_code is trace.StatusCode.ERROR
    assert dict(dead.events[0].attributes or {})["reason"] == "retries_exhausted"


def test_a_message_without_a_traceparent_starts_a_trace_of_its_own(
        sqs, probe_stack, finished_spans: InMemorySpanExporter) -> None:
    consumer = make(sqs, probe_stack, STANDARD, probe.Probe())
    send(sqs, probe_stack.queue(STANDARD).url, ping("a", 2))
    poll_until(consumer, lambda o: Outcome.HANDLED in o.values())
    [span] = processes(finished_spans)
    assert span.parent is None and span.attributes["school.outcome"] == "handled"
