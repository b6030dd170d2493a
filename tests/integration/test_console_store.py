"""The console's record (services/console/store.py) and what it makes of a conversation
(conversation.py), on the suite's database, with spans made by the OpenTelemetry SDK and encoded
as the services' exporters send them: out of order, twice, and from several processes."""

from __future__ import annotations

import gzip
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Span, SpanKind, Tracer, set_span_in_context
from sqlalchemy import func, select, update

from services.console import tables
from services.console.conversation import assemble
from services.console.store import BadExport, Store, decode
from shared import db
from shared.auth import OTLP_TOKEN_HEADER
from shared.cli import tree


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    db.migrate("console", database_url)
    engine = db.make_engine(database_url)
    yield Store(engine)
    engine.dispose()


class Journey:
    """Spans of several services, as their processes would make them."""

    def __init__(self) -> None:
        self.finished = InMemorySpanExporter()
        self.tracers: dict[str, Tracer] = {}

    def tracer(self, service: str) -> Tracer:
        if service not in self.tracers:
            provider = TracerProvider(resource=Resource.create({"service.name": service}))
            provider.add_span_processor(SimpleSpanProcessor(self.finished))
            self.tracers[service] = provider.get_tracer("test")
        return self.tracers[service]

    def request(self, service: str, name: str) -> Span:
        return self.tracer(service).start_span(name, kind=SpanKind.SERVER,
                                               attributes={"http.response.status_code": 202})

    def create(self, service: str, parent: Span, destination: str, event_type: str,
               event_id: str, correlation: str, cause: str | None = None,
               **keys: str) -> Span:
        attributes: dict[str, Any] = {
            "messaging.operation.type": "create", "school.event_type": event_type,
            "school.event_id": event_id, "messaging.message.conversation_id": correlation}
        if cause:
            attributes["school.causation_id"] = cause
        attributes |= {f"school.key.{k}": v for k, v in keys.items()}
        span = self.tracer(service).start_span(f"create {destination}",
                                               context=set_span_in_context(parent),
                                               kind=SpanKind.PRODUCER, attributes=attributes)
        span.end()
        return span

    def send(self, service: str, created: Span, destination: str, correlation: str) -> None:
        self.tracer(service).start_span(f"send {destination}",
                                        context=set_span_in_context(created), attributes={
                                            "messaging.operation.type": "send",
                                            "messaging.message.conversation_id": correlation}
                                        ).end()

    def process(self, service: str, created: Span, queue: str, correlation: str, outcome: str,
                reason: str | None = None) -> Span:
        span = self.tracer(service).start_span(
            f"process {queue}", context=set_span_in_context(created), kind=SpanKind.CONSUMER,
            attributes={"messaging.operation.type": "process", "school.outcome": outcome,
                        "messaging.message.conversation_id": correlation})
        if reason:
            span.add_event(outcome, {"reason": reason})
        return span

    def export(self, spans: list[ReadableSpan] | None = None) -> bytes:
        body: bytes = encode_spans(spans or list(self.finished.get_finished_spans())
                                   ).SerializeToString()
        return body


def saga(journey: Journey, correlation: str) -> None:
    """A request, enrollment.requested (retried once by payment), payment.succeeded, and
    enrollment.confirmed that notification has not handled yet."""
    post = journey.request("enrollment", "POST /enrollments")
    requested = journey.create("enrollment", post, "payment-requests.fifo",
                               "enrollment.requested", "e1", correlation,
                               enrollment_id="enr-1", student_id="stu-1")
    journey.create("enrollment", post, "school-events", "enrollment.requested", "e1", correlation)
    post.end()
    journey.send("enrollment", requested, "payment-requests.fifo", correlation)
    journey.process("payment", requested, "payment-requests.fifo", correlation, "retry",
                    "GatewayUnavailable").end()
    handling = journey.process("payment", requested, "payment-requests.fifo", correlation,
                               "handled")
    succeeded = journey.create("payment", handling, "enrollment-payment-results.fifo",
                               "payment.succeeded", "e2", correlation, cause="e1",
                               payment_id="pay-1")
    handling.end()
    confirming = journey.process("enrollment", succeeded, "enrollment-payment-results.fifo",
                                 correlation, "handled")
    journey.create("enrollment", confirming, "school-events", "enrollment.confirmed", "e3",
                   correlation, cause="e2")
    confirming.end()


def test_a_conversation_in_causal_order_whatever_order_its_spans_arrive_in(store: Store
                                                                          ) -> None:
    journey = Journey()
    saga(journey, "conv-1")
    spans = list(journey.finished.get_finished_spans())
    for span in reversed(spans):  # one span per export, newest first
        store.ingest(decode(journey.export([span]), None))
    store.ingest(decode(gzip.compress(journey.export()), "gzip"))  # an exporter's retry

    with store.engine.connect() as conn:
        kept = conn.execute(select(func.count()).select_from(tables.spans)).scalar_one()
    assert kept == len(spans)  # the retry added nothing; the request is kept (a POST)
    c = assemble("conv-1", store.conversation("conv-1"))
    assert c is not None
    assert [(e["event_type"], e["producer"], e["depth"]) for e in c["events"]] == [
        ("enrollment.requested", "enrollment", 0), ("payment.succeeded", "payment", 1),
        ("enrollment.confirmed", "enrollment", 2)]
    first, second, third = c["events"]
    assert {d["name"]: d["published_ms"] is not None for d in first["destinations"]} == {
        "payment-requests.fifo": True, "school-events": False}
    payment = next(h for h in first["handlings"] if h["service"] == "payment")
    assert payment["outcome"] == "handled"
    assert [(a["outcome"], a["detail"]) for a in payment["attempts"]] == [
        ("retry", "GatewayUnavailable"), ("handled", None)]
    # what the topology routes there and has not been handled yet is waiting
    assert {h["service"]: h["outcome"] for h in first["handlings"]} == {
        "payment": "handled", "analytics": "waiting"}
    assert {h["service"]: h["outcome"] for h in third["handlings"]} == {
        "notification": "waiting", "analytics": "waiting"}
    assert c["request"]["name"] == "POST /enrollments" and c["request"]["status"] == "202"
    assert c["lanes"] == ["client", "enrollment", "payment", "notification", "analytics"]
    assert c["outcomes"] == {"retry": 1, "handled": 2, "waiting": 4}

    printed = tree(c)
    assert printed.splitlines()[-1] == ("3 event(s): enrollment.confirmed, "
                                        "enrollment.requested, payment.succeeded")
    assert "retried in" in printed and ": GatewayUnavailable" in printed
    assert assemble("nobody", store.conversation("nobody")) is None


def test_search_by_any_id_and_the_recent_list(store: Store) -> None:
    journey = Journey()
    saga(journey, "conv-1")
    saga(journey, "conv-2")  # the same student and enrollment ids: both are found
    store.ingest(decode(journey.export(), None))
    assert {s.correlation_id for s in store.search("stu-1")} == {"conv-1", "conv-2"}
    for text in ("enr-1", "pay-1", " conv-1 "):
        assert "conv-1" in [s.correlation_id for s in store.search(text)], text
    assert store.search("nothing") == [] and store.search("   ") == []
    [summary] = store.search("conv-2")[:1]
    assert (summary.first_event, summary.events, summary.retries, summary.dead_lettered) == (
        "enrollment.requested", 3, 1, 0)
    assert [s.correlation_id for s in store.recent(1)] == ["conv-2"]


def test_what_is_not_a_journey_is_not_kept_and_old_spans_are_purged(store: Store) -> None:
    journey = Journey()
    tracer = journey.tracer("payment")
    tracer.start_span("GET /payments", kind=SpanKind.SERVER).end()  # a read starts nothing
    tracer.start_span("SELECT school_payment", kind=SpanKind.CLIENT).end()  # a statement
    assert store.ingest(decode(journey.export(), None)) == 0
    saga(journey, "conv-old")
    store.ingest(decode(journey.export(), None))
    with store.engine.begin() as conn:
        conn.execute(update(tables.spans).values(
            started_at=datetime.now(UTC) - timedelta(hours=25)))
        conn.execute(update(tables.keys).values(seen_at=datetime.now(UTC) - timedelta(hours=25)))
    store.purge()
    assert store.recent() == [] and store.search("stu-1") == []


@pytest.mark.parametrize(("body", "encoding"), [
    (b"\xff\xfe not protobuf", None), (b"not gzip", "gzip"),
    (gzip.compress(b"\0" * (17 * 1024 * 1024)), "gzip")])
def test_an_export_the_console_cannot_read_is_refused_with_why(body: bytes,
                                                               encoding: str | None) -> None:
    with pytest.raises(BadExport, match="OTLP|at most"):
        decode(body, encoding)


def test_the_intake_takes_a_collector_sized_export_and_refuses_what_is_not_otlp(
        database_url: str, issuer_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Through the console's own app: an export above the 1 MiB other routes allow is kept,
    a body that is not protobuf is a 422 with why (never a 500)."""
    from deploy.local import issuer
    from deploy.local.tokens import mint
    from shared import bootstrap
    db.migrate("console", database_url)
    secret = secrets.token_urlsafe(24)
    monkeypatch.setenv("CONSOLE_DATABASE_URL", database_url)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # no SQS needed here
    monkeypatch.setenv("OIDC_ISSUER", issuer_url)
    monkeypatch.setenv("OIDC_CLIENT_IDS", issuer.client_ids())
    monkeypatch.setenv("SCHOOL_OTLP_TOKEN", secret)
    client = bootstrap.api("console").test_client()
    exporter = {OTLP_TOKEN_HEADER: secret}
    operator = {"Authorization": f"Bearer {mint(issuer_url, 'ops-1', ['operator'])}"}
    journey = Journey()
    for n in range(600):
        saga(journey, f"conv-{n}")
    body = journey.export()
    assert len(body) > 1024 * 1024
    kept = client.post("/v1/traces", data=body, content_type="application/x-protobuf",
                       headers=exporter)
    assert kept.status_code == 200, kept.get_json()
    assert len(client.get("/api/conversations?limit=200", headers=operator).get_json()) == 200
    for data, kind in ((b"junk", "application/x-protobuf"), (b"{}", "application/json")):
        refused = client.post("/v1/traces", data=data, content_type=kind, headers=exporter)
        assert refused.status_code == 422 and refused.get_json()["detail"]
    topology = client.get("/api/topology", headers=operator)  # SQS unreachable: a 503
    assert topology.status_code == 503 and "cannot read the queues" in topology.get_json()[
        "detail"]


def test_spans_anyone_could_send_neither_break_a_conversation_nor_lose_an_export(
        store: Store) -> None:
    """The intake takes whatever reaches it: a create span without an event id, events that
    cause themselves or each other, NULs and overlong values (which PostgreSQL refuses, and one
    refused row would fail the whole export), and ids no tracer makes."""
    journey = Journey()
    post = journey.request("enrollment", "POST /enrollments")
    journey.create("enrollment", post, "school-events", "student.registered", "", "odd")
    journey.create("enrollment", post, "school-events", "a.self", "self", "odd", cause="self")
    journey.create("enrollment", post, "school-events", "a.one", "one", "odd", cause="two")
    journey.create("enrollment", post, "school-events", "a.two", "two", "odd", cause="one")
    journey.create("enrollment", post, "school-events", "x\x00" + "y" * 300, "e\x00" + "9" * 99,
                   "odd", student_id="s\x00" + "1" * 99)
    handled = journey.process("payment", post, "q", "odd", "handled\x00" + "!" * 40)
    handled.end()
    post.end()
    export = decode(journey.export(), None)
    broken = export.resource_spans[0].scope_spans[0].spans.add()
    broken.CopyFrom(export.resource_spans[0].scope_spans[0].spans[0])
    broken.span_id = b"\x01\x02"  # not 8 bytes
    assert store.ingest(export) == 6  # the create without an event id and the broken span left
    c = assemble("odd", store.conversation("odd"))
    assert c is not None
    assert sorted(e["event_id"] for e in c["events"]) == sorted(
        ["self", "one", "two", "e" + "9" * 63])
    assert len(c["events"]) == 4 and all(e["depth"] in (0, 1) for e in c["events"])
    assert tree(c).splitlines()[-1].startswith("4 event(s)")
    assert [s.correlation_id for s in store.search("s" + "1" * 63)] == ["odd"]


def test_a_second_dlq_job_is_told_the_first_is_running_instead_of_waiting(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """While one listing or redrive holds the DLQs, another request gets a 409 that says so
    within BUSY_AFTER, rather than hold one of the console's few threads (and /healthz's)."""
    from services.console import queues
    from shared.errors import Conflict
    from shared.settings import Settings
    monkeypatch.setattr(queues, "BUSY_AFTER", 0.1)
    view = queues.Queues(sqs=None, settings=Settings())
    with (view._alone(), pytest.raises(Conflict, match="another listing or redrive"),
          view._alone()):
        pass
    with view._alone():  # free again once the first has finished
        pass
