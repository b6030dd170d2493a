"""Alembic helpers shared by every service's migration history."""

from __future__ import annotations

from alembic import context, op
from sqlalchemy import MetaData, engine_from_config, pool

from shared.tables import inbox_table, outbox_table


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


def create_platform_tables_v1(*, outbox: bool, inbox: bool) -> None:
    """Revision 1 of the platform tables. Frozen: a later change gets a new helper and revision."""
    metadata = MetaData()
    tables = ([outbox_table(metadata)] if outbox else []) + ([inbox_table(metadata)] if inbox
                                                             else [])
    for table in tables:
        table.create(op.get_bind())


def drop_platform_tables_v1() -> None:
    for name in ("inbox", "outbox"):
        op.execute(f"DROP TABLE IF EXISTS {name}")


def create_idempotency_table_v1() -> None:
    """Revision 1 of the Idempotency-Key table (shared.tables.idempotency_table)."""
    from shared.tables import idempotency_table

    idempotency_table(MetaData()).create(op.get_bind())
