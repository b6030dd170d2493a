"""The transactional outbox and its relay against LocalStack and a real database."""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, insert, select

from shared import aws, db, outbox_admin
from shared.backoff import Backoff
from shared.envelope import Envelope
from shared.outbox import Outbox, Relay
from shared.publisher import Publisher
from tests.support import probe
from tests.support.messages import bodies, ping, receive_all, wait_for

TOPOLOGY = probe.topology(fifo_visibility=4, max_receives=4)


class CountingPublisher(Publisher):
    """The real publisher, recording the size of each batch call it makes."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.batches: list[tuple[str, int]] = []

    def send(self, destination: str, rows: Any) -> set[int]:
        self.batches.append((destination, len(rows)))
        return super().send(destination, rows)


def commit_pings(engine, groups: int, per_group: int) -> list[Any]:
    outbox = Outbox(probe.outbox, TOPOLOGY)
    events = [ping(f"g{g}", n) for n in range(1, per_group + 1) for g in range(groups)]
    with db.session_factory(engine)() as session, session.begin():
        for event in events:
            outbox.add(session, event)
    return events


def pending(engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(probe.outbox)
                                .where(probe.outbox.c.published_at.is_(None))).scalar_one())


def assert_fifo_order(messages: list[dict[str, Any]], groups: int, per_group: int) -> None:
    seen: dict[str, list[int]] = defaultdict(list)
    for body in bodies(messages):
        seen[body["data"]["group"]].append(body["data"]["n"])
    assert {g: ns for g, ns in seen.items()} == {
        f"g{g}": list(range(1, per_group + 1)) for g in range(groups)}


def test_relay_publishes_in_order_in_batches(sqs, sns, probe_stack):
    events = commit_pings(probe_stack.engine, groups=3, per_group=8)
    publisher = CountingPublisher(sqs, sns, TOPOLOGY, probe_stack.env)
    relay = Relay(probe_stack.engine, probe.outbox, publisher, retention=timedelta(0))
    while relay.run_once():
        pass
    assert pending(probe_stack.engine) == 0
    assert_fifo_order(receive_all(sqs, probe_stack.queue("probe.fifo").url, 24), 3, 8)
    fanned = receive_all(sqs, probe_stack.queue("probe-all").url, 24)
    assert {b["event_id"] for b in bodies(fanned)} == {e.event_id for e in events}
    sizes = [n for _, n in publisher.batches]
    assert max(sizes) == 10 and all(n <= 10 for n in sizes)
    assert relay.purge() == 48  # published rows are purged after the retention (0 here)


def test_events_committed_while_sqs_is_frozen_are_delivered(
        sqs, sns, probe_stack, settings, localstack_process):
    if localstack_process.pid is None:
        pytest.skip("freezing needs the LocalStack process; a container cannot be SIGSTOPped")
    publisher = Publisher(aws.client("sqs", settings, read_timeout=2),
                          aws.client("sns", settings, read_timeout=2), TOPOLOGY, probe_stack.env)
    publisher.target("probe.fifo"), publisher.target("probe-events")  # resolved while reachable
    relay = Relay(probe_stack.engine, probe.outbox, publisher, backoff=Backoff(0.2, 2.0))
    stop = threading.Event()
    thread = threading.Thread(target=relay.run, args=(stop, 0.05))
    thread.start()
    try:
        os.kill(localstack_process.pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            events = commit_pings(probe_stack.engine, groups=4, per_group=5)
            assert time.monotonic() - started < 2, "committing must not wait for SQS"
            wait_for(lambda: relay.failures >= 2, 30, "the relay to fail and back off")
            # 20 events, each to the FIFO queue and to the topic: 40 rows, none published
            assert pending(probe_stack.engine) == 40, "nothing can be published while frozen"
        finally:
            os.kill(localstack_process.pid, signal.SIGCONT)
        wait_for(lambda: pending(probe_stack.engine) == 0, 90, "the relay to catch up")
    finally:
        stop.set()
        thread.join(timeout=30)
    assert_fifo_order(receive_all(sqs, probe_stack.queue("probe.fifo").url, 20), 4, 5)
    # at least once: a call cut off by the freeze may have been delivered and then retried,
    # so receive until every event has been seen rather than counting messages
    url, seen = probe_stack.queue("probe-all").url, set()

    def all_seen() -> bool:
        seen.update(b["event_id"] for b in bodies(receive_all(sqs, url, 10, timeout=1)))
        return seen >= {e.event_id for e in events}

    wait_for(all_seen, 30, "every event through the topic")


def test_two_relays_never_reorder_or_publish_twice(
        sqs, sns, probe_stack, db_kind):
    if db_kind != "postgres":
        pytest.skip("concurrent relays need row locks: on SQLite run one relay per database")
    events = commit_pings(probe_stack.engine, groups=5, per_group=30)
    errors: list[BaseException] = []

    def drain() -> None:
        engine = db.make_engine(probe_stack.url)
        relay = Relay(engine, probe.outbox, Publisher(sqs, sns, TOPOLOGY, probe_stack.env),
                      fetch=15)
        try:
            while pending(engine):
                relay.run_once()
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)
        finally:
            engine.dispose()

    threads = [threading.Thread(target=drain) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    with probe_stack.engine.connect() as conn:
        attempts = conn.execute(select(probe.outbox.c.attempts)).scalars().all()
    assert attempts == [1] * 300  # every row published by exactly one call
    assert_fifo_order(receive_all(sqs, probe_stack.queue("probe.fifo").url, 150, 60), 5, 30)
    fanned = receive_all(sqs, probe_stack.queue("probe-all").url, 151, timeout=15)
    ids = [json.loads(m["Body"])["event_id"] for m in fanned]
    assert len(ids) == 150 and set(ids) == {e.event_id for e in events}


def write_rows(engine, rows: list[dict[str, Any]]) -> None:
    """Outbox rows as they might have been written before a value became valid by construction
    (the outbox builds group ids that SQS accepts; these bypass it on purpose)."""
    with engine.begin() as conn:
        conn.execute(insert(probe.outbox), [{
            "destination": r["destination"], "group_id": r.get("group_id"),
            "dedup_id": r["event"].event_id, "event_id": r["event"].event_id,
            "event_type": r["event"].event_type, "body": r["event"].body(),
            "attributes": json.dumps(r["event"].attributes()), "created_at": datetime.now(UTC),
            "attempts": 0} for r in rows])


def outbox_rows(engine) -> dict[str, Any]:
    with engine.connect() as conn:
        return {r.event_id: r for r in conn.execute(select(probe.outbox))}


def test_six_100_kb_events_are_published_in_batches_within_the_size_limit(
        sqs, sns, probe_stack):
    """A regression: the relay filled batches by count alone; SNS refused six 100 KB messages in one
    PublishBatch (BatchRequestTooLong) and the relay retried that batch for ever."""
    outbox = Outbox(probe.outbox, TOPOLOGY)
    events = [Envelope("probe.ping", 1, {"group": f"g{i}", "n": 1, "essay": "x" * 100_000},
                       "probe") for i in range(6)]
    with db.session_factory(probe_stack.engine)() as session, session.begin():
        for event in events:
            outbox.add(session, event)
    publisher = CountingPublisher(sqs, sns, TOPOLOGY, probe_stack.env)
    relay = Relay(probe_stack.engine, probe.outbox, publisher)
    assert relay.run_once() == 12
    assert pending(probe_stack.engine) == 0
    assert max(n for d, n in publisher.batches if d == "probe-events") == 2
    fanned = receive_all(sqs, probe_stack.queue("probe-all").url, 6)
    assert {b["event_id"] for b in bodies(fanned)} == {e.event_id for e in events}


def test_a_row_refused_for_ever_is_set_aside_and_holds_back_only_its_group(
        sqs, sns, probe_stack, caplog):
    """A regression: one row SQS can never accept (a group id with a space) jammed the relay, which
    logged an error five times a second for ever."""
    bad, after_bad, other = ping("Jane Doe", 1), ping("Jane Doe", 2), ping("ok", 1)
    write_rows(probe_stack.engine, [
        {"destination": "probe.fifo", "group_id": "Jane Doe", "event": bad},
        {"destination": "probe.fifo", "group_id": "Jane Doe", "event": after_bad},
        {"destination": "probe.fifo", "group_id": "ok", "event": other},
        {"destination": "probe-events", "event": bad}])
    relay = Relay(probe_stack.engine, probe.outbox, Publisher(sqs, sns, TOPOLOGY,
                                                               probe_stack.env))
    with caplog.at_level(logging.ERROR, logger="shared.outbox"):
        for _ in range(5):
            relay.run_once()
    rows = outbox_rows(probe_stack.engine)
    dead = next(r for r in outbox_rows_list(probe_stack.engine)
                if r.event_id == bad.event_id and r.destination == "probe.fifo")
    assert dead.dead_at is not None and "MessageGroupId" in dead.last_error
    assert dead.published_at is None
    assert rows[after_bad.event_id].published_at is None  # held: the group keeps its order
    assert rows[after_bad.event_id].dead_at is None
    assert rows[other.event_id].published_at is not None  # other groups go on
    topic_row = next(r for r in outbox_rows_list(probe_stack.engine)
                     if r.event_id == bad.event_id and r.destination == "probe-events")
    assert topic_row.published_at is not None
    assert len([r for r in caplog.records if r.outcome == "outbox_dead"]) == 1  # logged once
    assert relay.dead_rows() == 1
    # `school outbox retry` hands it back; it is refused again, and set aside again
    assert outbox_admin.retry(probe_stack.engine) == 1
    relay.run_once()
    assert relay.dead_rows() == 1


def outbox_rows_list(engine) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(select(probe.outbox).order_by(probe.outbox.c.id)))


def test_blocked_rows_never_fill_the_read_window(sqs, sns, probe_stack):
    """A regression: once 100 refused rows waited, they filled the relay's 100-row read window and
    nothing behind them was ever published."""
    doomed = [ping(f"bad {i}", 1) for i in range(30)]
    good = [ping(f"good{i}", 1) for i in range(5)]
    write_rows(probe_stack.engine,
               [{"destination": "probe.fifo", "group_id": e.data["group"], "event": e}
                for e in doomed] +
               [{"destination": "probe.fifo", "group_id": e.data["group"], "event": e}
                for e in good])
    relay = Relay(probe_stack.engine, probe.outbox, Publisher(sqs, sns, TOPOLOGY,
                                                               probe_stack.env), fetch=20)
    for _ in range(4):
        relay.run_once()
    rows = outbox_rows(probe_stack.engine)
    assert all(rows[e.event_id].published_at is not None for e in good)
    assert relay.dead_rows() == 30
    received = bodies(receive_all(sqs, probe_stack.queue("probe.fifo").url, 5))
    assert sorted(b["event_id"] for b in received) == sorted(e.event_id for e in good)
