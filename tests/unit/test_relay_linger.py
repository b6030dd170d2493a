"""The relay's linger: a few young rows wait a moment for more, up to a whole batch."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

from sqlalchemy import create_engine

from shared.outbox import Relay


def relay(linger: float) -> Relay:
    return Relay(create_engine("sqlite://"), None, None, linger=linger)  # type: ignore[arg-type]


def rows(count: int, age: float, destination: str = "events") -> list[SimpleNamespace]:
    made = datetime.now(UTC) - timedelta(seconds=age)
    return [SimpleNamespace(destination=destination, created_at=made) for _ in range(count)]


def test_a_few_young_rows_wait_for_the_rest_of_the_linger():
    r = relay(0.05)
    assert r._wait_for_more(rows(3, age=0.01))
    assert 0 < r.hold_for <= 0.04


def test_a_whole_batch_for_one_destination_goes_at_once():
    r = relay(0.05)
    assert not r._wait_for_more(rows(10, age=0.0) + rows(2, age=0.0, destination="q.fifo"))


def test_rows_older_than_the_linger_go_however_few():
    r = relay(0.05)
    assert not r._wait_for_more(rows(1, age=0.2))
    naive = [SimpleNamespace(destination="events",  # as SQLite returns them: naive UTC
                             created_at=datetime.now(UTC).replace(tzinfo=None)
                             - timedelta(seconds=0.2))]
    assert not r._wait_for_more(naive)


def test_without_a_linger_nothing_waits():
    assert not relay(0.0)._wait_for_more(rows(1, age=0.0))
