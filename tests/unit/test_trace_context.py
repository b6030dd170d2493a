"""The trace context survives the outbox: a row written in a request carries its
creation context, and a relay that publishes it much later, in another thread with no current
span, still sends it as the request's trace; the consumer's process span continues it."""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy import create_engine, select
from sqlalchemy.orm import sessionmaker

from shared import telemetry
from shared.envelope import MAX_MESSAGE_BYTES, Envelope, MessageTooLarge
from shared.events import CATALOGUE
from shared.outbox import Outbox, Relay
from shared.publisher import Publisher
from shared.tables import platform_metadata
from shared.topology import TOPOLOGY


@pytest.fixture(autouse=True)
def exporter(finished_spans: InMemorySpanExporter) -> InMemorySpanExporter:
    return finished_spans


def parent_id(span: ReadableSpan) -> int:
    """The span id of a finished span's parent (each span asked about has one)."""
    assert span.parent is not None
    return span.parent.span_id


def attributes(span: ReadableSpan) -> Mapping[str, Any]:
    """A finished span's attributes (each span asked about has some)."""
    assert span.attributes is not None
    return span.attributes


class Clients:
    """SQS and SNS as the relay sees them: what each batch call carried, accepted."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[dict[str, Any]]]] = []
        self.meta = type("Meta", (), {"region_name": "us-east-1"})()

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> Any:  # noqa: N803
        self.calls.append((QueueUrl, Entries))
        return {"Successful": [{"Id": e["Id"], "MessageId": f"m-{e['Id']}"} for e in Entries]}

    def publish_batch(self, TopicArn: str, PublishBatchRequestEntries: list[Any]) -> Any:  # noqa: N803
        self.calls.append((TopicArn, PublishBatchRequestEntries))
        return {"Successful": [{"Id": e["Id"], "MessageId": f"t-{e['Id']}"}
                               for e in PublishBatchRequestEntries]}

    def get_queue_url(self, QueueName: str) -> Any:  # noqa: N803
        return {"QueueUrl": f"http://sqs/{QueueName}"}

    def get_caller_identity(self) -> Any:
        return {"Account": "000000000000", "Arn": "arn:aws:iam::000000000000:root"}


def test_a_row_written_in_a_request_is_published_later_in_its_trace(
        tmp_path: Path, exporter: InMemorySpanExporter) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'outbox.sqlite'}")
    metadata = platform_metadata(outbox=True)
    metadata.create_all(engine)
    table = metadata.tables["outbox"]
    sessions = sessionmaker(engine)
    outbox = Outbox(table, TOPOLOGY)
    envelope = CATALOGUE.new("refund.requested", {
        "enrollment_id": "e-1", "student_id": "s-1", "amount_cents": 4990, "currency": "USD"},
        correlation_id="corr-1")
    tracer = trace.get_tracer("test")
    with tracer.start_as_current_span("POST /enrollments") as request, \
            sessions.begin() as session:
        outbox.add(session, envelope)
    request_context = request.get_span_context()
    assert isinstance(request, ReadableSpan)  # the SDK's span: it has an end time

    # much later, in the relay's thread, where no span is current
    clients = Clients()
    relay = Relay(engine, table, Publisher(clients, clients, TOPOLOGY, "t", sts=clients))
    thread = threading.Thread(target=relay.run_once)
    thread.start()
    thread.join()

    spans = {s.name: s for s in exporter.get_finished_spans()}
    with engine.connect() as conn:
        rows = conn.execute(select(table)).all()
    assert {r.destination for r in rows} == {"school-events", "payment-requests.fifo"}
    for row in rows:
        stored = json.loads(row.attributes)[telemetry.TRACEPARENT]["StringValue"]
        create = spans[f"create {row.destination}"]
        send = spans[f"send {row.destination}"]
        # the row holds its create span's context, a child of the request's span
        assert stored.split("-")[:3] == [
            "00", f"{create.context.trace_id:032x}", f"{create.context.span_id:016x}"]
        assert parent_id(create) == request_context.span_id
        assert create.kind is trace.SpanKind.PRODUCER
        # the relay's send span continues that trace, though the request ended long ago
        assert send.context.trace_id == request_context.trace_id
        assert parent_id(send) == create.context.span_id
        assert send.start_time is not None and request.end_time is not None
        assert send.start_time > request.end_time
        # and what it sent carries the creation context, unchanged
        [entry] = [e for _, entries in clients.calls for e in entries if e["Id"] == str(row.id)]
        assert entry["MessageAttributes"][telemetry.TRACEPARENT]["StringValue"] == stored
        assert attributes(send)["messaging.message.id"] in (f"m-{row.id}", f"t-{row.id}")
    fifo = attributes(spans["send payment-requests.fifo"])
    assert fifo["messaging.system"] == "aws_sqs" and fifo[telemetry.GROUP_ID] == "s-1"
    assert attributes(spans["send school-events"])["messaging.system"] == "aws.sns"

    # the consumer: its process span is a child of the creation context the message carries
    [(_, [entry])] = [(t, e) for t, e in clients.calls if t.endswith("payment-requests.fifo")]
    message = {"MessageId": "m-1", "Body": entry["MessageBody"],
               "MessageAttributes": entry["MessageAttributes"],
               "Attributes": {"MessageGroupId": "s-1", "ApproximateReceiveCount": "1"}}
    process = telemetry.processing("payment-requests.fifo", "t-payment-requests.fifo", message)
    telemetry.settled(process, "payment-requests.fifo", "retry", retry_in_s=2,
                      error=RuntimeError("x"))
    finished = exporter.get_finished_spans()[-1]
    assert finished.name == "process payment-requests.fifo"
    assert parent_id(finished) == spans["create payment-requests.fifo"].context.span_id
    assert finished.context.trace_id == request_context.trace_id
    assert [e.name for e in finished.events] == ["retry", "exception"]
    assert finished.status.status_code is trace.StatusCode.ERROR


def test_the_traceparent_counts_against_the_message_limits() -> None:
    """With the traceparent, the envelope's attributes and the three a dead-lettered copy adds
    stay within SQS's ten; and the size limit counts the traceparent's bytes."""
    envelope = CATALOGUE.new("contact.recorded", {"student_id": "s", "email": "ada@example.com",
                                                  "name": "A"}, correlation_id="c")
    dead_letter = {"dlq_reason", "dlq_error", "source_queue"}
    assert len(envelope.attributes()) + 1 + len(dead_letter) <= 10
    tracer = trace.get_tracer("test")
    padding = MAX_MESSAGE_BYTES - len(Envelope(**{**envelope.__dict__, "data": {}}).body())
    big = Envelope(**{**envelope.__dict__, "data": {"x": "y" * (padding - 150)}})
    big.check_size()  # fits without the traceparent...
    engine = create_engine("sqlite://")
    metadata = platform_metadata(outbox=True)
    metadata.create_all(engine)
    outbox = Outbox(metadata.tables["outbox"], TOPOLOGY)
    with tracer.start_as_current_span("request"), sessionmaker(engine).begin() as session, \
            pytest.raises(MessageTooLarge):
        outbox.add(session, big)  # ...not with it
    # the same limit where nothing is traced: an upstream context may pass through anyway
    with sessionmaker(engine).begin() as session, pytest.raises(MessageTooLarge):
        outbox.add(session, big)
    assert len(telemetry.RESERVED[telemetry.TRACEPARENT]["StringValue"]) == 55


def test_without_an_endpoint_nothing_is_set_up(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                 "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    assert not telemetry.enabled()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
    assert telemetry.enabled()
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert not telemetry.enabled()


def test_sql_spans_follow_the_standard_switch(monkeypatch: pytest.MonkeyPatch,
                                              exporter: InMemorySpanExporter) -> None:
    """OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=sqlalchemy leaves the engine alone (the bench's
    "on without SQL spans"); without it, a statement inside a span is a span of its own."""
    monkeypatch.setattr(telemetry, "_configured", True)
    tracer = trace.get_tracer("test")

    def statements(engine: Any) -> list[str]:
        exporter.clear()
        with tracer.start_as_current_span("handler"), engine.connect() as conn:
            conn.execute(select(1))
        return [s.name for s in exporter.get_finished_spans() if s.name != "handler"]

    monkeypatch.setenv("OTEL_PYTHON_DISABLED_INSTRUMENTATIONS", "flask, SQLAlchemy")
    assert telemetry.switched_off() == {"flask", "sqlalchemy"}
    quiet = create_engine("sqlite://")
    telemetry.instrument_engine(quiet)
    assert statements(quiet) == []
    monkeypatch.delenv("OTEL_PYTHON_DISABLED_INSTRUMENTATIONS")
    traced = create_engine("sqlite://")
    telemetry.instrument_engine(traced)
    try:
        assert "SELECT" in " ".join(statements(traced)).upper()
    finally:  # the instrumentor is one per process: leave the rest of the suite as it was
        from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
        SQLAlchemyInstrumentor().uninstrument()


def test_a_failing_tracer_costs_no_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                           ) -> None:
    """Telemetry is guarded: with a tracer that fails on every span, the event is still written
    and the relay still publishes it and marks it published."""
    def broken(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError("tracer down")
    monkeypatch.setattr(telemetry.tracer, "start_span", broken)
    engine = create_engine(f"sqlite:///{tmp_path / 'outbox.sqlite'}")
    metadata = platform_metadata(outbox=True)
    metadata.create_all(engine)
    table = metadata.tables["outbox"]
    envelope = CATALOGUE.new("contact.recorded", {"student_id": "s", "name": "A",
                                                  "email": "ada@example.com"},
                             correlation_id="c")
    with sessionmaker(engine).begin() as session:
        Outbox(table, TOPOLOGY).add(session, envelope)
    clients = Clients()
    relay = Relay(engine, table, Publisher(clients, clients, TOPOLOGY, "t", sts=clients))
    assert relay.run_once() == 1
    with engine.connect() as conn:
        [row] = conn.execute(select(table)).all()
    assert row.published_at is not None
    assert telemetry.TRACEPARENT not in json.loads(row.attributes)
    assert telemetry.processing("q", "t-q", {"MessageId": "m", "Attributes": {}}) is None
