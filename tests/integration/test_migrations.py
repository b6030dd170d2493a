"""Every service's own Alembic history upgrades an empty database, twice without change."""

from __future__ import annotations

import pytest
from sqlalchemy import inspect

from shared import db
from shared.settings import SERVICES


@pytest.mark.parametrize("service", SERVICES)
def test_migrations_create_the_platform_tables(service: str, database_url: str) -> None:
    db.migrate(service, database_url)
    db.migrate(service, database_url)  # idempotent: already at head
    engine = db.make_engine(database_url)
    try:
        tables = set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
    assert {"alembic_version", "inbox"} <= tables
    publishes = service in ("enrollment", "payment", "assignment")
    assert ("outbox" in tables) == publishes
