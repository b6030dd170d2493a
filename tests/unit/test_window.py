"""The consumer's window: what it holds, and how threads share it, without SQS."""

from __future__ import annotations

import threading

from shared.window import Window


def msg(n: int, group: str | None = None) -> dict:
    attrs = {"MessageGroupId": group} if group else {}
    return {"MessageId": f"m{n}", "ReceiptHandle": f"r{n}", "Attributes": attrs}


def ids(batch: list[dict] | None) -> list[str]:
    return [m["MessageId"] for m in batch or []]


def test_a_receive_is_made_only_while_a_whole_one_fits():
    window = Window(size=20, receive_size=10, fifo=False, threads=1, batch_size=10)
    window.hold(10)
    assert window.room()
    window.hold(1)
    assert not window.room()
    window.done([msg(1)])
    assert window.room()


def test_ready_messages_are_shared_among_the_threads_in_batches():
    window = Window(size=40, receive_size=10, fifo=False, threads=2, batch_size=10)
    messages = [msg(n) for n in range(8)]
    window.hold(8)
    window.add(messages)
    stop = threading.Event()
    assert ids(window.take(stop)) == ["m0", "m1", "m2", "m3"]  # half for each of two threads
    assert ids(window.take(stop)) == ["m4", "m5"]
    assert ids(window.take(stop)) == ["m6"]
    assert ids(window.take(stop)) == ["m7"]
    assert window.take(stop) is None


def test_a_fifo_group_is_claimed_by_one_thread_and_keeps_its_order():
    window = Window(size=40, receive_size=10, fifo=True, threads=1, batch_size=10)
    stop = threading.Event()
    window.hold(3)
    window.add([msg(1, "a"), msg(2, "b"), msg(3, "a")])
    assert ids(window.take(stop)) == ["m1", "m3", "m2"]  # group a in order, then group b
    window.hold(1)
    window.add([msg(4, "a")])  # a is claimed: m4 waits for this batch to end
    assert window.take(stop) is None
    assert window.after_batch({"a", "b"}, {}, stop) == []  # b handled and gone, nothing waits
    assert ids(window.take(stop)) == ["m4"]


def test_after_a_failure_the_rest_of_the_group_goes_back_and_later_arrivals_wait():
    window = Window(size=40, receive_size=10, fifo=True, threads=1, batch_size=1)
    stop = threading.Event()
    window.hold(2)
    window.add([msg(1, "a"), msg(2, "a")])
    assert ids(window.take(stop)) == ["m1"]
    retiring = window.after_batch({"a"}, {"a": 5}, stop)  # m1 failed: retry in 5 s
    assert [(g, ids(rest), delay) for g, rest, delay in retiring] == [("a", ["m2"], 5)]
    assert window.retire("a", 5) == []  # m2 handed back: the group is gone, held for 5 s
    window.hold(1)
    later = window.add([msg(3, "a")])  # a later message of the group, received early
    assert [(ids(rest), delay) for rest, delay in later] == [(["m3"], 5)]
    assert window.take(stop) is None


def test_a_retiring_group_keeps_what_arrives_until_its_messages_are_handed_back():
    """The order break `make chaos` found on PostgreSQL (four threads), against LocalStack,
    which makes a group receivable while one of its messages is still held: v3 failed and was
    handed back at once, was received again while its batch still held v4; v4 was handed back
    and received again just after the group was retired. It must wait for v3, not run first."""
    window = Window(size=40, receive_size=10, fifo=True, threads=1, batch_size=10)
    stop = threading.Event()
    window.hold(2)
    window.add([msg(3, "g"), msg(4, "g")])
    assert ids(window.take(stop)) == ["m3", "m4"]
    window.hold(1)
    window.add([msg(33, "g")])  # v3 again, received while the batch still runs
    assert window.take(stop) is None
    retiring = window.after_batch({"g"}, {"g": 0}, stop)  # v3 failed, retry at once
    assert [(g, ids(rest), delay) for g, rest, delay in retiring] == [("g", ["m33"], 0)]
    window.hold(1)
    assert window.add([msg(44, "g")]) == []  # v4 again, before v3 is handed back
    assert window.take(stop) is None  # no thread may run v4 before v3
    assert ids(window.retire("g", 0)) == ["m44"]  # it goes back after v3
    assert window.retire("g", 0) == []  # now the group is gone
    window.hold(1)
    window.add([msg(333, "g")])
    assert ids(window.take(stop)) == ["m333"]


def test_a_message_a_receive_brought_while_its_group_retired_goes_back_behind_the_rest():
    """The order break a later PostgreSQL `make chaos` run found (version 4 graded before
    version 3): v3 failed with a retry at once, LocalStack unlocked the group, and the receive
    in progress when the group's last hand-back retired it brought v4, which started the group
    anew while v3 was visible again. v4 must go back behind v3."""
    window = Window(size=40, receive_size=10, fifo=True, threads=1, batch_size=10)
    stop = threading.Event()
    window.hold(2)
    window.add([msg(3, "g"), msg(4, "g")], window.receiving())
    assert ids(window.take(stop)) == ["m3", "m4"]
    open_receive = window.receiving()  # the receiver long-polls while the batch runs
    [(group, rest, delay)] = window.after_batch({"g"}, {"g": 0}, stop)  # v3 failed: at once
    assert (group, ids(rest), delay) == ("g", [], 0)
    assert window.retire("g", 0) == []  # v3 and v4 handed back: the group is gone
    window.hold(1)
    assert [(ids(m), wait) for m, wait in window.add([msg(44, "g")], open_receive)] == [
        (["m44"], 0)]  # v4, from the receive that was open: handed back, not run
    assert window.take(stop) is None
    window.hold(2)
    assert window.add([msg(33, "g"), msg(444, "g")], window.receiving()) == []  # in order
    assert ids(window.take(stop)) == ["m33", "m444"]


def test_a_group_retired_between_receives_starts_anew_with_the_next():
    window = Window(size=40, receive_size=10, fifo=True, threads=1, batch_size=10)
    stop = threading.Event()
    window.hold(1)
    window.add([msg(3, "g")], window.receiving())
    assert ids(window.take(stop)) == ["m3"]
    window.after_batch({"g"}, {"g": 0}, stop)
    assert window.retire("g", 0) == []  # no receive open: nothing can be in flight to us
    window.hold(1)
    assert window.add([msg(33, "g")], window.receiving()) == []
    assert ids(window.take(stop)) == ["m33"]


def test_on_stop_nothing_is_taken_and_what_waits_is_handed_back():
    window = Window(size=40, receive_size=10, fifo=False, threads=1, batch_size=10)
    window.hold(3)
    window.add([msg(1), msg(2), msg(3)])
    stop = threading.Event()
    stop.set()
    assert window.take(stop) is None
    assert ids(window.unclaimed()) == ["m1", "m2", "m3"]


def test_past_the_deadline_what_is_in_a_batch_is_returned_to_hand_back():
    window = Window(size=40, receive_size=10, fifo=False, threads=1, batch_size=10)
    window.hold(1)
    window.add([msg(1)])
    batch = window.take(threading.Event())
    stop = threading.Event()
    stop.set()
    assert ids(window.wait_empty(stop, deadline=0.3)) == ids(batch)
    assert not window.still_running(batch or [])
