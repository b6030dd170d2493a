"""What the workload drove and what the APIs answered: the expectations the checks start from."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field

HOLDING = ("pending_payment", "active", "cancelling")
JANE = "Jane Doe"  # a student_id with a space: it once jammed the assignment outbox


@dataclass
class Enrollment:
    id: str
    student: str
    course: str
    token: str
    cancel_wanted: bool = False
    cancelled: bool = False  # the cancel request was accepted (202)

    @property
    def declined(self) -> bool:
        return self.token == "tok_declined"


@dataclass(frozen=True)
class Submission:
    id: str
    assignment: str
    student: str
    version: int
    size: int


@dataclass
class Ledger:
    students: dict[str, str] = field(default_factory=dict)  # id -> email
    courses: dict[str, int] = field(default_factory=dict)  # id -> price_cents (all in USD)
    full_courses: set[str] = field(default_factory=set)
    assignments: list[str] = field(default_factory=list)
    enrollments: dict[str, Enrollment] = field(default_factory=dict)
    submissions: list[Submission] = field(default_factory=list)
    http: Counter[str] = field(default_factory=Counter)  # "<request> <status> [why]" -> count
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def answered(self, what: str) -> None:
        with self._lock:
            self.http[what] += 1

    def enrolled(self, enrollment: Enrollment) -> None:
        with self._lock:
            self.enrollments[enrollment.id] = enrollment
            self.http["POST /enrollments 202"] += 1

    def submitted(self, submission: Submission) -> None:
        with self._lock:
            self.submissions.append(submission)
            self.http["POST /submissions 202"] += 1

    def expected_events(self) -> dict[str, int]:
        """How many of each event the analytics service must have counted, exactly."""
        paid = sum(not e.declined for e in self.enrollments.values())
        declined = len(self.enrollments) - paid
        cancels = sum(e.cancelled for e in self.enrollments.values())
        graded = len(self.submissions)
        return {"student.registered": len(self.students), "course.created": len(self.courses),
                "assignment.created": len(self.assignments),
                "enrollment.requested": len(self.enrollments), "payment.succeeded": paid,
                "payment.failed": declined, "enrollment.confirmed": paid,
                "refund.requested": cancels, "payment.refunded": cancels,
                "enrollment.cancelled": declined + cancels,
                "submission.received": graded, "submission.graded": graded}

    def expected_mail(self) -> dict[str, int]:
        """Emails by event type: one per event whose student is registered (has a contact)."""
        events = self.expected_events()
        registered = sum(s.student in self.students for s in self.submissions)
        return {"enrollment.confirmed": events["enrollment.confirmed"],
                "enrollment.cancelled": events["enrollment.cancelled"],
                "payment.refunded": events["payment.refunded"], "submission.graded": registered}

    def expected_revenue(self) -> int:
        return sum(self.courses[e.course] for e in self.enrollments.values()
                   if not e.declined and not e.cancelled)

    def driven(self) -> dict[str, int]:
        """The table of events driven."""
        big = sum(s.size >= 90_000 for s in self.submissions)
        return {"students": len(self.students), "courses": len(self.courses),
                "assignments": len(self.assignments),
                "enrollments accepted": len(self.enrollments),
                "  tok_ok": sum(e.token == "tok_ok" for e in self.enrollments.values()),
                "  tok_declined": sum(e.declined for e in self.enrollments.values()),
                "  tok_flaky_<n>": sum(e.token.startswith("tok_flaky")
                                       for e in self.enrollments.values()),
                "enrollments refused 409 (full course: expected)":
                    self.http["POST /enrollments 409 expected"],
                "cancellations accepted": sum(e.cancelled for e in self.enrollments.values()),
                "submissions accepted": len(self.submissions),
                "  of ~100 KB": big,
                "  by 'Jane Doe'": sum(s.student == JANE for s in self.submissions),
                "  resubmissions (version > 1)": sum(s.version > 1 for s in self.submissions)}
