"""The console's record of journeys: the spans the processes export, kept one row each.

Every process of the stack exports its spans over OTLP/HTTP; `make up` points their
trace exporters at the console (`/v1/traces`). `Store.ingest` keeps the spans that tell a
conversation's story: the request that started it, each event's `create` (who wrote it, in
answer to what), `send` (when the relay published it) and every `process` attempt with its
outcome. Database statements and the console's own requests are not kept.

It is a window, not a ledger: spans older than the retention are purged, a span the exporter
dropped (its queue full) is missing, and a sampler that drops a journey drops it here too. The
guarantees live in the services' databases; this is where an operator sees them at work.
"""

from __future__ import annotations

import gzip
import io
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from sqlalchemy import Engine, Row, delete, func, select
from sqlalchemy.dialects import postgresql, sqlite

from services.console.tables import keys, spans
from shared.db import utc
from shared.telemetry import KEY_PREFIX

SERVER = 2  # OTLP's SpanKind: a request a service answered
CHANGES = ("POST", "PUT", "PATCH", "DELETE")  # only a request that changes state starts a journey
PURGE_EVERY = 60.0  # seconds between purges, at most
MAX_BODY = 16 * 1024 * 1024  # bytes of one export, after decompression


class BadExport(ValueError):
    """An export the console cannot read (not OTLP protobuf, or too large)."""


def _value(v: Any) -> Any:
    kind = v.WhichOneof("value")
    return getattr(v, kind) if kind in ("string_value", "int_value", "double_value",
                                        "bool_value") else None


def _attrs(pairs: Any) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in pairs}


def _cut(text: Any, length: int) -> str | None:
    """A text that fits its column on either database: PostgreSQL refuses an overlong value
    and any NUL (SQLite would take both), and one refused row would lose the whole export."""
    return None if text is None else str(text).replace("\x00", "")[:length]


def decode(body: bytes, encoding: str | None) -> ExportTraceServiceRequest:
    """The export request in `body` (gzip when the exporter compresses)."""
    try:
        if (encoding or "").lower() == "gzip":
            body = gzip.GzipFile(fileobj=io.BytesIO(body)).read(MAX_BODY + 1)
        if len(body) > MAX_BODY:
            raise BadExport(f"an export may hold at most {MAX_BODY} bytes")
        return ExportTraceServiceRequest.FromString(body)
    except (OSError, EOFError, ValueError) as exc:
        if isinstance(exc, BadExport):
            raise
        raise BadExport(f"not an OTLP/HTTP protobuf trace export: {exc}") from None
    except Exception as exc:  # protobuf's DecodeError is not a ValueError
        raise BadExport(f"not an OTLP/HTTP protobuf trace export: {exc}") from None


def rows_of(request: ExportTraceServiceRequest) -> Iterator[tuple[dict[str, Any],
                                                                  list[dict[str, Any]]]]:
    """Each span worth keeping as a row of `spans`, with its rows of `conversation_keys`."""
    for resource_spans in request.resource_spans:
        service = _cut(_attrs(resource_spans.resource.attributes).get("service.name") or "?",
                       50) or "?"
        for scope in resource_spans.scope_spans:
            for s in scope.spans:
                attributes = _attrs(s.attributes)
                kind = _kind(s.kind, s.name, attributes)
                if kind is None or len(s.trace_id) != 16 or len(s.span_id) != 8 or len(
                        s.parent_span_id) not in (0, 8):
                    continue  # no journey span, or ids no tracer makes
                if kind == "create" and not attributes.get("school.event_id"):
                    continue  # an event is known by its id: without one it is no event
                started = datetime.fromtimestamp(s.start_time_unix_nano / 1e9, UTC)
                correlation = attributes.get("messaging.message.conversation_id")
                row = {
                    "span_id": s.span_id.hex(), "trace_id": s.trace_id.hex(),
                    "parent_id": s.parent_span_id.hex() or None, "service": service,
                    "kind": kind, "name": _cut(s.name, 200),
                    "correlation_id": _cut(correlation, 64),
                    "event_id": _cut(attributes.get("school.event_id"), 64),
                    "event_type": _cut(attributes.get("school.event_type"), 100),
                    "causation_id": _cut(attributes.get("school.causation_id"), 64),
                    "destination": _cut(s.name.split(" ", 1)[-1], 200),
                    "group_id": _cut(attributes.get("messaging.aws_sqs.message.group_id"), 200),
                    "outcome": _cut(_outcome(kind, attributes), 20),
                    "detail": _cut(_detail(s.events), 1000),
                    "started_at": started,
                    "duration_ms": max(0, s.end_time_unix_nano - s.start_time_unix_nano) / 1e6,
                }
                found = [{"value": _cut(v, 64), "correlation_id": row["correlation_id"],
                          "name": _cut(k.removeprefix(KEY_PREFIX), 50), "seen_at": started}
                         for k, v in attributes.items()
                         if k.startswith(KEY_PREFIX) and v and row["correlation_id"]]
                yield row, found


def _kind(span_kind: int, name: str, attributes: dict[str, Any]) -> str | None:
    operation = attributes.get("messaging.operation.type")
    if operation in ("create", "send", "process"):
        return str(operation)
    if span_kind == SERVER and name.split(" ", 1)[0] in CHANGES:
        return "request"
    return None


def _outcome(kind: str, attributes: dict[str, Any]) -> str | None:
    if kind == "process":
        return str(attributes.get("school.outcome") or "handled")
    if kind == "request":
        status = attributes.get("http.response.status_code") or attributes.get(
            "http.status_code")
        return None if status is None else str(status)
    return None


def _detail(events: Iterable[Any]) -> str | None:
    """Why a span ended as it did: its outcome event's reason, or the exception it recorded."""
    parts = []
    for event in events:
        attributes = _attrs(event.attributes)
        if event.name == "exception":
            parts.append(f"{attributes.get('exception.type', '')}: "
                         f"{attributes.get('exception.message', '')}".strip(": "))
        elif reason := attributes.get("reason"):
            parts.append(str(reason))
    return "; ".join(parts) or None


@dataclass(frozen=True)
class Summary:
    correlation_id: str
    started_at: datetime
    last_at: datetime
    first_event: str
    events: int
    retries: int
    dead_lettered: int


class Store:
    """The spans table of the console's database."""

    def __init__(self, engine: Engine, retention: timedelta = timedelta(hours=24)) -> None:
        self.engine, self.retention = engine, retention
        self._purged = 0.0
        self._lock = threading.Lock()

    def _insert(self, table: Any) -> Any:
        module: Any = postgresql if self.engine.dialect.name == "postgresql" else sqlite
        return module.insert(table).on_conflict_do_nothing()

    def ingest(self, request: ExportTraceServiceRequest) -> int:
        """Keep the journey spans of one export (an exporter's retry adds nothing twice)."""
        span_rows: list[dict[str, Any]] = []
        key_rows: dict[tuple[str, str], dict[str, Any]] = {}
        for row, found in rows_of(request):
            span_rows.append(row)
            key_rows |= {(k["value"], k["correlation_id"]): k for k in found}
        if span_rows:
            with self.engine.begin() as conn:
                conn.execute(self._insert(spans), span_rows)
                if key_rows:
                    conn.execute(self._insert(keys), list(key_rows.values()))
        self._maybe_purge()
        return len(span_rows)

    def _maybe_purge(self) -> None:
        now = time.monotonic()
        with self._lock:
            if now - self._purged < PURGE_EVERY:
                return
            self._purged = now
        self.purge()

    def purge(self) -> None:
        """Forget what is older than the retention."""
        before = datetime.now(UTC) - self.retention
        with self.engine.begin() as conn:
            conn.execute(delete(spans).where(spans.c.started_at < before))
            conn.execute(delete(keys).where(keys.c.seen_at < before))

    def conversation(self, correlation_id: str) -> list[Row[Any]]:
        """Every kept span of a conversation, and the requests whose traces it continues."""
        with self.engine.connect() as conn:
            own = conn.execute(select(spans).where(spans.c.correlation_id == correlation_id)
                               ).all()
            traces = {r.trace_id for r in own}
            requests = conn.execute(select(spans).where(
                spans.c.kind == "request", spans.c.trace_id.in_(traces))).all() if traces else []
        return [*requests, *own]

    def recent(self, limit: int = 20) -> list[Summary]:
        """The conversations with the latest events, newest first."""
        latest = func.max(spans.c.started_at)
        query = (select(spans.c.correlation_id).where(spans.c.kind == "create",
                                                      spans.c.correlation_id.is_not(None))
                 .group_by(spans.c.correlation_id).order_by(latest.desc()).limit(limit))
        with self.engine.connect() as conn:
            ids = [r.correlation_id for r in conn.execute(query)]
        return self.summaries(ids)

    def search(self, text: str, limit: int = 50) -> list[Summary]:
        """The conversations a correlation id, or an enrollment, student, submission (or other
        subject) id names."""
        text = text.strip()[:64]
        if not text:
            return []
        with self.engine.connect() as conn:
            ids = [r.correlation_id for r in conn.execute(
                select(keys.c.correlation_id).where(keys.c.value == text)
                .order_by(keys.c.seen_at.desc()).limit(limit))]
            if conn.execute(select(spans.c.span_id).where(spans.c.correlation_id == text)
                            .limit(1)).first():
                ids.insert(0, text)
        return self.summaries(list(dict.fromkeys(ids)))

    def summaries(self, ids: Sequence[str]) -> list[Summary]:
        if not ids:
            return []
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(spans.c.correlation_id, spans.c.kind, spans.c.event_id,
                       spans.c.event_type, spans.c.causation_id, spans.c.outcome,
                       spans.c.started_at)
                .where(spans.c.correlation_id.in_(ids), spans.c.kind.in_(("create", "process")))
                .order_by(spans.c.started_at)).all()
        by_id: dict[str, list[Any]] = {i: [] for i in ids}
        for row in rows:
            by_id[row.correlation_id].append(row)
        found = []
        for correlation_id, own in by_id.items():
            created = [r for r in own if r.kind == "create"]
            if not created:
                continue
            events = {r.event_id: r for r in created}
            roots = [r for r in created if r.causation_id not in events] or created
            outcomes = [r.outcome for r in own if r.kind == "process"]
            found.append(Summary(correlation_id, utc(own[0].started_at),
                                 utc(own[-1].started_at), roots[0].event_type or "?",
                                 len(events), outcomes.count("retry"),
                                 outcomes.count("dead_lettered")))
        return found
