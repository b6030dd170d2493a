"""Alembic helpers shared by every service's migration history."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op
from sqlalchemy import MetaData, engine_from_config, pool


def run_env(target_metadata: MetaData) -> None:
    """The body of every service's migrations/env.py (online and offline modes)."""
    config = context.config
    if context.is_offline_mode():
        context.configure(url=config.get_main_option("sqlalchemy.url"),
                          target_metadata=target_metadata, literal_binds=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = engine_from_config(config.get_section(config.config_ini_section, {}),
                                prefix="sqlalchemy.", poolclass=pool.NullPool)
    with engine.connect() as connection:
        # render_as_batch lets ALTERs work on SQLite, which cannot alter most columns in place.
        context.configure(connection=connection, target_metadata=target_metadata,
                          render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets a BIGINT identity.
_Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def create_platform_tables_v1(*, outbox: bool, inbox: bool) -> None:
    """Revision 1 of the platform tables, written out so that it never changes with
    shared/tables.py: later changes are new helpers and revisions (v2 below)."""
    if outbox:
        op.create_table(
            "outbox",
            sa.Column("id", _Id, primary_key=True, autoincrement=True),
            sa.Column("destination", sa.String(100), nullable=False),
            sa.Column("group_id", sa.String(200), nullable=True),
            sa.Column("dedup_id", sa.String(100), nullable=False),
            sa.Column("event_id", sa.String(64), nullable=False),
            sa.Column("event_type", sa.String(100), nullable=False),
            sa.Column("body", sa.Text, nullable=False),
            sa.Column("attributes", sa.Text, nullable=False),
            sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
            sa.Column("attempts", sa.Integer, nullable=False),
        )
        op.create_index("ix_outbox_pending", "outbox", ["published_at", "id"])
    if inbox:
        op.create_table(
            "inbox",
            sa.Column("consumer", sa.String(100), primary_key=True),
            sa.Column("event_id", sa.String(64), primary_key=True),
            sa.Column("event_type", sa.String(100), nullable=False),
            sa.Column("handled_at", sa.DateTime(timezone=True), nullable=False),
        )
        op.create_index("ix_inbox_handled_at", "inbox", ["handled_at"])


def upgrade_platform_tables_v2(*, outbox: bool) -> None:
    """Revision 2: outbox rows in backoff or set aside as dead, and handler attempts counted
    for the retry budget (issue 12). Frozen like v1."""
    if outbox:
        with op.batch_alter_table("outbox") as batch:
            batch.add_column(sa.Column("next_attempt_at", sa.DateTime(timezone=True)))
            batch.add_column(sa.Column("dead_at", sa.DateTime(timezone=True)))
            batch.add_column(sa.Column("last_error", sa.String(1000)))
        op.create_index("ix_outbox_group", "outbox", ["destination", "group_id"])
    op.create_table(
        "handler_attempts",
        sa.Column("consumer", sa.String(100), primary_key=True),
        sa.Column("event_id", sa.String(64), primary_key=True),
        sa.Column("failures", sa.Integer, nullable=False),
        sa.Column("last_error", sa.String(1000), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_handler_attempts_updated_at", "handler_attempts", ["updated_at"])


def downgrade_platform_tables_v2(*, outbox: bool) -> None:
    op.drop_table("handler_attempts")
    if outbox:
        op.drop_index("ix_outbox_group", "outbox")
        with op.batch_alter_table("outbox") as batch:
            for column in ("last_error", "dead_at", "next_attempt_at"):
                batch.drop_column(column)


def drop_platform_tables_v1() -> None:
    for name in ("inbox", "outbox"):
        op.execute(f"DROP TABLE IF EXISTS {name}")


def create_idempotency_table_v1() -> None:
    """Revision 1 of the Idempotency-Key table (shared.tables.idempotency_table)."""
    from shared.tables import idempotency_table

    idempotency_table(MetaData()).create(op.get_bind())
