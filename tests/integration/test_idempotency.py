"""Idempotency-Key storage on a real database: a retry gets the stored status and body, a reused
key with another body is invalid, and keys older than their retention are purged."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, MetaData, Table, insert, select
from sqlalchemy.orm import Session, sessionmaker

from shared import db
from shared.errors import Invalid
from shared.idempotency import (
    IdempotencyKeys,
    fingerprint,
    purge,
    respond_idempotent,
)
from shared.tables import idempotency_table

ROUTE, REQUEST = "POST /things", {"name": "a thing"}


@pytest.fixture
def table() -> Table:
    return idempotency_table(MetaData())


@pytest.fixture
def engine(database_url: str, table: Table) -> Iterator[Engine]:
    engine = db.make_engine(database_url)
    table.metadata.create_all(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def sessions(engine: Engine) -> sessionmaker[Session]:
    return db.session_factory(db.writer(engine))


class Work:
    """A route's work: counts its calls and answers with a new id each time."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, session: Session) -> dict[str, Any]:
        self.calls += 1
        return {"id": f"thing-{self.calls}", "tags": ["x"]}


def test_a_retry_gets_the_stored_status_and_body(table: Table,
                                                 sessions: sessionmaker[Session]) -> None:
    keys, work = IdempotencyKeys(table), Work()
    with sessions.begin() as session:  # a first response stored with another status
        keys.remember(session, "k1", fingerprint(ROUTE, REQUEST), 201, {"id": "first"})
    assert respond_idempotent(sessions, keys, "k1", ROUTE, REQUEST, 202, work) == (
        {"id": "first"}, 201)
    assert work.calls == 0


def test_a_new_key_runs_the_work_once_and_answers_with_the_route_status(
        table: Table, sessions: sessionmaker[Session]) -> None:
    keys, work = IdempotencyKeys(table), Work()
    first = respond_idempotent(sessions, keys, "k2", ROUTE, REQUEST, 202, work)
    again = respond_idempotent(sessions, keys, "k2", ROUTE, REQUEST, 202, work)
    assert first == again == ({"id": "thing-1", "tags": ["x"]}, 202)
    assert type(first) is tuple  # what flask-smorest unpacks as (body, status)
    assert respond_idempotent(sessions, keys, None, ROUTE, REQUEST, 202, work) == (
        {"id": "thing-2", "tags": ["x"]}, 202)  # without a key, no replay
    assert work.calls == 2


def test_the_same_key_with_another_body_is_invalid(table: Table,
                                                   sessions: sessionmaker[Session]) -> None:
    keys, work = IdempotencyKeys(table), Work()
    respond_idempotent(sessions, keys, "k3", ROUTE, REQUEST, 202, work)
    with pytest.raises(Invalid) as raised:
        respond_idempotent(sessions, keys, "k3", ROUTE, {"name": "another"}, 202, work)
    assert raised.value.errors == {"Idempotency-Key": ["already used with another body"]}
    assert work.calls == 1


@pytest.mark.parametrize("key", ["", "k" * 201])
def test_a_key_of_the_wrong_length_is_invalid(key: str) -> None:
    with pytest.raises(Invalid):
        IdempotencyKeys.check(key)
    assert IdempotencyKeys.check("k" * 200) == "k" * 200
    assert IdempotencyKeys.check(None) is None


def test_purge_deletes_the_keys_older_than_the_retention_only(engine: Engine,
                                                               table: Table) -> None:
    now = datetime.now(UTC)
    ages = {f"old{i}": timedelta(hours=25 + i) for i in range(5)} | {
        "recent": timedelta(hours=23), "new": timedelta(0)}
    with engine.begin() as conn:
        conn.execute(insert(table), [
            {"key": key, "request_hash": "h", "status_code": 202, "body": {"id": key},
             "created_at": now - age} for key, age in ages.items()])
    assert purge(engine, table, timedelta(hours=24), batch=2) == 5  # three batches: 2, 2, 1
    assert purge(engine, table, timedelta(hours=24), batch=2) == 0
    with engine.connect() as conn:
        assert set(conn.execute(select(table.c.key)).scalars()) == {"recent", "new"}
