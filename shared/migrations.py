"""Alembic helpers shared by every service's migration history.

Each helper below is one frozen step of the schema: it writes its tables out column by column
and never reads the live definitions (shared/tables.py, services/*/tables.py), so a revision
does the same thing for ever; a later change is a new helper and a new revision. A revision
binds a helper's pair of steps: `upgrade, downgrade = platform_v1(outbox=True)`. A test
(tests/integration/test_migrations.py) checks every service's head against its metadata.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from alembic import context, op
from sqlalchemy import MetaData, engine_from_config, pool

Steps = tuple[Callable[[], None], Callable[[], None]]  # (upgrade, downgrade)


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


def chain(*steps: Steps) -> Steps:
    """One revision made of several steps: upgraded in order, downgraded in reverse."""
    def upgrade() -> None:
        for up, _ in steps:
            up()

    def downgrade() -> None:
        for _, down in reversed(steps):
            down()
    return upgrade, downgrade


# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets a BIGINT identity.
_Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def platform_v1(*, outbox: bool) -> Steps:
    """Revision 1 of the platform tables: the inbox, and the outbox of a service that publishes."""
    def upgrade() -> None:
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
        op.create_table(
            "inbox",
            sa.Column("consumer", sa.String(100), primary_key=True),
            sa.Column("event_id", sa.String(64), primary_key=True),
            sa.Column("event_type", sa.String(100), nullable=False),
            sa.Column("handled_at", sa.DateTime(timezone=True), nullable=False),
        )
        op.create_index("ix_inbox_handled_at", "inbox", ["handled_at"])

    def downgrade() -> None:
        for name in ("inbox", "outbox"):
            op.execute(f"DROP TABLE IF EXISTS {name}")
    return upgrade, downgrade


def platform_v2(*, outbox: bool) -> Steps:
    """Revision 2: outbox rows in backoff or set aside as dead, and handler attempts counted
    for the retry budget (attempts, not SQS receives)."""
    def upgrade() -> None:
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

    def downgrade() -> None:
        op.drop_table("handler_attempts")
        if outbox:
            op.drop_index("ix_outbox_group", "outbox")
            with op.batch_alter_table("outbox") as batch:
                for column in ("last_error", "dead_at", "next_attempt_at"):
                    batch.drop_column(column)
    return upgrade, downgrade


def create_idempotency_table_v1() -> None:
    """Revision 1 of the Idempotency-Key table, part of a service's domain revision (0002)."""
    op.create_table(
        "idempotency_keys",
        sa.Column("key", sa.String(200), primary_key=True),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("status_code", sa.Integer, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )


def text_to_json(table: str, column: str) -> Steps:
    """A NOT NULL text column that holds JSON becomes SQLAlchemy's JSON type, its rows kept:
    PostgreSQL casts each value (`USING column::json`); SQLite, where JSON is stored as text,
    copies the table under the new declaration (batch mode). Downgraded back to text."""
    def convert(to: sa.types.TypeEngine[Any], old: sa.types.TypeEngine[Any], cast: str) -> None:
        with op.batch_alter_table(table) as batch:
            batch.alter_column(column, type_=to, existing_type=old, existing_nullable=False,
                               postgresql_using=f'"{column}"::{cast}')
    return (lambda: convert(sa.JSON(), sa.Text(), "json"),
            lambda: convert(sa.Text(), sa.JSON(), "text"))


def idempotency_table_v2() -> Steps:
    """Revision 2 of the Idempotency-Key table: the body as JSON, and created_at indexed for
    the purge of keys older than their retention."""
    index = ("ix_idempotency_keys_created_at", "idempotency_keys")

    def upgrade() -> None:
        op.create_index(*index, ["created_at"])

    def downgrade() -> None:
        op.drop_index(*index)
    return chain(text_to_json("idempotency_keys", "body"), (upgrade, downgrade))
