"""`make demo`: a narrated scenario against a running `make up` stack.

It exercises every service and every failure path (a decline, a flaky gateway, a gateway that
is down and leaves a request in the DLQ, a cancellation with refund, resubmissions, a plagiarised
essay, a duplicate delivery), waits for each outcome with progress, prints a summary and
`school status`, redrives the DLQ and shows that the request completed, and ends by killing
the payment worker while payment requests wait and showing the backlog drain once it is back.

Everyone acts with their own access token from the local issuer: Grace, an
instructor, creates the courses and the assignment; the admin flips the simulator's switches
and reads the analytics; each student registers themselves (their student id is their token's
subject), enrolls, cancels, submits and reads their own payments and emails. Bob asking for
Ada's enrollment is refused. Each run uses new students (new subjects), so it can be run again
against the same stack.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from deploy.local import localstack
from deploy.local.client import Client, ProblemError, Unreachable
from deploy.local.keep import pidfile
from deploy.local.tokens import TokenError, mint
from deploy.local.up import DEFAULT_ENDPOINT, shown
from deploy.local.wait import until
from shared import aws, cli
from shared.events import CATALOGUE
from shared.inspect import QueueState, queue_state
from shared.serve import port
from shared.settings import CONSOLE, SERVICES, Settings
from shared.topology import TOPOLOGY, physical

PAYMENT_QUEUE = TOPOLOGY.queue("payment-requests.fifo")
# honcho names the first (only) instance of the Procfile's payment-worker so; keep.py writes its
# pid under var/run/ with that name.
PAYMENT_WORKER = "payment-worker.1"
KEYWORDS = ["queue", "fifo", "group", "idempotent", "retry"]
ESSAY = ("A fifo queue keeps each group in order, a consumer must be idempotent because "
         "delivery is at least once, and a failed message is retried then dead-lettered.")
INSTRUCTOR, ADMIN = "grace-instructor", "admin-1"  # their subjects; a student's is new each run


class DemoError(Exception):
    """The stack did not do what the scenario expects: stop with this message."""


def console_url() -> str:
    return f"http://127.0.0.1:{port(CONSOLE)}"


def issuer_url() -> str:
    """The local issuer `make up` runs (OIDC_ISSUER, as the services are told)."""
    return os.environ.get("OIDC_ISSUER") or f"http://127.0.0.1:{port('issuer')}"


@dataclass(frozen=True)
class Person:
    """One of the cast: who they are and the client acting with their own token."""

    name: str
    role: str
    sub: str
    api: Client

    @property
    def id(self) -> str:
        """A student's id is their token's subject."""
        return self.sub

    def __str__(self) -> str:
        """Who acts, as the narration names them: `Ada (student ada-3f2c1a)`."""
        if self.role in self.name:  # "the admin (admin-1)"
            return f"{self.name} ({self.sub})"
        return f"{self.name} ({self.role} {self.sub})"


def say(text: str = "") -> None:
    print(text, flush=True)


def step(title: str) -> None:
    say(f"\n== {title}")


def wait(what: str, check: Callable[[], Any], timeout: float = 90, every: float = 5) -> Any:
    """Poll `check` until it returns something truthy, saying what it waits for every `every` s."""
    try:
        return until(check, timeout, what, every=0.5, tell_every=every,
                     tell=lambda elapsed: say(f"   ... waiting for {what} ({elapsed:.0f} s)"))
    except TimeoutError:
        raise DemoError(f"gave up after {timeout:.0f} s waiting for {what}; "
                        f"`make status` and var/log/ show where it is stuck") from None


class Demo:
    grace: Person  # the instructor and the admin, signed in by check_stack
    admin: Person

    def __init__(self) -> None:
        os.environ.setdefault("AWS_ENDPOINT_URL", DEFAULT_ENDPOINT)
        localstack.use_test_credentials()
        self.settings = Settings.from_env()
        self.sqs, self.sns = aws.client("sqs", self.settings), aws.client("sns", self.settings)
        self.school = Client()  # nobody's: the health checks only
        self.issuer = issuer_url()
        self.tag = uuid.uuid4().hex[:6]
        self.rows: list[dict[str, Any]] = []
        self.dead_before = 0

    # -- the cast ------------------------------------------------------------------------------
    def person(self, name: str, role: str, sub: str, email: str | None = None) -> Person:
        """`name`, acting with a token of the local issuer for `sub` in the group `role`."""
        try:
            token = mint(self.issuer, sub, [role], email=email, name=name)
        except TokenError as exc:
            if exc.status is None:
                raise DemoError(f"is `make up` running? the issuer at {self.issuer} does not "
                                "answer (OIDC_ISSUER names another)") from None
            raise DemoError(f"the issuer at {self.issuer} gave {name} no token: {exc}") from None
        return Person(name, role, sub, self.school.as_(token))

    def student(self, name: str) -> Person:
        """A new student, who registers themselves: their student id is their subject."""
        email = f"{name.lower()}.{self.tag}@example.com"
        who = self.person(name, "student", f"{name.lower()}-{self.tag}", email)
        record = who.api.register(name, email)
        if record["id"] != who.sub:
            raise DemoError(f"{who} registered as student {record['id']}, not as their subject")
        say(f"   {who} registers themselves: student id {record['id']}")
        return who

    # -- helpers -------------------------------------------------------------------------------
    def enroll(self, student: Person, course: dict[str, Any], token: str) -> str:
        body = student.api.enroll(student.id, course["id"], token)
        say(f"   {student} enrolls in {course['title']} with {token}: "
            f"{body['status']} ({body['id'][:8]})")
        return str(body["id"])

    def until_status(self, student: Person, enrollment_id: str, *statuses: str,
                     timeout: float = 90) -> dict[str, Any]:
        """Wait, reading as `student`, until their enrollment has one of these statuses."""
        return wait(f"enrollment {enrollment_id[:8]} to be {' or '.join(statuses)}",
                    lambda: (e := student.api.enrollment(enrollment_id))["status"] in statuses
                    and e, timeout)

    def notifications(self, student: Person) -> list[dict[str, Any]]:
        return student.api.notifications(student.id)

    def graded(self, task: str, student: Person, count: int) -> list[dict[str, Any]]:
        """Wait until the student's `count` submissions are graded (in version order), as the
        student reads them."""
        return wait(f"{student.name}'s {count} graded submission(s)", lambda: (
            rows := student.api.submissions(task, student.id))
            and len(rows) == count and all(r["status"] == "graded" for r in rows) and rows)

    def queue(self, name: str) -> QueueState:
        url = self.sqs.get_queue_url(QueueName=physical(self.settings.school_env,
                                                        name))["QueueUrl"]
        return queue_state(self.sqs, url, self.settings)

    def dead_letters(self) -> int:
        return self.queue(PAYMENT_QUEUE.dlq_name).visible

    def record(self, student: Person, what: str, enrollment_id: str) -> None:
        self.rows.append({"student": student, "what": what, "enrollment": enrollment_id})

    # -- the scenario --------------------------------------------------------------------------
    def check_stack(self) -> None:
        step("The stack")
        for service in SERVICES:
            self.school.ready(service)
            say(f"   {service:<12} ready at {self.school.urls[service]}")
        self.grace = self.person("Grace", "instructor", INSTRUCTOR, "grace@example.com")
        self.admin = self.person("the admin", "admin", ADMIN)
        say(f"   tokens from the issuer at {self.issuer}: {self.grace}, {self.admin}, and one "
            "for each student, who is their own subject")
        try:
            self.admin.api.gateway()
        except ProblemError as exc:
            if exc.status in (401, 403):
                raise DemoError(f"the payment service refused {self.admin}'s token "
                                f"({exc.status}): do the services trust the issuer at "
                                f"{self.issuer}? (`make up` gives them OIDC_ISSUER)") from exc
            raise DemoError("the payment service has no /simulator/gateway: start the stack "
                            "with `make up` (it turns SCHOOL_SIMULATOR_CONTROLS on)") from exc
        say(f"   queues of SCHOOL_ENV={self.settings.school_env!r} at "
            f"{self.settings.aws_endpoint_url}")
        self.dead_before = self.dead_letters()

    def run(self) -> None:
        self.check_stack()
        grace, admin = self.grace, self.admin
        step("Students and courses (enrollment service, events on the SNS topic)")
        ada, bob, cyd, dee, eve = (self.student(n) for n in ("Ada", "Bob", "Cyd", "Dee", "Eve"))
        queues = grace.api.create_course("Queues 101", 10, 4990, "USD")
        sagas = grace.api.create_course("Sagas 201", 10, 1500, "EUR")
        say(f"   {grace} creates Queues 101 (49.90 USD) and Sagas 201 (15.00 EUR)")

        step("Enrollments: a payment per request on payment-requests.fifo, grouped by student")
        admin.api.gateway_outage(True)
        say(f"   {admin} turns the simulated gateway's outage on: tok_down payments fail")
        paid = self.enroll(ada, queues, "tok_ok")
        declined = self.enroll(bob, queues, "tok_declined")
        flaky = self.enroll(cyd, sagas, "tok_flaky_2")
        down = self.enroll(dee, sagas, "tok_down")
        refunded = self.enroll(eve, sagas, "tok_ok")
        self.record(ada, "tok_ok", paid)
        self.record(bob, "tok_declined", declined)
        self.record(cyd, "tok_flaky_2 (2 outages)", flaky)
        self.record(dee, "tok_down (gateway down)", down)
        self.record(eve, "tok_ok, then cancelled", refunded)
        self.until_status(ada, paid, "active")
        say("   Ada: active (paid at the first attempt)")
        e = self.until_status(bob, declined, "cancelled")
        say(f"   Bob: cancelled ({e['cancel_reason']}); the seat is released")
        self.until_status(cyd, flaky, "active")
        [payment] = cyd.api.payments(flaky)
        say(f"   Cyd: active after {payment['gateway_attempts']} gateway attempts "
            f"(the worker retried with backoff, the same idempotency key each time)")
        self.refused(bob, ada, paid)

        step("A cancellation with refund (refund.requested -> payment.refunded)")
        self.until_status(eve, refunded, "active")
        eve.api.cancel(refunded)
        say(f"   {eve} cancels her enrollment in Sagas 201")
        self.until_status(eve, refunded, "cancelled")
        wait("Eve's refund", lambda: [p["status"] for p in eve.api.payments(refunded)]
             == ["refunded"])
        say("   Eve: cancelled at her request, 15.00 EUR refunded")

        self.assignments(grace, ada, cyd, queues)
        self.duplicate(ada, paid, queues)

        step("The gateway is down: Dee's payment request ends in the DLQ")
        wait("payment-requests-dlq.fifo to receive Dee's request",
             lambda: self.dead_letters() > self.dead_before, timeout=120)
        say(f"   Dee's enrollment is still {dee.api.enrollment(down)['status']} (as Dee reads "
            "it); the DLQ says why:")
        say("   $ school dlq list payment-requests.fifo")
        listing = io.StringIO()
        cli.dlq_list(self.settings, self.sqs, PAYMENT_QUEUE, listing)
        for line in listing.getvalue().splitlines():
            if line.startswith("{"):
                held = json.loads(line)
                detail = held["dlq_error"] or (
                    f"SQS moved it after {PAYMENT_QUEUE.redrive_max_receives} receives, "
                    "the queue's safety net")
                say(f"   {held['event_type']}: {held['dlq_reason']} ({detail[:100]})")
            else:
                say(f"   {line}")

        self.summary()
        step("school status")
        cli.status(self.settings, self.sqs)

        step("Recovery: the gateway comes back and the DLQ is redriven")
        admin.api.gateway_outage(False)
        say(f"   {admin} turns the outage switch off")
        say("   $ school dlq redrive payment-requests.fifo")
        if cli.dlq_redrive(self.settings, self.sqs, PAYMENT_QUEUE) != 0:
            raise DemoError("the redrive failed")
        e = self.until_status(dee, down, "active")
        [payment] = dee.api.payments(down)
        say(f"   Dee: {e['status']}, payment {payment['status']} after "
            f"{payment['gateway_attempts']} gateway attempts")
        self.crash(queues)
        say(f"\nDemo complete. The emails are in {shown(self.settings.var_dir / 'mail')}/; every "
            "process logs to the terminal of `make up`, one JSON line per event handled.")
        say(f"Every conversation above is in the console, {console_url()} (sign in as an "
            f"operator): search Dee's enrollment {down} to see its payment dead-lettered and "
            "redriven, or run `school login --as operator` and `school trace <correlation-id>`.")

    def refused(self, bob: Person, ada: Person, enrollment_id: str) -> None:
        """Bob asks for Ada's enrollment by its id: a 404, as for one that does not exist."""
        step("A refused attempt: Bob asks for Ada's enrollment by its id")
        reply = bob.api.send("GET", "enrollment", f"/enrollments/{enrollment_id}")
        say(f"   {bob} GET /enrollments/{enrollment_id[:8]} (Ada's): {reply.status_code}")
        if reply.status_code != 404:
            raise DemoError(f"{bob} asked for {ada}'s enrollment {enrollment_id} and was "
                            f"answered {reply.status_code}, not 404")
        say("   refused as if it did not exist: a student sees only their own records, and "
            "whether another's exists is not revealed")

    def assignments(self, grace: Person, ada: Person, cyd: Person,
                    course: dict[str, Any]) -> None:
        step("Assignments: resubmissions and a plagiarised essay (assignment-submissions.fifo)")
        task = grace.api.create_assignment(course_id=course["id"], title="Why queues?",
                                           max_score=100, keywords=KEYWORDS)["id"]
        say(f"   {grace} creates the assignment 'Why queues?' in {course['title']}")
        for text in ("A queue.", "A fifo queue keeps a group in order.", ESSAY):
            sub = ada.api.submit(task, ada.id, text)
            say(f"   {ada} submits version {sub['version']}")
        self.graded(task, ada, 3)
        cyd.api.submit(task, cyd.id, ESSAY)
        say(f"   {cyd} submits a copy of Ada's last essay")
        self.graded(task, cyd, 1)
        say(f"   {grace} reads the submissions to her assignment:")
        for row in grace.api.submissions(task):
            who = "Ada" if row["student_id"] == ada.id else "Cyd"
            flag = "  FLAGGED" if row["flagged"] else ""
            say(f"   {who} v{row['version']}: {row['score']:g}/100, similarity "
                f"{row['plagiarism_score']:.2f}{flag}")

    def duplicate(self, ada: Person, paid: str, course: dict[str, Any]) -> None:
        step("A duplicate delivery: the same event reaches the topic three times")
        sent = wait("Ada's confirmation email", lambda: [
            n for n in self.notifications(ada)
            if n["event_type"] == "enrollment.confirmed" and n["status"] == "sent"])
        before = self.admin.api.summary()
        original = sent[0]
        copy = CATALOGUE.new("enrollment.confirmed", {
            "enrollment_id": paid, "student_id": ada.id, "course_id": course["id"]},
            event_id=original["event_id"], correlation_id=original["correlation_id"])
        topic = self.sns.create_topic(Name=physical(self.settings.school_env,
                                                    TOPOLOGY.topic.name))["TopicArn"]
        for _ in range(2):  # as a relay that crashed before marking the row published would
            self.sns.publish(TopicArn=topic, Message=copy.body(),
                             MessageAttributes=copy.attributes())
        say(f"   published event {copy.event_id[:8]} (Ada's enrollment.confirmed) twice more")
        after = wait("analytics to absorb the 2 copies", lambda: (
            s := self.admin.api.summary())["duplicates_absorbed"]
            >= before["duplicates_absorbed"] + 2 and s)
        # the notification worker has handled the copies too once its queue holds none
        wait("the notification worker to handle the copies", lambda: (
            q := self.queue("notifications")).visible + q.in_flight == 0)
        emails = [n for n in self.notifications(ada) if n["event_id"] == copy.event_id]
        if len(emails) != 1:
            raise DemoError(f"expected one email for event {copy.event_id}, found {len(emails)}")
        say(f"   analytics, as {self.admin} reads it: duplicates_absorbed "
            f"{before['duplicates_absorbed']} -> {after['duplicates_absorbed']}, "
            f"enrollment.confirmed counted {after['events_by_type']['enrollment.confirmed']} "
            "times in all (unchanged)")
        say("   notification, as Ada reads hers: still exactly one email for that event")

    def worker_pid(self) -> int | None:
        """The payment worker's pid from keep.py's pid file; None while it is restarting."""
        path = pidfile(self.settings.var_dir / "run", PAYMENT_WORKER)
        try:
            return int(path.read_text())
        except FileNotFoundError:
            return None

    def kill_payment_worker(self) -> int:
        """SIGKILL the real payment worker (not its supervisor), as the OOM killer would."""
        pid = wait(f"{PAYMENT_WORKER}.pid under {shown(self.settings.var_dir / 'run')}/",
                   self.worker_pid, timeout=30)
        # A pid file left by a stack that died could name a recycled pid: check before killing.
        command = subprocess.run(["ps", "-o", "command=", "-p", str(pid)], capture_output=True,
                                 text=True, check=False).stdout
        if "shared.serve worker payment" not in command:
            raise DemoError(f"pid {pid} is not the payment worker ({command.strip() or 'gone'}):"
                            " is `make up` running with this SCHOOL_VAR_DIR?")
        os.kill(pid, signal.SIGKILL)
        say(f"   $ kill -KILL {pid}   (the payment worker, from var/run/{PAYMENT_WORKER}.pid)")
        return pid

    def backlog(self, count: int, killed: int) -> QueueState:
        """payment-requests.fifo once the `count` requests have reached it (or the worker is
        back before that)."""
        def seen() -> QueueState | None:
            q = self.queue(PAYMENT_QUEUE.name)
            back = self.worker_pid() not in (None, killed)
            return q if q.visible + q.in_flight >= count or back else None
        state: QueueState = wait("the requests to reach payment-requests.fifo", seen)
        return state

    def crash(self, course: dict[str, Any]) -> None:
        step("A crash: the payment worker is killed while payment requests wait")
        killed = self.kill_payment_worker()
        started = time.monotonic()
        late = [self.student(n) for n in ("Fay", "Gus", "Hal")]
        mine = [(student, self.enroll(student, course, "tok_ok")) for student in late]
        q = self.backlog(len(mine), killed)
        say(f"   payment-requests.fifo: {q.visible} visible, {q.in_flight} in flight")
        if q.in_flight:
            # SQS answers a long poll that is still open even if its caller has died; those
            # messages come back when their visibility timeout ends (at-least-once delivery).
            say(f"   the killed worker's last long poll was still open, so SQS handed it "
                f"{q.in_flight} request(s): they come back when their "
                f"{PAYMENT_QUEUE.visibility_timeout} s visibility timeout ends, like any "
                "message whose consumer died")
        pid = wait("the payment worker's supervisor to restart it", lambda: (
            p := self.worker_pid()) not in (None, killed) and p, timeout=60)
        restarted = time.monotonic()
        pending = sum(s.api.enrollment(e)["status"] == "pending_payment" for s, e in mine)
        say(f"   keep.py restarted the payment worker {restarted - started:.1f} s after the kill "
            f"(pid {pid}; the terminal of `make up` says why and when); {pending} of "
            f"{len(mine)} enrollments still pending_payment")
        names = ", ".join(s.name for s in late)
        wait(f"{names} to be active", lambda: all(
            s.api.enrollment(e)["status"] == "active" for s, e in mine),
            timeout=PAYMENT_QUEUE.visibility_timeout + 90, every=15)
        charges = [p["status"] for s, e in mine for p in s.api.payments(e)]
        if charges != ["succeeded"] * len(mine):
            raise DemoError(f"expected one successful payment per enrollment, got {charges}")
        say(f"   {names}: active; the backlog drained "
            f"{time.monotonic() - restarted:.1f} s after the restart, one payment each")

    def summary(self) -> None:
        step("Summary")
        say("   each student reads their own enrollment, payment and emails:")
        say(f"   {'student':<8} {'how':<24} {'enrollment':<16} {'payment':<10} emails")
        for row in self.rows:
            student: Person = row["student"]
            enrollment = student.api.enrollment(row["enrollment"])
            payments = student.api.payments(row["enrollment"])
            payment = payments[0]["status"] if payments else "-"
            emails = sum(n["status"] == "sent" for n in self.notifications(student))
            say(f"   {student.name:<8} {row['what']:<24} {enrollment['status']:<16} "
                f"{payment:<10} {emails}")
        s = self.admin.api.summary()
        revenue = ", ".join(f"{c} {v / 100:.2f}" for c, v in
                            s["revenue_cents_by_currency"].items())
        average = "-" if s["average_score"] is None else f"{s['average_score']:.1f}"
        say(f"\n   analytics, as {self.admin} reads it (every run so far): "
            f"{s['events_processed']} events, "
            f"{s['duplicates_absorbed']} duplicates absorbed, net revenue {revenue}, "
            f"average score {average}")
        for event_type, count in s["events_by_type"].items():
            say(f"     {event_type:<22} {count}")


def main() -> int:
    try:
        Demo().run()
    except Unreachable as exc:
        print(f"\ndemo: {exc}: is `make up` running?", file=sys.stderr)
        return 1
    except (DemoError, ProblemError) as exc:
        print(f"\ndemo: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
