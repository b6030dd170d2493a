"""The console's own database: the spans it has received, the journeys' record.

The console reads no service's database. What it shows of a conversation comes from the spans
every process already exports for tracing: a `create` span per outbox row (the event, who wrote
it, what caused it), a `send` span when the relay published it, a `process` span per attempt of
each consumer with its outcome, and the request that started it all. It keeps one row per span,
and the ids a conversation can be searched by.
"""

from __future__ import annotations

from sqlalchemy import Column, Float, Index, MetaData, String, Table

from shared.tables import ref, timestamp

metadata = MetaData()

spans = Table(
    "spans", metadata,
    Column("span_id", String(16), primary_key=True),
    Column("trace_id", String(32), nullable=False, index=True),
    Column("parent_id", String(16), nullable=True),
    Column("service", String(50), nullable=False),
    Column("kind", String(10), nullable=False),  # request, create, send or process
    Column("name", String(200), nullable=False),
    ref("correlation_id", nullable=True, index=True),
    ref("event_id", nullable=True),
    Column("event_type", String(100), nullable=True),
    ref("causation_id", nullable=True),
    Column("destination", String(200), nullable=True),
    Column("group_id", String(200), nullable=True),
    Column("outcome", String(20), nullable=True),  # a process span's, or a request's status
    Column("detail", String(1000), nullable=True),  # why: the error, the DLQ reason
    timestamp("started_at", index=True),
    Column("duration_ms", Float, nullable=False),
)

# The ids of an event's data (enrollment, student, submission...) -> the conversations they
# appear in: a search by any of them finds every conversation about that subject.
keys = Table(
    "conversation_keys", metadata,
    Column("value", String(64), primary_key=True),
    ref("correlation_id", primary_key=True),
    Column("name", String(50), nullable=False),
    timestamp("seen_at", index=True),
)

Index("ix_spans_correlation_started", spans.c.correlation_id, spans.c.started_at)
