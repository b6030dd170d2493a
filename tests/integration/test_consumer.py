"""The consumer runtime against LocalStack and a real database."""

from __future__ import annotations

import json
import threading

from shared.handling import Outcome
from tests.support import probe
from tests.support.messages import depth, ping, receive_all, send, wait_for

STANDARD, FIFO = "probe-all", "probe.fifo"


def make(sqs, stack, name, p, **options):
    ref = stack.queue(name)
    sessions = __import__("shared.db", fromlist=["session_factory"]).session_factory(stack.engine)
    options.setdefault("max_attempts", ref.spec.max_receive_count)
    return probe.consumer(sqs, name, ref.url, ref.dlq_url, ref.spec.visibility_timeout,
                          probe.dispatcher(sessions, p), stack.engine, **options)


def poll_until(consumer, check, timeout=30, what="outcome"):
    outcomes: dict[str, Outcome] = {}

    def step():
        outcomes.update(consumer.poll_once())
        return check(outcomes)

    wait_for(step, timeout, what)
    return outcomes


def test_a_handled_message_is_deleted(sqs, probe_stack):
    consumer = make(sqs, probe_stack, STANDARD, probe.Probe())
    event = ping("a", 1)
    send(sqs, probe_stack.queue(STANDARD).url, event)
    outcomes = poll_until(consumer, lambda o: Outcome.HANDLED in o.values())
    assert list(outcomes.values()) == [Outcome.HANDLED]
    assert [r.event_id for r in probe.handled(probe_stack.engine)] == [event.event_id]
    assert depth(sqs, probe_stack.queue(STANDARD).url) == 0


def test_the_same_event_twice_has_one_effect(sqs, probe_stack):
    consumer = make(sqs, probe_stack, STANDARD, probe.Probe())
    event = ping("a", 1)
    for _ in range(2):
        send(sqs, probe_stack.queue(STANDARD).url, event)
    outcomes = poll_until(consumer, lambda o: len(o) == 2, what="both deliveries")
    assert sorted(outcomes.values()) == sorted([Outcome.HANDLED, Outcome.DUPLICATE])
    assert len(probe.handled(probe_stack.engine)) == 1
    assert depth(sqs, probe_stack.queue(STANDARD).url) == 0


def test_transient_failure_backs_off_then_the_consumer_dead_letters_it(sqs, probe_stack):
    p = probe.Probe()
    consumer = make(sqs, probe_stack, STANDARD, p)
    event = ping("a", 1, fail_times=99)
    ref = probe_stack.queue(STANDARD)
    send(sqs, ref.url, event)
    wait_for(lambda: consumer.poll_once() is not None and depth(sqs, ref.dlq_url) == 1, 60,
             "the consumer to dead-letter the message")
    times = p.attempt_times[event.event_id]
    assert len(times) == ref.spec.max_receive_count  # the whole budget of handler attempts
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    # backoff ceilings 1, 2, 4 s (jitter pinned to its maximum): each gap at least that long
    for gap, ceiling in zip(gaps, (1, 2, 4), strict=False):
        assert gap >= ceiling - 0.3, gaps
    assert gaps == sorted(gaps), f"backoff must grow: {gaps}"
    assert probe.handled(probe_stack.engine) == []
    dead = receive_all(sqs, ref.dlq_url, 1)
    assert json.loads(dead[0]["Body"])["event_id"] == event.event_id
    attrs = dead[0]["MessageAttributes"]
    assert attrs["dlq_reason"]["StringValue"] == "retries_exhausted"
    assert "transient failure 4 of 99" in attrs["dlq_error"]["StringValue"]  # the last error
    assert depth(sqs, ref.url) == 0


def test_poison_messages_go_to_the_dlq_at_once(sqs, probe_stack):
    ref = probe_stack.queue(STANDARD)
    consumer = make(sqs, probe_stack, STANDARD, probe.Probe())
    good = ping("a", 1)
    newer = ping("a", 2)
    unknown = ping("a", 3)
    broken_data = ping("a", 4)
    send(sqs, ref.url, good, body="{not json")
    send(sqs, ref.url, newer, body=newer.body().replace('"event_version":1', '"event_version":9'))
    send(sqs, ref.url, unknown, body=unknown.body().replace("probe.ping", "probe.unknown"))
    send(sqs, ref.url, broken_data, body=broken_data.body().replace('"n":4', '"n":"four"'))
    send(sqs, ref.url, good)
    outcomes = poll_until(consumer, lambda o: len(o) == 5, what="all five messages")
    assert sorted(outcomes.values()) == sorted([Outcome.DEAD_LETTERED] * 4 + [Outcome.HANDLED])
    dead = receive_all(sqs, ref.dlq_url, 4)
    reasons = sorted(m["MessageAttributes"]["dlq_reason"]["StringValue"] for m in dead)
    assert reasons == ["broken_json", "invalid_data", "unknown_event_type", "unsupported_version"]
    for message in dead:
        attrs = message["MessageAttributes"]
        assert attrs["source_queue"]["StringValue"] == STANDARD
        assert attrs["dlq_error"]["StringValue"]
        assert attrs["event_type"]["StringValue"] == "probe.ping"  # original attributes kept
        assert message["Attributes"]["ApproximateReceiveCount"] == "1"  # never retried
    assert [r.n for r in probe.handled(probe_stack.engine)] == [1]
    assert depth(sqs, ref.url) == 0


def test_permanent_error_is_dead_lettered_not_retried(sqs, probe_stack):
    ref = probe_stack.queue(FIFO)
    p = probe.Probe()
    consumer = make(sqs, probe_stack, FIFO, p)
    event = ping("a", 1, permanent=True)
    send(sqs, ref.url, event)
    poll_until(consumer, lambda o: Outcome.DEAD_LETTERED in o.values())
    dead = receive_all(sqs, ref.dlq_url, 1)
    assert dead[0]["MessageAttributes"]["dlq_reason"]["StringValue"] == "permanent_failure"
    assert dead[0]["Attributes"]["MessageGroupId"] == "a"
    assert p.attempts[event.event_id] == 1


def test_fifo_failure_holds_back_only_its_own_group(sqs, probe_stack):
    ref = probe_stack.queue(FIFO)
    p = probe.Probe()
    consumer = make(sqs, probe_stack, FIFO, p, concurrency=4)
    events = [ping("a", 1), ping("b", 1), ping("a", 2, fail_times=2), ping("b", 2),
              ping("a", 3), ping("b", 3)]
    for event in events:
        send(sqs, ref.url, event)
    poll_until(consumer, lambda o: len(probe.handled(probe_stack.engine)) == 6, 60,
               "all six handled")
    rows = probe.handled(probe_stack.engine)
    order = [(r.grp, r.n) for r in rows]
    assert [n for g, n in order if g == "a"] == [1, 2, 3]
    assert [n for g, n in order if g == "b"] == [1, 2, 3]
    # group b went on while a2 was failing: all of b finished before a2 succeeded
    assert order.index(("b", 3)) < order.index(("a", 2))
    assert p.attempts[events[2].event_id] == 3
    assert p.attempts[events[4].event_id] == 1  # a3 was never run before a2 succeeded
    assert depth(sqs, ref.url) == 0 and depth(sqs, ref.dlq_url) == 0


def test_a_slow_handler_keeps_its_message_invisible(sqs, probe_stack):
    """Visibility 4 s, handler 7 s: without the heartbeat a second consumer would get it."""
    ref = probe_stack.queue(FIFO)
    assert ref.spec.visibility_timeout == 4
    p = probe.Probe()
    consumers = [make(sqs, probe_stack, FIFO, p) for _ in range(2)]
    event = ping("slow", 1, sleep=7)
    send(sqs, ref.url, event)
    stop = threading.Event()
    threads = [threading.Thread(target=c.run, args=(stop,)) for c in consumers]
    for thread in threads:
        thread.start()
    try:
        wait_for(lambda: probe.handled(probe_stack.engine), 30, "the slow message handled")
        wait_for(lambda: depth(sqs, ref.url) == 0, 10, "the message deleted")
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    assert p.attempts[event.event_id] == 1
    assert len(probe.handled(probe_stack.engine)) == 1


def test_messages_held_behind_a_failing_one_spend_none_of_their_budget(sqs, probe_stack):
    """A regression: a1 and a2 each fail twice, a3 never fails, with a budget of 3 attempts. Every
    failure of a1 and a2 hands a3 back untried, and each of those receives used to count toward
    maxReceiveCount: a3 was dead-lettered without ever being tried."""
    ref = probe_stack.queue(FIFO)
    p = probe.Probe()
    consumer = make(sqs, probe_stack, FIFO, p, max_attempts=3)
    events = [ping("a", 1, fail_times=2), ping("a", 2, fail_times=2), ping("a", 3)]
    for event in events:
        send(sqs, ref.url, event)
    poll_until(consumer, lambda o: len(probe.handled(probe_stack.engine)) == 3, 90,
               "all three handled")
    assert [r.n for r in probe.handled(probe_stack.engine)] == [1, 2, 3]
    assert [p.attempts[e.event_id] for e in events] == [3, 3, 1]
    assert depth(sqs, ref.url) == 0 and depth(sqs, ref.dlq_url) == 0
    # and the queue's own safety net is set far above the budget
    redrive = json.loads(sqs.get_queue_attributes(QueueUrl=ref.url, AttributeNames=[
        "RedrivePolicy"])["Attributes"]["RedrivePolicy"])
    assert int(redrive["maxReceiveCount"]) == ref.spec.redrive_max_receives > 3 * 3


def test_a_dead_lettered_message_gets_a_whole_budget_after_a_redrive(sqs, probe_stack):
    ref = probe_stack.queue(FIFO)
    p = probe.Probe()
    consumer = make(sqs, probe_stack, FIFO, p, max_attempts=2)
    event = ping("b", 1, fail_times=3)  # fails twice (dead-lettered), then once, then succeeds
    send(sqs, ref.url, event)
    poll_until(consumer, lambda o: Outcome.DEAD_LETTERED in o.values(), 60, "dead-lettered")
    [dead] = receive_all(sqs, ref.dlq_url, 1)
    sqs.delete_message(QueueUrl=ref.dlq_url, ReceiptHandle=dead["ReceiptHandle"])
    send(sqs, ref.url, event)  # what a redrive does
    poll_until(consumer, lambda o: Outcome.HANDLED in o.values(), 60, "handled after redrive")
    assert p.attempts[event.event_id] == 4
