"""The seeded workload, driven through the public HTTP APIs only."""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from deploy.local.chaos.client import Api
from deploy.local.chaos.ledger import JANE, Enrollment, Ledger, Submission
from deploy.local.client import ProblemError
from deploy.local.wait import until

TOKENS = ("tok_ok", "tok_declined", "tok_flaky_1", "tok_flaky_2")
WEIGHTS = (70, 12, 10, 8)
ESSAY_BYTES = 100_000  # ~100 KB, just under the API's 100 KiB limit
BURST = 6  # simultaneous ~100 KB submissions: more than one SNS/SQS batch request may hold
SYLLABLES = ("ka", "lo", "mi", "ren", "to", "vas", "qu", "el", "dor", "sin", "pa", "zu")
VOCABULARY = [a + b + c for a in SYLLABLES for b in SYLLABLES for c in SYLLABLES[:4]]
Op = Callable[[], None]


@dataclass
class Progress:
    total: int = 0
    done: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def tick(self) -> None:
        with self._lock:
            self.done += 1

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 1.0


class Workload:
    def __init__(self, api: Api, events: int, seed: int, concurrency: int,
                 pace: float = 0.0) -> None:
        self.api, self.events, self.concurrency = api, events, concurrency
        self.pace = pace  # seconds the requests are spread over, so faults meet traffic
        self.rng = random.Random(seed)
        self.ledger = Ledger()
        self.progress = Progress()
        self.keywords = self.rng.sample(VOCABULARY, 5)

    # --- setup: who and what exists --------------------------------------------------------

    def setup(self) -> None:
        n_students, n_courses = max(20, self.events // 5), max(5, self.events // 40)
        self.pairs = self.rng.sample([(s, c) for s in range(n_students)
                                      for c in range(n_courses)], self.events)
        per_course = [sum(c == i for _, c in self.pairs) for i in range(n_courses)]
        with ThreadPoolExecutor(self.concurrency) as pool:
            self.student_ids = list(pool.map(lambda _: self._student(), range(n_students + 2)))
            self.course_ids = list(pool.map(lambda n: self._course(n + 3, 4990), per_course))
        self.full_ids = [self._course(2, 1990, full=True) for _ in range(2)]
        for _ in range(max(3, self.events // 150)):
            self.ledger.assignments.append(self._assignment())

    def _student(self) -> str:
        body = self.api.new_student("Chaos")
        self.ledger.students[body["id"]] = body["email"]
        return str(body["id"])

    def _course(self, capacity: int, price: int, full: bool = False) -> str:
        body = self.api.create_course("Chaos engineering", capacity, price)
        self.ledger.courses[body["id"]] = price
        if full:
            self.ledger.full_courses.add(body["id"])
        return str(body["id"])

    def _assignment(self) -> str:
        body = self.api.create_assignment(
            course_id=self.rng.choice(self.course_ids), title="An essay on queues",
            max_score=100, keywords=self.keywords)
        return str(body["id"])

    # --- the drive -------------------------------------------------------------------------

    def plan(self) -> list[Op]:
        """Every request of the run, in a seeded order; each op is one unit of progress."""
        ops: list[Op] = []
        self.cancels_planned = 0
        for s, c in self.pairs:
            token = self.rng.choices(TOKENS, WEIGHTS)[0]
            cancel = token != "tok_declined" and self.rng.random() < 0.12
            ops.append(self._enroll_op(self.student_ids[s], self.course_ids[c], token, cancel))
            self.cancels_planned += cancel
        # Flaky, flaky, ok by one student: the ok payment, held behind the two failures, must
        # not be dead-lettered untried.
        for student in self.student_ids[-2:]:
            ops.append(self._flaky_chain_op(student))
        for course in self.full_ids:
            ops += [self._enroll_op(self.rng.choice(self.student_ids), course, "tok_ok", False)
                    for _ in range(5)]
        for _ in range(max(10, self.events // 5)):
            student = self.rng.choice(self.student_ids)
            versions = self.rng.choices((1, 2, 3, 4), (40, 30, 20, 10))[0]
            ops.append(self._chain_op(self.rng.choice(self.ledger.assignments), student,
                                      versions))
        for assignment in self.ledger.assignments[:2]:
            ops.append(self._chain_op(assignment, JANE, 2))
        for _ in range(max(1, self.events // 300)):
            ops.append(self._burst_op(self.rng.choice(self.ledger.assignments)))
        self.rng.shuffle(ops)
        return ops

    def drive(self, ops: list[Op]) -> None:
        """The requests, then the cancellations of the enrollments chosen for one."""
        self.progress.total = len(ops) + self.cancels_planned
        self._all(ops, self.pace)
        cancels = [self._cancel_op(e) for e in self.ledger.enrollments.values()
                   if e.cancel_wanted]
        self.progress.total = len(ops) + len(cancels)
        self._all(cancels)

    def _all(self, ops: list[Op], pace: float = 0.0) -> None:
        pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="drive")
        start, step = time.monotonic(), pace / max(1, len(ops))
        try:
            list(pool.map(lambda i: self._run(ops[i], start + i * step), range(len(ops))))
        except BaseException:  # Ctrl-C: requests in flight give up, queued ones never start
            self.api.closed = True
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def _run(self, op: Op, not_before: float = 0.0) -> None:
        time.sleep(max(0.0, not_before - time.monotonic()))
        try:
            op()
        except (RuntimeError, ProblemError) as exc:  # counted, the run goes on
            self.ledger.answered(f"request failed: {str(exc)[:80]}")
        self.progress.tick()

    def _enroll_op(self, student: str, course: str, token: str, cancel: bool) -> Op:
        return lambda: self._enroll(student, course, token, cancel)

    def _enroll(self, student: str, course: str, token: str, cancel: bool) -> None:
        try:
            body = self.api.enroll(student, course, token, key=uuid.uuid4().hex)
        except ProblemError as exc:
            why = "expected" if course in self.ledger.full_courses else "unexpected"
            self.ledger.answered(f"POST /enrollments {exc.status} {why}")
            return
        self.ledger.enrolled(Enrollment(body["id"], student, course, token, cancel))

    def _flaky_chain_op(self, student: str) -> Op:
        courses = self.rng.sample(self.course_ids, 3)
        tokens = ("tok_flaky_2", "tok_flaky_2", "tok_ok")

        def chain() -> None:
            for course, token in zip(courses, tokens, strict=True):
                self._enroll(student, course, token, False)

        return chain

    def _cancel_op(self, enrollment: Enrollment) -> Op:
        return lambda: self._cancel(enrollment)

    def _cancel(self, enrollment: Enrollment, timeout: float = 120) -> None:
        """Wait until the enrollment is active, then cancel it (only active ones can be)."""
        try:
            until(lambda: self._status(enrollment.id) == "active", timeout,
                  f"enrollment {enrollment.id} to be active", every=0.5)
        except TimeoutError:
            self.ledger.answered("cancel skipped: never active within the drive")
            return
        try:
            self.api.cancel(enrollment.id)
        except ProblemError as exc:
            if exc.status != 409 or self._status(enrollment.id) not in (
                    "cancelling", "cancelled"):  # a 409 after a retried 202 is a 202
                self.ledger.answered(f"POST /cancel {exc.status} unexpected")
                return
        enrollment.cancelled = True
        self.ledger.answered("POST /cancel 202")

    def _status(self, enrollment_id: str) -> str:
        return str(self.api.enrollment(enrollment_id)["status"])

    def _chain_op(self, assignment: str, student: str, versions: int) -> Op:
        sizes = [ESSAY_BYTES if self.rng.random() < 0.1 else self.rng.randint(500, 5000)
                 for _ in range(versions)]
        seed = self.rng.random()

        def chain() -> None:  # one version after the other, as a student resubmits
            for size in sizes:
                self._submit(assignment, student, size, seed)

        return chain

    def _burst_op(self, assignment: str) -> Op:
        students = self.rng.sample(self.student_ids, BURST)
        seed = self.rng.random()
        return lambda: self._burst(assignment, students, seed)

    def _burst(self, assignment: str, students: list[str], seed: float) -> None:
        """Six ~100 KB submissions at the same moment, so they sit in the outbox together."""
        start = threading.Barrier(len(students))

        def one(student: str) -> None:
            start.wait()
            self._submit(assignment, student, ESSAY_BYTES, seed)

        threads = [threading.Thread(target=one, args=(s,)) for s in students]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def _submit(self, assignment: str, student: str, size: int, seed: float) -> None:
        content = essay(random.Random(f"{seed}:{student}:{size}"), self.keywords, size)
        for attempt in range(5):  # 409: another version by the same student was stored at once
            try:
                body = self.api.submit(assignment, student, content, key=uuid.uuid4().hex)
                break
            except ProblemError as exc:
                if exc.status != 409 or attempt == 4:
                    self.ledger.answered(f"POST /submissions {exc.status} unexpected")
                    return
        self.ledger.submitted(Submission(body["id"], assignment, student, body["version"],
                                         len(content.encode())))


def essay(rng: random.Random, keywords: list[str], size: int) -> str:
    """Words of the vocabulary and some keywords, cut at a word boundary to `size` bytes."""
    words = rng.choices(VOCABULARY, k=size // 5 + 10)
    for i in rng.sample(range(len(words)), min(len(words), rng.randint(1, 5))):
        words[i] = rng.choice(keywords)
    text = " ".join(words)[:size]
    return text.rsplit(" ", 1)[0] if " " in text else text
