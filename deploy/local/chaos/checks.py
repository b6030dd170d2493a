"""The invariants, checked through the public APIs, the SMTP sink and the queues only.

Each check returns how many violations it found and a few examples; 0 everywhere is a pass.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from deploy.local.chaos.client import Api
from deploy.local.chaos.ledger import HOLDING, Enrollment, Ledger
from deploy.local.chaos.observe import DeadLetter, State

INVARIANTS = ("no event lost", "no double effect", "no order break in a FIFO group",
              "seats consistent with enrollments", "no message dead-lettered untried",
              "nothing stuck")
SAMPLES = 5


@dataclass
class Finding:
    count: int = 0
    examples: list[str] = field(default_factory=list)

    def add(self, what: str, n: int = 1) -> None:
        if n <= 0:
            return
        self.count += n
        if len(self.examples) < SAMPLES:
            self.examples.append(what if n == 1 else f"{what} (x{n})")


def expected_end(e: Enrollment) -> tuple[str, str | None, bool, str]:
    """(status, cancel_reason, refunded, payment status) an enrollment must end with."""
    if e.declined:
        return "cancelled", "payment_declined", False, "failed"
    if e.cancelled:
        return "cancelled", "student_request", True, "refunded"
    return "active", None, False, "succeeded"


class Checks:
    def __init__(self, api: Api, ledger: Ledger, state: State, dlq: list[DeadLetter]) -> None:
        self.api, self.ledger, self.state, self.dlq = api, ledger, state, dlq
        self.found = {name: Finding() for name in INVARIANTS}

    def run(self) -> dict[str, Finding]:
        self.enrollments_and_payments()
        self.analytics()
        self.mail()
        self.order()
        self.seats()
        self.dead_letters()
        self.stuck()
        return self.found

    def enrollments_and_payments(self) -> None:
        lost, double = self.found["no event lost"], self.found["no double effect"]
        with ThreadPoolExecutor(8) as pool:
            payments = dict(zip(self.ledger.enrollments, pool.map(
                self.api.payments, self.ledger.enrollments), strict=True))
        for e in self.ledger.enrollments.values():
            row, want = self.state.enrollments[e.id], expected_end(e)
            have = (row["status"], row["cancel_reason"], row["refunded"])
            if have != want[:3]:
                lost.add(f"enrollment {e.id} ({e.token}) is {have}, expected {want[:3]}")
            rows = payments[e.id]
            if not rows:
                lost.add(f"enrollment {e.id} ({e.token}) has no payment")
            elif len(rows) > 1:
                double.add(f"enrollment {e.id} has {len(rows)} payments", len(rows) - 1)
            elif rows[0]["status"] != want[3]:
                lost.add(f"payment of {e.id} ({e.token}) is {rows[0]['status']}, "
                         f"expected {want[3]}")

    def analytics(self) -> None:
        lost, double = self.found["no event lost"], self.found["no double effect"]
        counted = self.state.summary.get("events_by_type", {})
        for event_type, n in self.ledger.expected_events().items():
            have = int(counted.get(event_type, 0))
            lost.add(f"analytics counted {have} {event_type}, {n} happened", n - have)
            double.add(f"analytics counted {have} {event_type}, {n} happened", have - n)
        revenue = int(self.state.summary.get("revenue_cents_by_currency", {}).get("USD", 0))
        want = self.ledger.expected_revenue()
        if revenue != want:
            (lost if revenue < want else double).add(
                f"analytics net revenue {revenue} cents, expected {want}")

    def mail(self) -> None:
        """One email per (event, recipient): one Message-ID each. A resend with the same
        Message-ID (the sender crashed between the SMTP server's acceptance and its commit) is
        the same email to a mail system, so it is reported as a resend, not a double effect."""
        lost, double = self.found["no event lost"], self.found["no double effect"]
        ids: dict[tuple[str, str], set[str]] = defaultdict(set)
        for m in self.state.mail:
            ids[(m["event_id"], m["to"])].add(m["message_id"])
        for (event_id, to), message_ids in ids.items():
            double.add(f"{len(message_ids)} different emails for event {event_id} to {to}",
                       len(message_ids) - 1)
        types = Counter(m["event_type"] for m in {m["event_id"]: m
                                                   for m in self.state.mail}.values())
        for event_type, n in self.ledger.expected_mail().items():
            lost.add(f"{types[event_type]} {event_type} emails, expected {n}",
                     n - types[event_type])
            double.add(f"{types[event_type]} {event_type} emails, expected {n}",
                       types[event_type] - n)

    def order(self) -> None:
        broken = self.found["no order break in a FIFO group"]
        groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
        for s in self.ledger.submissions:
            row = self.state.submissions.get(s.id)
            if row and row["graded_at"]:
                groups[(s.assignment, s.student)].append(row)
        for (assignment, student), rows in groups.items():
            rows.sort(key=lambda r: r["version"])
            for before, after in zip(rows, rows[1:], strict=False):
                if after["graded_at"] <= before["graded_at"]:
                    broken.add(f"{student!r} on {assignment}: version {after['version']} "
                               f"graded before version {before['version']} "
                               f"({after['graded_at']} <= {before['graded_at']})")
        for d in self.dlq:
            if d.event_type == "refund.requested" and d.dlq_reason not in (
                    None, "retries_exhausted"):
                broken.add(f"refund of {d.data.get('enrollment_id')} handled before its "
                           f"charge ({d.dlq_reason}: {d.dlq_error})")

    def seats(self) -> None:
        wrong = self.found["seats consistent with enrollments"]
        holding = Counter(row["course_id"] for row in self.state.enrollments.values()
                          if row["status"] in HOLDING)
        for course in self.ledger.courses:
            taken = self.api.seats_taken(course)
            if taken != holding[course]:
                wrong.add(f"course {course}: seats_taken {taken}, {holding[course]} "
                          "pending/active/cancelling enrollments")

    def dead_letters(self) -> None:
        untried = self.found["no message dead-lettered untried"]
        for d in self.dlq:
            if d.dlq_reason is None:
                untried.add(f"{d.event_type} in the {d.queue} DLQ without dlq_reason "
                            f"(moved by maxReceiveCount after {d.receive_count} receives)")
            enrollment = self.ledger.enrollments.get(str(d.data.get("enrollment_id")))
            # A tok_ok charge never fails by itself; it may spend its budget only on faults
            # the run injected (a killed database connection fails the handler), and then the
            # consumer says so with retries_exhausted. Any other way there is a violation.
            if d.event_type == "charge.requested" and enrollment and (
                    enrollment.token == "tok_ok") and d.dlq_reason != "retries_exhausted":
                untried.add(f"tok_ok enrollment {enrollment.id} of student "
                            f"{enrollment.student} dead-lettered ({d.dlq_reason})")

    def stuck(self) -> None:
        stuck = self.found["nothing stuck"]
        for row in self.state.enrollments.values():
            if row["status"] in ("pending_payment", "cancelling"):
                stuck.add(f"enrollment {row['id']} left {row['status']}")
        for s in self.ledger.submissions:
            status = self.state.submissions.get(s.id, {}).get("status", "unlisted")
            if status != "graded":
                stuck.add(f"submission {s.id} of {s.student!r} ({s.size} bytes) left {status}")
        for queue, n in self.state.depths.items():
            stuck.add(f"{n} message(s) left in {queue}", n)
