"""The relay's batch planning and the outbox's routing, without a network."""

from __future__ import annotations

import random
from collections import namedtuple
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import MetaData, Table, create_engine, select
from sqlalchemy.orm import Session

from shared.envelope import MessageTooLarge
from shared.events import CATALOGUE
from shared.outbox import Outbox
from shared.publisher import plan_batches
from shared.tables import outbox_table
from shared.topology import TOPOLOGY

Row = namedtuple("Row", "id destination group_id body attributes", defaults=("{}", "{}"))
Plan = list[tuple[str, list[Any]]]


def mixed_rows(count: int, seed: int) -> list[Row]:
    """Rows in id order over a topic and two FIFO queues with a few groups each."""
    rng = random.Random(seed)
    rows = []
    for i in range(1, count + 1):
        destination = rng.choice(["topic", "a.fifo", "b.fifo"])
        group = None if destination == "topic" else f"g{rng.randrange(4)}"
        rows.append(Row(i, destination, group))
    return rows


def ids(plan: Plan) -> list[list[int]]:
    return [[r.id for r in batch] for _, batch in plan]


def test_a_batch_stays_within_the_request_size_limit() -> None:
    """A regression: six 100 KB submissions in one batch call were refused (BatchRequestTooLong)
    and retried for ever. A batch call's bodies and attributes add up to at most 256 KiB."""
    attributes = '{"event_type": {"DataType": "String", "StringValue": "submission.received"}}'
    rows = [Row(i, "topic", None, "x" * 100_000, attributes) for i in range(1, 7)]
    plan = plan_batches(rows)
    assert ids(plan) == [[1, 2], [3, 4], [5, 6]]
    sizes = [sum(len(r.body) + len("event_type") + len("String") + len("submission.received")
                 for r in batch) for _, batch in plan]
    assert max(sizes) <= 256 * 1024
    assert plan_batches([Row(1, "topic", None, "x" * 200_000),
                         Row(2, "topic", None, "x" * 62_144)]) == [
        ("topic", [Row(1, "topic", None, "x" * 200_000), Row(2, "topic", None, "x" * 62_144)])]


def test_every_row_is_planned_once() -> None:
    rows = mixed_rows(200, seed=1)
    planned = [r.id for _, batch in plan_batches(rows) for r in batch]
    assert sorted(planned) == [r.id for r in rows]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_batch_holds_at_most_ten_rows(seed: int) -> None:
    plan = plan_batches(mixed_rows(300, seed))
    assert all(1 <= len(batch) <= 10 for _, batch in plan)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_batch_never_holds_two_rows_of_one_group(seed: int) -> None:
    for _, batch in plan_batches(mixed_rows(300, seed)):
        groups = [r.group_id for r in batch if r.group_id is not None]
        assert len(groups) == len(set(groups))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_batch_never_mixes_destinations(seed: int) -> None:
    for destination, batch in plan_batches(mixed_rows(300, seed)):
        assert {r.destination for r in batch} == {destination}


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_groups_rows_keep_id_order_across_batches(seed: int) -> None:
    seen: dict[tuple[str, str], list[int]] = {}
    for _, batch in plan_batches(mixed_rows(300, seed)):
        for row in batch:
            if row.group_id is not None:
                seen.setdefault((row.destination, row.group_id), []).append(row.id)
    assert seen and all(order == sorted(order) for order in seen.values())


def test_one_groups_rows_go_one_per_batch() -> None:
    rows = [Row(i, "q.fifo", "g") for i in range(1, 4)]
    assert ids(plan_batches(rows)) == [[1], [2], [3]]


def test_distinct_groups_share_a_batch() -> None:
    rows = [Row(i, "q.fifo", f"g{i}") for i in range(1, 13)]
    assert ids(plan_batches(rows)) == [list(range(1, 11)), [11, 12]]


def test_a_repeated_group_starts_the_next_batch() -> None:
    rows = [Row(1, "q.fifo", "g1"), Row(2, "q.fifo", "g2"), Row(3, "q.fifo", "g1"),
            Row(4, "q.fifo", "g2")]
    assert ids(plan_batches(rows)) == [[1, 2], [3, 4]]


def test_topic_rows_fill_batches_of_ten() -> None:
    rows = [Row(i, "topic", None) for i in range(1, 26)]
    assert [len(batch) for _, batch in plan_batches(rows)] == [10, 10, 5]


def test_destinations_get_batches_of_their_own() -> None:
    rows = [Row(1, "topic", None), Row(2, "q.fifo", "g"), Row(3, "topic", None),
            Row(4, "q.fifo", "h")]
    assert [(d, [r.id for r in b]) for d, b in plan_batches(rows)] == [
        ("topic", [1, 3]), ("q.fifo", [2, 4])]


def test_nothing_pending_plans_nothing() -> None:
    assert plan_batches([]) == []


@pytest.fixture
def outbox_db() -> Iterator[tuple[Session, Table]]:
    metadata = MetaData()
    table = outbox_table(metadata)
    engine = create_engine("sqlite://")
    metadata.create_all(engine)
    with Session(engine) as session:
        yield session, table
    engine.dispose()


def test_an_event_goes_to_the_topic_and_its_fifo_queue(
        outbox_db: tuple[Session, Table]) -> None:
    session, table = outbox_db
    event = CATALOGUE.new("refund.requested", {
        "enrollment_id": "e1", "student_id": "s1", "amount_cents": 4990, "currency": "USD"},
        correlation_id="corr")
    Outbox(table, TOPOLOGY).add(session, event)
    rows = session.execute(select(table).order_by(table.c.id)).all()
    assert [(r.destination, r.group_id) for r in rows] == [
        ("school-events", None), ("payment-requests.fifo", "s1")]
    fifo = rows[1]
    assert (fifo.dedup_id, fifo.event_id, fifo.event_type) == (
        event.event_id, event.event_id, "refund.requested")
    assert fifo.body == event.body() and fifo.published_at is None


def test_a_private_message_goes_to_its_queue_alone(outbox_db: tuple[Session, Table]) -> None:
    """A charge carries the payment token: payment-requests.fifo gets it, the topic never."""
    session, table = outbox_db
    event = CATALOGUE.new("charge.requested", {
        "enrollment_id": "e1", "student_id": "s1", "course_id": "c1", "amount_cents": 4990,
        "currency": "USD", "payment_token": "tok_ok"}, correlation_id="corr")
    Outbox(table, TOPOLOGY).add(session, event)
    rows = session.execute(select(table)).all()
    assert [(r.destination, r.group_id) for r in rows] == [("payment-requests.fifo", "s1")]


def test_a_topic_only_event_writes_one_row(outbox_db: tuple[Session, Table]) -> None:
    session, table = outbox_db
    event = CATALOGUE.new("enrollment.confirmed", {
        "enrollment_id": "e1", "student_id": "s1", "course_id": "c1"}, correlation_id="corr")
    Outbox(table, TOPOLOGY).add(session, event)
    rows = session.execute(select(table)).all()
    assert [(r.destination, r.group_id) for r in rows] == [("school-events", None)]


def test_an_oversized_event_is_refused_and_writes_nothing(
        outbox_db: tuple[Session, Table]) -> None:
    session, table = outbox_db
    event = CATALOGUE.new("submission.received", {
        "submission_id": "x", "assignment_id": "a", "student_id": "s", "version": 1,
        "content": "w" * 300_000}, correlation_id="corr")
    with pytest.raises(MessageTooLarge):
        Outbox(table, TOPOLOGY).add(session, event)
    assert session.execute(select(table)).all() == []
