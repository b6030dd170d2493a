"""The platform's tables, which every service's metadata includes (`platform_metadata`), and the
column shapes every service's tables share (`key`, `ref`, `timestamp`)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
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
ID_LENGTH = 64  # an id (shared.envelope.new_id, or one another service's event carries)


def key(name: str = "id") -> Column[Any]:
    """A record's id, its primary key."""
    return Column(name, String(ID_LENGTH), primary_key=True)


def ref(name: str, *args: Any, nullable: bool = False, **kwargs: Any) -> Column[Any]:
    """The id of a record (this service's or another's), required unless said otherwise."""
    return Column(name, String(ID_LENGTH), *args, nullable=nullable, **kwargs)


def timestamp(name: str, *, nullable: bool = False, **kwargs: Any) -> Column[Any]:
    """A moment, timezone-aware (SQLite gives it back naive, in UTC: shared.db.utc)."""
    return Column(name, DateTime(timezone=True), nullable=nullable, **kwargs)


def outbox_table(metadata: MetaData) -> Table:
    """Messages waiting to be published, committed with the change that caused them."""
    return Table(
        "outbox", metadata,
        Column("id", _Id, primary_key=True, autoincrement=True),
        Column("destination", String(100), nullable=False),
        Column("group_id", String(200), nullable=True),
        Column("dedup_id", String(100), nullable=False),
        ref("event_id"),
        Column("event_type", String(100), nullable=False),
        # Text, not JSON: the body is the exact wire form the relay sends.
        Column("body", Text, nullable=False),
        Column("attributes", Text, nullable=False),
        timestamp("created_at"),
        timestamp("published_at", nullable=True),
        Column("attempts", Integer, nullable=False, default=0),
        # A refused row waits in backoff until next_attempt_at; a row SQS or SNS can never
        # accept is set aside as dead (dead_at) and holds back only its own FIFO group.
        timestamp("next_attempt_at", nullable=True),
        timestamp("dead_at", nullable=True),
        Column("last_error", String(1000), nullable=True),
        Index("ix_outbox_pending", "published_at", "id"),
        Index("ix_outbox_group", "destination", "group_id"),
    )


def inbox_table(metadata: MetaData) -> Table:
    """Events already handled, per consumer: the idempotency record, so that a redelivered
    event applies nothing twice."""
    return Table(
        "inbox", metadata,
        Column("consumer", String(100), primary_key=True),
        key("event_id"),
        Column("event_type", String(100), nullable=False),
        timestamp("handled_at", index=True),
    )


def attempts_table(metadata: MetaData) -> Table:
    """Failed handler attempts per (consumer, event): the retry budget counts these, not SQS
    receives, so a message handed back untried spends nothing."""
    return Table(
        "handler_attempts", metadata,
        Column("consumer", String(100), primary_key=True),
        key("event_id"),
        Column("failures", Integer, nullable=False),
        Column("last_error", String(1000), nullable=False),
        timestamp("updated_at", index=True),
    )


def idempotency_table(metadata: MetaData) -> Table:
    """First responses to POSTs sent with an Idempotency-Key, replayed to a retry, purged after
    their retention (shared.idempotency.purge, by created_at)."""
    return Table(
        "idempotency_keys", metadata,
        Column("key", String(200), primary_key=True),
        Column("request_hash", String(64), nullable=False),
        Column("status_code", Integer, nullable=False),
        Column("body", JSON, nullable=False),
        timestamp("created_at", index=True),
    )


def platform_metadata(*, outbox: bool, idempotency: bool = False) -> MetaData:
    """A service's metadata with its platform tables: the inbox and handler attempts always, the
    outbox for a service that publishes, the Idempotency-Key table for one whose API honours
    the header. The service adds its own tables to it."""
    metadata = MetaData()
    inbox_table(metadata)
    attempts_table(metadata)
    if outbox:
        outbox_table(metadata)
    if idempotency:
        idempotency_table(metadata)
    return metadata
