"""Outbox routing and the relay's batch planning (no network)."""

from __future__ import annotations

from collections import namedtuple

import pytest
from sqlalchemy import MetaData, create_engine, select
from sqlalchemy.orm import Session

from shared.envelope import MessageTooLarge
from shared.events import CATALOGUE
from shared.outbox import Outbox, plan_batches
from shared.tables import outbox_table
from shared.topology import TOPOLOGY

Row = namedtuple("Row", "id destination group_id")


def test_batches_never_hold_two_rows_of_one_group() -> None:
    rows = [Row(i, "q.fifo", f"g{i % 3}") for i in range(1, 31)]
    batches = plan_batches(rows)
    for _, batch in batches:
        assert len(batch) <= 10
        assert len({r.group_id for r in batch}) == len(batch)
    order = [r.id for _, batch in batches for r in batch if r.group_id == "g1"]
    assert order == sorted(order)


def test_topic_rows_fill_batches_of_ten_and_destinations_never_mix() -> None:
    rows = [Row(i, "topic", None) for i in range(1, 26)] + [Row(26, "q.fifo", "g")]
    batches = plan_batches(rows)
    assert [(d, len(b)) for d, b in batches] == [("topic", 10), ("topic", 10), ("topic", 5),
                                                 ("q.fifo", 1)]


@pytest.fixture
def session():  # type: ignore[no-untyped-def]
    metadata = MetaData()
    table = outbox_table(metadata)
    engine = create_engine("sqlite://")
    metadata.create_all(engine)
    with Session(engine) as session:
        yield session, table


def test_an_event_goes_to_the_topic_and_its_queue(session) -> None:  # type: ignore[no-untyped-def]
    db, table = session
    event = CATALOGUE.new("enrollment.requested", {
        "enrollment_id": "e", "student_id": "s", "course_id": "c", "amount_cents": 1,
        "currency": "USD", "payment_token": "tok_ok"}, correlation_id="c")
    Outbox(table, TOPOLOGY).add(db, event)
    rows = db.execute(select(table).order_by(table.c.id)).all()
    assert [(r.destination, r.group_id, r.dedup_id) for r in rows] == [
        ("school-events", None, event.event_id),
        ("payment-requests.fifo", "s", event.event_id)]


def test_an_oversized_event_is_refused_and_writes_nothing(session) -> None:  # type: ignore[no-untyped-def]
    db, table = session
    event = CATALOGUE.new("submission.received", {
        "submission_id": "x", "assignment_id": "a", "student_id": "s", "version": 1,
        "content": "w" * 300_000}, correlation_id="c")
    with pytest.raises(MessageTooLarge):
        Outbox(table, TOPOLOGY).add(db, event)
    assert db.execute(select(table)).all() == []
