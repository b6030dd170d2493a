"""Throughput: the consumer receives while it handles, handles a batch in one transaction with a
savepoint per message, deletes in batches; the relay publishes as soon as a handler commits."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

from sqlalchemy import event

from shared import db, inspect
from shared.handling import Outcome
from shared.outbox import Outbox, Relay
from shared.publisher import Publisher
from tests.integration.test_consumer import make
from tests.integration.test_outbox import TOPOLOGY, pending
from tests.support import probe
from tests.support.messages import depth, ping, receive_all, send, wait_for

STANDARD = "probe-all"


def count_calls(client: Any) -> Counter[str]:
    """Every API call the client makes from now on, by operation (botocore's event hooks)."""
    calls: Counter[str] = Counter()

    def seen(model: Any, **_: Any) -> None:
        calls[model.name] += 1

    client.meta.events.register("before-call.sqs", seen)
    return calls


def count_commits(engine: Any) -> list[int]:
    commits = [0]
    event.listen(engine, "commit", lambda _conn: commits.__setitem__(0, commits[0] + 1))
    return commits


def run_in_background(consumer: Any) -> tuple[threading.Event, threading.Thread]:
    stop = threading.Event()
    thread = threading.Thread(target=consumer.run, args=(stop,))
    thread.start()
    return stop, thread


def visible(sqs: Any, url: str) -> int:
    return inspect.depth(sqs, url).visible


def test_the_consumer_receives_while_a_slow_message_is_handled(sqs, probe_stack, db_kind):
    """The old consumer waited for the slowest message of a batch before it received again."""
    url = probe_stack.queue(STANDARD).url
    p = probe.Probe()
    consumer = make(sqs, probe_stack, STANDARD, p, concurrency=2, wait_seconds=1)
    slow = ping("slow", 1, sleep=8)
    send(sqs, url, slow)
    stop, thread = run_in_background(consumer)
    try:
        wait_for(lambda: p.attempts[slow.event_id], 20, "the slow one started")
        quick = [ping("quick", n) for n in range(5)]
        for event_ in quick:
            send(sqs, url, event_)
        wait_for(lambda: visible(sqs, url) == 0, 5, "the quick ones received")
        if db_kind == "postgres":  # SQLite's one writer waits for the slow one's transaction
            wait_for(lambda: len(probe.handled(probe_stack.engine)) == 5, 5, "the quick ones")
        assert slow.event_id not in [r.event_id for r in probe.handled(probe_stack.engine)]
        wait_for(lambda: len(probe.handled(probe_stack.engine)) == 6, 20, "the slow one")
    finally:
        stop.set()
        thread.join(timeout=30)
    wait_for(lambda: depth(sqs, url) == 0, 10, "all deleted")


def test_a_burst_is_handled_in_few_transactions_and_deleted_in_batches_of_ten(sqs, probe_stack):
    url = probe_stack.queue(STANDARD).url
    events = [ping("b", n) for n in range(40)]
    for start in range(0, 40, 10):
        sqs.send_message_batch(QueueUrl=url, Entries=[
            {"Id": str(i), "MessageBody": e.body(), "MessageAttributes": e.attributes()}
            for i, e in enumerate(events[start:start + 10])])
    consumer = make(sqs, probe_stack, STANDARD, probe.Probe(), concurrency=1, wait_seconds=1)
    calls, commits = count_calls(sqs), count_commits(probe_stack.engine)
    stop, thread = run_in_background(consumer)
    try:
        wait_for(lambda: len(probe.handled(probe_stack.engine)) == 40, 30, "all 40 handled")
        wait_for(lambda: depth(sqs, url) == 0, 10, "all 40 deleted")
    finally:
        stop.set()
        thread.join(timeout=30)
    # 40 messages, received 10 at a time: one transaction and one delete call per message
    # before; now a batch shares both (a receive may return fewer than 10 on LocalStack).
    assert calls["DeleteMessageBatch"] <= 8, calls
    assert "DeleteMessage" not in calls
    assert commits[0] <= 12, commits
    assert sorted(r.n for r in probe.handled(probe_stack.engine)) == list(range(40))


def test_a_failure_in_a_batch_rolls_back_only_its_own_message(sqs, probe_stack):
    url = probe_stack.queue(STANDARD).url
    events = [ping("s", 1), ping("s", 2, fail_times=1), ping("s", 3), ping("s", 4)]
    sqs.send_message_batch(QueueUrl=url, Entries=[
        {"Id": str(i), "MessageBody": e.body(), "MessageAttributes": e.attributes()}
        for i, e in enumerate(events)])
    p = probe.Probe()
    consumer = make(sqs, probe_stack, STANDARD, p, concurrency=1)
    outcomes: dict[str, Outcome] = {}
    wait_for(lambda: outcomes.update(consumer.poll_once()) or len(outcomes) == 4, 20,
             "all four received")
    # one batch: three handled and committed, the failed one rolled back alone and retried
    assert sorted(outcomes.values()) == sorted([Outcome.HANDLED] * 3 + [Outcome.RETRY])
    assert sorted(r.n for r in probe.handled(probe_stack.engine)) == [1, 3, 4]
    wait_for(lambda: consumer.poll_once() is not None
             and len(probe.handled(probe_stack.engine)) == 4, 30, "the retried one handled")
    assert p.attempts[events[1].event_id] == 2
    assert [p.attempts[e.event_id] for e in (events[0], events[2], events[3])] == [1, 1, 1]
    assert depth(sqs, url) == 0


def test_a_fifo_failure_in_a_batch_holds_back_the_rest_of_its_group_only(sqs, probe_stack):
    ref = probe_stack.queue("probe.fifo")
    events = [ping("a", 1), ping("b", 1), ping("a", 2, fail_times=1), ping("b", 2),
              ping("a", 3), ping("b", 3)]
    for event_ in events:
        send(sqs, ref.url, event_)
    p = probe.Probe()
    consumer = make(sqs, probe_stack, "probe.fifo", p, concurrency=1)
    wait_for(lambda: consumer.poll_once() is not None
             and len(probe.handled(probe_stack.engine)) == 6, 60, "all six handled")
    order = [(r.grp, r.n) for r in probe.handled(probe_stack.engine)]
    assert [n for g, n in order if g == "a"] == [1, 2, 3]
    assert [n for g, n in order if g == "b"] == [1, 2, 3]
    assert p.attempts[events[4].event_id] == 1  # a3 never ran before a2 succeeded
    assert depth(sqs, ref.url) == 0 and depth(sqs, ref.dlq_url) == 0


def test_the_relay_publishes_a_handler_s_events_without_waiting_for_its_pause(
        sqs, sns, probe_stack):
    """The relay polls every `interval` (30 s here); a commit in its process wakes it."""
    publisher = Publisher(sqs, sns, TOPOLOGY, probe_stack.env)
    relay = Relay(probe_stack.engine, probe.outbox, publisher)
    sessions = db.session_factory(probe_stack.engine)
    relay.wake_on_commit(sessions)
    passes, first_pass = [0], relay.run_once

    def counted() -> int:
        passes[0] += 1
        return first_pass()

    relay.run_once = counted  # type: ignore[method-assign]
    stop = threading.Event()
    thread = threading.Thread(target=relay.run, args=(stop, 30.0))
    thread.start()
    try:
        wait_for(lambda: passes[0] >= 1, 10, "the relay's first pass (then a 30 s pause)")
        with sessions() as session, session.begin():
            Outbox(probe.outbox, TOPOLOGY).add(session, ping("w", 1))
        wait_for(lambda: pending(probe_stack.engine) == 0, 5, "the row published")
    finally:
        stop.set()
        relay.wake()
        thread.join(timeout=10)
    assert len(receive_all(sqs, probe_stack.queue(STANDARD).url, 1)) == 1
