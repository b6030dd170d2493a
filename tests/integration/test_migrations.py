"""Every service's own Alembic history upgrades an empty database, twice without change, to
exactly the schema its tables.py declares; the JSON revisions keep the rows they convert."""

from __future__ import annotations

import importlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, MetaData, inspect, select, text

from shared import db
from shared.settings import CONSOLE, SERVICES


@contextmanager
def engine_of(url: str) -> Iterator[Engine]:
    engine = db.make_engine(url)
    try:
        yield engine
    finally:
        engine.dispose()


def metadata_of(service: str) -> MetaData:
    metadata: MetaData = importlib.import_module(f"services.{service}.tables").metadata
    return metadata


@pytest.mark.parametrize("service", SERVICES)
def test_migrations_create_the_platform_tables(service: str, database_url: str) -> None:
    db.migrate(service, database_url)
    db.migrate(service, database_url)  # idempotent: already at head
    with engine_of(database_url) as engine:
        tables = set(inspect(engine).get_table_names())
    assert {"alembic_version", "inbox"} <= tables
    publishes = service in ("enrollment", "payment", "assignment")
    assert ("outbox" in tables) == publishes


@pytest.mark.parametrize("service", (*SERVICES, CONSOLE))
def test_the_head_revision_matches_the_tables(service: str, database_url: str) -> None:
    db.migrate(service, database_url)
    with engine_of(database_url) as engine, engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diffs = compare_metadata(context, metadata_of(service))
    assert not diffs, "\n".join(map(str, diffs))


NOW = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
# The text columns that became JSON (revision 0004 of each service): a row of each, without
# its JSON value, which the tests add.
ROWS: dict[str, dict[str, Any]] = {
    "idempotency_keys": {"key": "k1", "request_hash": "h" * 64, "status_code": 202,
                         "created_at": NOW},
    "assignments": {"id": "a1", "course_id": "c1", "title": "Queues", "max_score": 100,
                    "created_at": NOW},
    "notifications": {"id": "n1", "event_id": "e1", "event_type": "payment.succeeded",
                      "student_id": "s1", "correlation_id": "r1", "subject": "Paid",
                      "status": "pending", "attempts": 0, "next_attempt_at": NOW,
                      "created_at": NOW},
}
JSON_COLUMNS = [
    ("enrollment", "idempotency_keys", "body", {"id": "e1", "status": "pending_payment"}),
    ("assignment", "idempotency_keys", "body", {"id": "s1", "version": 2, "status": "received"}),
    ("assignment", "assignments", "keywords", ["queue", "fifo", "ordre établi"]),
    ("notification", "notifications", "data",
     {"student_id": "s1", "amount_cents": 4900, "tags": ["a", None], "nested": {"ok": True}}),
]
JSON_IDS = [f"{service}-{table}.{column}" for service, table, column, _ in JSON_COLUMNS]


@pytest.mark.parametrize(("service", "table", "column", "value"), JSON_COLUMNS, ids=JSON_IDS)
def test_a_json_column_round_trips_lists_and_dicts(service: str, table: str, column: str,
                                                   value: Any, database_url: str) -> None:
    db.migrate(service, database_url)
    t = metadata_of(service).tables[table]
    with engine_of(database_url) as engine:
        with engine.begin() as conn:
            conn.execute(t.insert().values(ROWS[table] | {column: value}))
        with engine.connect() as conn:
            assert conn.execute(select(t.c[column])).scalar_one() == value


@pytest.mark.parametrize(("service", "table", "column", "value"), JSON_COLUMNS, ids=JSON_IDS)
def test_the_json_revision_keeps_the_rows_it_converts(service: str, table: str, column: str,
                                                      value: Any, database_url: str) -> None:
    """Rows written as JSON text before revision 0004 read back as lists and dicts after it, and
    as the same text again after its downgrade."""
    config, before = db.alembic_config(service, database_url), f"{service}_0003"
    command.upgrade(config, before)
    t = metadata_of(service).tables[table]
    names = ", ".join([*ROWS[table], column])
    values = ", ".join(f":{name}" for name in [*ROWS[table], column])
    with engine_of(database_url) as engine:
        with engine.begin() as conn:  # as the code before 0004 wrote it: json.dumps'd text
            conn.execute(text(f"INSERT INTO {table} ({names}) VALUES ({values})"),
                         ROWS[table] | {column: json.dumps(value)})
        command.upgrade(config, "head")
        with engine.connect() as conn:
            assert conn.execute(select(t.c[column])).scalar_one() == value
        command.downgrade(config, before)
        with engine.connect() as conn:
            stored = conn.execute(text(f"SELECT {column} FROM {table}")).scalar_one()
    assert isinstance(stored, str) and json.loads(stored) == value


def test_a_new_revision_is_written_from_the_platform_s_template(tmp_path: Path) -> None:
    """`alembic revision` for a service: the one env.py and script.py.mako (shared/alembic_env)
    write a revision that follows the service's head."""
    cfg = db.alembic_config("payment", f"sqlite:///{tmp_path / 'payment.db'}")
    versions = cfg.get_main_option("version_locations")
    cfg.set_main_option("version_locations", f"{versions}{os.pathsep}{tmp_path}")
    script = command.revision(cfg, message="a new table", rev_id="payment_9999",
                              version_path=str(tmp_path))
    assert script is not None and not isinstance(script, list)
    written = (tmp_path / "payment_9999_a_new_table.py").read_text()
    assert 'revision = \'payment_9999\'' in written
    assert "down_revision = 'payment_0003'" in written
    assert "def upgrade() -> None:" in written


def _outbox_row(destination: str, envelope: dict[str, Any], group: str | None = None,
                published: datetime | None = None) -> dict[str, Any]:
    attributes = {"event_type": {"DataType": "String", "StringValue": envelope["event_type"]},
                  "event_version": {"DataType": "Number",
                                    "StringValue": str(envelope["event_version"])}}
    return {"destination": destination, "group_id": group, "dedup_id": envelope["event_id"],
            "event_id": envelope["event_id"], "event_type": envelope["event_type"],
            "body": json.dumps(envelope), "attributes": json.dumps(attributes),
            "created_at": NOW, "attempts": 0, "published_at": published}


UUIDS = {name: f"00000000-0000-4000-8000-00000000000{n}" for n, name in enumerate(
    ("r1", "r2", "g1", "p1"))}


def _envelope(event_id: str, event_type: str, version: int, data: dict[str, Any]
              ) -> dict[str, Any]:
    return {"event_id": UUIDS[event_id], "event_type": event_type, "event_version": version,
            "occurred_at": NOW.isoformat(), "correlation_id": "c1", "causation_id": None,
            "producer": "enrollment", "data": data}


def test_pending_rows_from_before_the_private_messages_put_nothing_personal_on_the_topic(
        database_url: str) -> None:
    """Outbox rows written by the code before revision 0005: their topic rows lose the token
    and the contact, the charge keeps its token on its own queue, and a registration's contact
    gets a row to the notifications queue; published rows stay as they were."""
    from shared.events import CATALOGUE
    config = db.alembic_config("enrollment", database_url)
    command.upgrade(config, "enrollment_0004")
    ids = {"enrollment_id": "e1", "student_id": "s1", "course_id": "c1"}
    v2 = _envelope("r2", "enrollment.requested", 2, ids | {
        "amount_cents": 4990, "currency": "EUR", "payment_token": "tok_secret"})
    v1 = _envelope("r1", "enrollment.requested", 1, ids | {"price": "12.50",
                                                          "payment_token": "tok_old"})
    registered = _envelope("g1", "student.registered", 1, {
        "student_id": "s1", "name": "Ada", "email": "ada@example.com"})
    sent = _envelope("p1", "student.registered", 1, {
        "student_id": "s0", "name": "Old", "email": "old@example.com"})
    rows = [_outbox_row("school-events", v2), _outbox_row("payment-requests.fifo", v2, "s1"),
            _outbox_row("school-events", v1), _outbox_row("school-events", registered),
            _outbox_row("school-events", sent, published=NOW)]
    table = metadata_of("enrollment").tables["outbox"]
    with engine_of(database_url) as engine:
        with engine.begin() as conn:
            conn.execute(table.insert(), rows)
        command.upgrade(config, "head")
        with engine.connect() as conn:
            after = conn.execute(select(table).order_by(table.c.id)).all()
    topic = [json.loads(r.body) for r in after if r.destination == "school-events"
             and r.published_at is None]
    assert [(e["event_type"], e["event_version"]) for e in topic] == [
        ("enrollment.requested", 3), ("enrollment.requested", 3), ("student.registered", 2)]
    assert topic[0]["data"] == ids | {"amount_cents": 4990, "currency": "EUR"}
    assert topic[1]["data"] == ids | {"amount_cents": 1250, "currency": "USD"}
    assert topic[2]["data"] == {"student_id": "s1"}
    for envelope in topic:  # each reads as the newest version, as the relay will send it
        CATALOGUE.read(json.dumps(envelope))
    pending_text = " ".join(r.body + r.attributes for r in after
                            if r.destination == "school-events" and r.published_at is None)
    assert "tok_" not in pending_text and "ada@example.com" not in pending_text
    [charge] = [r for r in after if r.destination == "payment-requests.fifo"]
    assert json.loads(charge.body) == v2  # payment reads it as a charge, token and all
    [contact] = [r for r in after if r.destination == "notifications"]
    recorded = json.loads(contact.body)
    assert (recorded["event_type"], recorded["causation_id"], recorded["data"]) == (
        "contact.recorded", UUIDS["g1"], registered["data"])
    assert contact.group_id is None and contact.event_id == recorded["event_id"] != UUIDS["g1"]
    assert json.loads(contact.attributes)["event_type"]["StringValue"] == "contact.recorded"
    CATALOGUE.read(contact.body)
    [published] = [r for r in after if r.published_at is not None]
    assert json.loads(published.body) == sent
