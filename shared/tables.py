"""The platform's tables, which every service's metadata includes (outbox and inbox)."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets a BIGINT identity.
_Id = BigInteger().with_variant(Integer(), "sqlite")


def outbox_table(metadata: MetaData) -> Table:
    """Messages waiting to be published, committed with the change that caused them."""
    return Table(
        "outbox", metadata,
        Column("id", _Id, primary_key=True, autoincrement=True),
        Column("destination", String(100), nullable=False),
        Column("group_id", String(200), nullable=True),
        Column("dedup_id", String(100), nullable=False),
        Column("event_id", String(64), nullable=False),
        Column("event_type", String(100), nullable=False),
        Column("body", Text, nullable=False),
        Column("attributes", Text, nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False),
        Column("published_at", DateTime(timezone=True), nullable=True),
        Column("attempts", Integer, nullable=False, default=0),
        # A refused row waits in backoff until next_attempt_at; a row SQS or SNS can never
        # accept is set aside as dead (dead_at) and holds back only its own FIFO group.
        Column("next_attempt_at", DateTime(timezone=True), nullable=True),
        Column("dead_at", DateTime(timezone=True), nullable=True),
        Column("last_error", String(1000), nullable=True),
        Index("ix_outbox_pending", "published_at", "id"),
        Index("ix_outbox_group", "destination", "group_id"),
    )


def inbox_table(metadata: MetaData) -> Table:
    """Events already handled, per consumer: the idempotency record (DESIGN section 5)."""
    return Table(
        "inbox", metadata,
        Column("consumer", String(100), primary_key=True),
        Column("event_id", String(64), primary_key=True),
        Column("event_type", String(100), nullable=False),
        Column("handled_at", DateTime(timezone=True), nullable=False, index=True),
    )


def attempts_table(metadata: MetaData) -> Table:
    """Failed handler attempts per (consumer, event): the retry budget counts these, not SQS
    receives, so a message handed back untried spends nothing (DESIGN section 10)."""
    return Table(
        "handler_attempts", metadata,
        Column("consumer", String(100), primary_key=True),
        Column("event_id", String(64), primary_key=True),
        Column("failures", Integer, nullable=False),
        Column("last_error", String(1000), nullable=False),
        Column("updated_at", DateTime(timezone=True), nullable=False, index=True),
    )


def idempotency_table(metadata: MetaData) -> Table:
    """First responses to POSTs sent with an Idempotency-Key (DESIGN section 5)."""
    return Table(
        "idempotency_keys", metadata,
        Column("key", String(200), primary_key=True),
        Column("request_hash", String(64), nullable=False),
        Column("status_code", Integer, nullable=False),
        Column("body", Text, nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False),
    )
