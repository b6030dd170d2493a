"""What the system says now, through its public APIs, its SMTP sink and its queues; and waiting
for it to settle (polling with a deadline)."""

from __future__ import annotations

import json
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from deploy.local import smtp_sink
from deploy.local.chaos import say
from deploy.local.chaos.client import Api
from deploy.local.chaos.ledger import Ledger
from deploy.local.chaos.stack import Stack
from deploy.local.wait import until
from shared.inspect import depth, localstack_listing

FINAL = ("active", "cancelled")


@dataclass
class State:
    enrollments: dict[str, dict[str, Any]] = field(default_factory=dict)
    submissions: dict[str, dict[str, Any]] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    mail: list[dict[str, str]] = field(default_factory=list)
    depths: dict[str, int] = field(default_factory=dict)  # queue and DLQ -> messages in it


@dataclass(frozen=True)
class DeadLetter:
    queue: str
    event_type: str
    dlq_reason: str | None
    dlq_error: str | None
    receive_count: int
    data: dict[str, Any]


class Observer:
    def __init__(self, stack: Stack, api: Api, ledger: Ledger) -> None:
        self.stack, self.api, self.ledger = stack, api, ledger
        self.state = State()

    def poll(self, full: bool = False) -> State:
        """Refresh what may still change (everything when `full`)."""
        s = self.state
        moving = [e.id for e in self.ledger.enrollments.values() if full or not self._settled(e.id)]
        with ThreadPoolExecutor(8) as pool:
            for row in pool.map(self.api.enrollment, moving):
                s.enrollments[row["id"]] = row
            for rows in pool.map(self.api.submissions, self.ledger.assignments):
                s.submissions.update({r["id"]: r for r in rows})
        s.summary = self.api.summary()
        s.mail = read_mail(self.stack)
        s.depths = self.depths()
        return s

    def _settled(self, enrollment_id: str) -> bool:
        row = self.state.enrollments.get(enrollment_id)
        wanted = "cancelled" if self.ledger.enrollments[enrollment_id].cancelled else FINAL
        return row is not None and row["status"] in wanted

    def depths(self) -> dict[str, int]:
        sqs = self.stack.client("sqs")
        return {name: depth(sqs, url).total for ref in self.stack.queues
                for name, url in ((ref.spec.name, ref.url), (ref.spec.dlq_name, ref.dlq_url))}

    def complete(self) -> bool:
        """Every request has had all its effects, and no queue holds anything."""
        s = self.state
        counted = s.summary.get("events_by_type", {})
        return (all(self._settled(e) for e in self.ledger.enrollments)
                and all(s.submissions.get(x.id, {}).get("status") == "graded"
                        for x in self.ledger.submissions)
                and all(counted.get(k, 0) >= n for k, n in self.ledger.expected_events().items())
                and len(s.mail) >= sum(self.ledger.expected_mail().values())
                and not any(s.depths.values()))

    def settle(self, timeout: float, quiet: float, what: str) -> bool:
        """Poll until complete (True), or until nothing moved for `quiet` seconds with the main
        queues empty, or the deadline (False: the checks then say what is missing)."""
        started = last_change = time.monotonic()
        seen: tuple[Any, ...] = ()

        def done() -> str | None:  # "complete", "quiet", or None to poll again
            nonlocal seen, last_change
            s = self.poll()
            if self.complete():
                return "complete"
            now, mark = time.monotonic(), self._fingerprint()
            if mark != seen:
                seen, last_change = mark, now
                say(f"{what}: waiting ({self._describe()})")
            mains_empty = not any(n for q, n in s.depths.items() if "-dlq" not in q)
            return "quiet" if mains_empty and now - last_change > quiet else None

        try:
            outcome = until(done, timeout, f"{what}: settled", every=2)
        except TimeoutError:
            say(f"{what}: not settled after {timeout:.0f} s; checking what is there")
            return False
        if outcome == "quiet":
            say(f"{what}: nothing moved for {quiet:.0f} s; checking what is there")
            return False
        say(f"{what}: settled after {time.monotonic() - started:.0f} s")
        return True

    def _fingerprint(self) -> tuple[Any, ...]:
        s = self.state
        return (tuple(sorted(Counter(r["status"] for r in s.enrollments.values()).items())),
                tuple(sorted(Counter(r["status"] for r in s.submissions.values()).items())),
                s.summary.get("events_processed"), len(s.mail), tuple(sorted(s.depths.items())))

    def _describe(self) -> str:
        s = self.state
        open_enrollments = sum(not self._settled(e) for e in self.ledger.enrollments)
        ungraded = sum(r["status"] != "graded" for r in s.submissions.values())
        queued = sum(s.depths.values())
        return (f"{open_enrollments} enrollments and {ungraded} submissions unfinished, "
                f"{s.summary.get('events_processed', 0)} events counted, {len(s.mail)} emails, "
                f"{queued} messages in queues and DLQs")


def read_mail(stack: Stack) -> list[dict[str, str]]:
    return [{"event_id": str(headers["X-Event-ID"]), "message_id": str(headers["Message-ID"]),
             "event_type": str(headers["X-Event-Type"]), "to": str(headers["To"])}
            for headers in smtp_sink.stored(stack.mail_dir, headers_only=True)]


def dead_letters(stack: Stack) -> list[DeadLetter]:
    """Every message of every DLQ, in flight or not, read through LocalStack's developer
    endpoint: it neither receives (no receive count spent) nor hides a FIFO group's tail."""
    return [_dead_letter(ref.spec.name, m) for ref in stack.queues
            for m in localstack_listing(stack.endpoint, ref.dlq_url, timeout=30)]


def _dead_letter(queue: str, message: dict[str, Any]) -> DeadLetter:
    attrs = {a["Name"]: a["Value"].get("StringValue") for a in _list(message, "MessageAttribute")}
    system = {a["Name"]: a["Value"] for a in _list(message, "Attribute")}
    try:
        body = json.loads(message["Body"])
        data = body.get("data", {}) if isinstance(body, dict) else {}
    except ValueError:
        data = {}
    return DeadLetter(queue, str(attrs.get("event_type")), attrs.get("dlq_reason"),
                      attrs.get("dlq_error"), int(system.get("ApproximateReceiveCount", 0)),
                      data if isinstance(data, dict) else {})


def _list(message: dict[str, Any], key: str) -> list[dict[str, Any]]:
    value = message.get(key) or []
    return [value] if isinstance(value, dict) else list(value)
