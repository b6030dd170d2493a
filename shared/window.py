"""What a consumer holds: the messages received and not yet finished or handed back, so that
receiving runs ahead of handling.

The receiver adds what it receives while a whole receive still fits; handler threads take ready
messages in batches, shared fairly among them. On a FIFO queue a group is claimed by one thread
at a time and its messages are taken in the order received; a group whose message failed is held
back until that message's retry, so none of it can overtake the failed one.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from typing import Any

Message = dict[str, Any]
HeldBack = list[tuple[list[Message], int]]  # messages to hand back, and after how many seconds
Retiring = list[tuple[str, list[Message], int]]  # a group, its messages to hand back, the delay


class Window:
    def __init__(self, size: int, receive_size: int, fifo: bool, threads: int,
                 batch_size: int) -> None:
        self.size, self.receive_size, self.fifo = size, receive_size, fifo
        self.threads, self.batch_size = threads, batch_size
        self.cond = threading.Condition()
        self.held = 0  # received and not yet finished or handed back
        self._ready: deque[Message] = deque()  # standard queue: waiting for a thread
        self._groups: dict[str, deque[Message]] = {}  # FIFO: each live group's waiting messages
        self._ready_groups: deque[str] = deque()  # FIFO: live groups no thread has claimed
        self._blocked: dict[str, float] = {}  # FIFO group -> until when a failure holds it
        self._receives = 0  # receives started (one receiver thread: at most one is open)
        self._open: int | None = None  # the receive in progress, by its number
        # FIFO group retired after a failure while receive n was open -> n (see `retire`)
        self._suspect: dict[str, int] = {}
        self.running: dict[str, Message] = {}  # in a thread's batch now, by receipt handle
        self.errors: list[BaseException] = []  # bugs of the runtime itself

    def room(self) -> bool:
        """Whether a whole receive fits; if not, wait a little for it."""
        with self.cond:
            if self.held + self.receive_size <= self.size:
                return True
            self.cond.wait(0.2)
        return False

    def hold(self, count: int) -> None:
        with self.cond:
            self.held += count

    def receiving(self) -> int:
        """The receiver is about to receive: the number to `add` what it gets with."""
        with self.cond:
            self._receives += 1
            self._open = self._receives
            return self._receives

    def add(self, messages: list[Message], ticket: int | None = None) -> HeldBack:
        """Queue held messages for the threads; return those of a group held by a failure,
        and those of a group retired while the receive that brought them (`ticket`) was open."""
        held_back: HeldBack = []
        with self.cond:
            if ticket is not None and ticket == self._open:
                self._open = None
            if not self.fifo:
                self._ready.extend(messages)
            for group_id, group in self.by_group(messages).items():
                wait = self._blocked.get(group_id, 0.0) - time.monotonic()
                if wait > 0:
                    held_back.append((group, math.ceil(wait)))
                    continue
                self._blocked.pop(group_id, None)
                suspect = self._suspect.pop(group_id, None)
                if suspect is not None and ticket is not None and ticket <= suspect:
                    held_back.append((group, 0))  # back behind its earlier messages
                    continue
                if group_id not in self._groups:
                    self._groups[group_id] = deque()
                    self._ready_groups.append(group_id)
                self._groups[group_id].extend(group)  # after what it holds, in order
            self.cond.notify_all()
        return held_back

    def by_group(self, messages: list[Message]) -> dict[str, list[Message]]:
        groups: dict[str, list[Message]] = {}
        if self.fifo:
            for m in messages:
                groups.setdefault(m["Attributes"]["MessageGroupId"], []).append(m)
        return groups

    def take(self, stop: threading.Event, wait: threading.Event | None = None
             ) -> list[Message] | None:
        """The next batch for a thread; None if nothing is ready (after waiting while `wait`
        is given and not yet set)."""
        with self.cond:
            while True:
                if not stop.is_set() and (batch := self._pick()):
                    self.running.update({m["ReceiptHandle"]: m for m in batch})
                    return batch
                if wait is None or wait.is_set() or self.errors:
                    return None
                self.cond.wait(0.5)

    def _pick(self) -> list[Message]:
        waiting = len(self._ready) if not self.fifo else sum(
            len(self._groups[g]) for g in self._ready_groups)
        size = min(self.batch_size, max(1, math.ceil(waiting / self.threads)))
        if not self.fifo:
            return [self._ready.popleft() for _ in range(min(size, len(self._ready)))]
        batch: list[Message] = []
        while self._ready_groups and len(batch) < size:
            queue = self._groups[self._ready_groups.popleft()]
            while queue and len(batch) < size:
                batch.append(queue.popleft())
        return batch

    def after_batch(self, groups: set[str], failed: dict[str, int], stop: threading.Event
                    ) -> Retiring:
        """FIFO: give each group of a batch back to the threads; after a failure or a stop,
        retire it instead: return its waiting messages, to go back with the failed one.

        A retiring group stays claimed until `retire` says it is gone, so that a later message
        of it received meanwhile waits too. LocalStack makes a group receivable again as soon as
        one of its messages is handed back, while another is still held here (SQS keeps it
        locked): a later message could otherwise be received once the group was retired here
        and before its earlier one was handed back, and another thread would run it first."""
        retiring: Retiring = []
        with self.cond:
            for group_id in groups:
                queue = self._groups.get(group_id)
                if group_id not in failed and not stop.is_set():
                    if queue:
                        self._ready_groups.append(group_id)
                    else:
                        self._groups.pop(group_id, None)  # all of it handled: gone at once
                    continue
                if queue is None:  # nothing of it was received meanwhile
                    self._groups[group_id] = queue = deque()
                retiring.append((group_id, list(queue), failed.get(group_id, 0)))
                queue.clear()
            self.cond.notify_all()
        return retiring

    def retire(self, group_id: str, delay: int) -> list[Message]:
        """Once a retiring group's messages are handed back: what of it was received since, to
        hand back too (then call again); else the group is gone, held back for `delay` seconds
        (from now: after its messages were handed back, so none comes back before them)."""
        with self.cond:
            queue = self._groups[group_id]
            if queue:
                late = list(queue)
                queue.clear()
                return late
            del self._groups[group_id]
            if self._open is not None:
                # A receive in progress may already hold a later message of this group (SQS
                # unlocked it when the last one was handed back, on LocalStack as soon as the
                # first was): arriving after this, it would start the group anew and run before
                # the earlier ones, which are visible again. It goes back behind them instead.
                self._suspect[group_id] = self._open
            if delay:
                self._blocked[group_id] = time.monotonic() + delay
            if len(self._blocked) > 1000:
                now = time.monotonic()
                self._blocked = {g: t for g, t in self._blocked.items() if t > now}
            if len(self._suspect) > 1000:  # records of receives long finished
                self._suspect = {g: n for g, n in self._suspect.items()
                                 if n >= self._receives - 1}
            self.cond.notify_all()
        return []

    def still_running(self, batch: list[Message]) -> bool:
        with self.cond:
            return all(m["ReceiptHandle"] in self.running for m in batch)

    def done(self, messages: list[Message]) -> None:
        """Messages finished or handed back: they leave the window."""
        with self.cond:
            for message in messages:
                self.running.pop(message["ReceiptHandle"], None)
            self.held -= len(messages)
            self.cond.notify_all()

    def unclaimed(self) -> list[Message]:
        """Take every message no thread has started (on stop)."""
        with self.cond:
            waiting = list(self._ready)
            self._ready.clear()
            for group_id in self._ready_groups:
                waiting += self._groups.pop(group_id, ())
            self._ready_groups.clear()
            return waiting

    def wait_empty(self, stop: threading.Event, deadline: float) -> list[Message] | None:
        """Wait until nothing is held; once stopped, for at most `deadline` seconds. Returns
        None when empty (or on a runtime error), else what is still in a thread's batch."""
        stopped_at = time.monotonic()
        with self.cond:
            while self.held > 0 and not self.errors:
                self.cond.wait(0.2)
                if stop.is_set() and time.monotonic() - stopped_at > deadline:
                    stuck = list(self.running.values())
                    self.running.clear()
                    return stuck
        return None

    def wake(self) -> None:
        """Wake every thread waiting on the window (to see a stop)."""
        with self.cond:
            self.cond.notify_all()

    def fail(self, exc: BaseException) -> None:
        with self.cond:
            self.errors.append(exc)
            self.cond.notify_all()

    def raise_errors(self) -> None:
        with self.cond:
            if self.errors:
                raise self.errors[0]
