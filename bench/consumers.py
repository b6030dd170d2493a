"""Part 2, each consumer's rate with real worker processes (`python -m shared.serve worker
<service>`, as `make up` runs them): preload the queue with valid events, start the workers and
time from the first to the last handled message by the service's own inbox timestamps, so the
process start-up is not counted. The queue and its DLQ must end empty, or the figure is void."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, Table, func, select

from bench.report import Results
from bench.session import Bench, BenchError, done, progress, say, until
from shared import db
from shared.envelope import Envelope
from shared.events import CATALOGUE
from shared.service import declaration
from shared.topology import physical

# (envelope, MessageGroupId or None) for each message, made after the databases are migrated.
Loader = Callable[[Engine], list[tuple[Envelope, str | None]]]


@dataclass(frozen=True)
class Case:
    key: str
    label: str
    service: str
    queue: str
    load: Loader
    processes: int = 1
    databases: tuple[str, ...] = field(default=())  # besides the service's own
    env: tuple[tuple[str, str], ...] = ()  # further environment of the workers

    @property
    def inbox(self) -> Table:
        table = declaration(self.service).inbox
        assert table is not None  # a service with a queue has an inbox (Service.check)
        return table


@dataclass
class Run:
    """One case on the bench: its SCHOOL_ENV, databases and worker processes."""

    bench: Bench
    case: Case
    school_env: str = ""
    urls: dict[str, str] = field(default_factory=dict)
    engine: Engine | None = None

    def measure(self) -> float:
        self.school_env = self.bench.name(self.case.service)[:20]
        report = self.bench.provision(self.school_env)
        ref = report.queues[self.case.queue]
        workers = []
        try:
            messages = self._prepare()
            self._send(ref.url, messages)
            env = self.bench.process_env(self.school_env, extra={
                f"{name.upper()}_DATABASE_URL": url for name, url in self.urls.items()}
                | dict(self.case.env))
            workers = [self.bench.spawn(f"{self.school_env}-w{i}",
                                        ["-m", "shared.serve", "worker", self.case.service], env)
                       for i in range(self.case.processes)]
            self._wait_handled(len(messages), workers)
            self._wait_empty(ref.url, ref.dlq_url)
            return self._rate(len(messages))
        finally:
            # The figure is taken and the queue is empty: nothing is in flight, so the workers
            # need not sit out their 20 s long poll before they stop.
            Bench.stop_processes(workers, timeout=3)
            if self.engine is not None:
                self.engine.dispose()
            Bench.drop(list(self.urls.values()))
            self.bench.unprovision(self.school_env)

    def _prepare(self) -> list[tuple[Envelope, str | None]]:
        for name in (self.case.service, *self.case.databases):
            self.urls[name] = self.bench.database_url(f"{self.school_env}-{name}")
        db.migrate(self.case.service, self.urls[self.case.service])
        self.engine = db.make_engine(self.urls[self.case.service])
        return self.case.load(self.engine)

    def _send(self, url: str, messages: list[tuple[Envelope, str | None]]) -> None:
        sqs = self.bench.client("sqs")
        progress(f"{self.case.label}: sending {len(messages)} messages")
        for start in range(0, len(messages), 10):
            entries = []
            for i, (event, group) in enumerate(messages[start:start + 10]):
                entry: dict[str, Any] = {"Id": str(i), "MessageBody": event.body(),
                                         "MessageAttributes": event.attributes()}
                if group is not None:
                    entry |= {"MessageGroupId": group, "MessageDeduplicationId": event.event_id}
                entries.append(entry)
            reply = sqs.send_message_batch(QueueUrl=url, Entries=entries)
            if reply.get("Failed"):
                raise BenchError(f"SendMessageBatch refused entries: {reply['Failed'][:2]}")

    def handled(self) -> int:
        assert self.engine is not None
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(self.case.inbox)
                                    ).scalar_one())

    def _wait_handled(self, total: int, workers: list[Any]) -> None:
        def check() -> bool:
            for w in workers:
                if w.poll() is not None:
                    raise BenchError(f"a {self.case.service} worker exited with {w.returncode} "
                                     f"(log: {self.bench.log_dir})")
            count = self.handled()
            progress(f"{self.case.label}: {count}/{total} handled")
            return count >= total

        until(check, 120 + total / 5, f"{self.case.label}: {total} messages handled", every=0.25)

    def _wait_empty(self, url: str, dlq_url: str) -> None:
        sqs = self.bench.client("sqs")
        # The last deletes follow the last commit by a few milliseconds: poll, briefly.
        until(lambda: self.bench.depth(sqs, url) == 0, 30,
              f"{physical(self.school_env, self.case.queue)} empty (visible + in flight)")
        if dead := self.bench.depth(sqs, dlq_url):
            raise BenchError(f"{dead} messages in the DLQ of {self.case.queue}: the figure is void")

    def _rate(self, total: int) -> float:
        assert self.engine is not None
        inbox = self.case.inbox
        with self.engine.connect() as conn:
            first, last, count = conn.execute(select(
                func.min(inbox.c.handled_at), func.max(inbox.c.handled_at), func.count())).one()
        if count != total:
            raise BenchError(f"{count} inbox rows for {total} messages: duplicates or losses")
        rate = (total - 1) / max((last - first).total_seconds(), 1e-6)
        done(f"{self.case.label}: {total} messages, {rate:,.1f} msgs/s "
             f"({(last - first).total_seconds():.1f} s first to last)")
        return float(rate)


def any_events(count: int) -> Loader:
    """Analytics counts every event type: a mix of three, so its counters are not one hot row
    (a batch touching several rows in any order is what can deadlock on PostgreSQL)."""
    def one(i: int) -> Envelope:
        ids = {"student_id": f"s{i}", "course_id": f"c{i}", "enrollment_id": f"e{i}"}
        if i % 3 == 0:
            return CATALOGUE.new("course.created", {
                "course_id": ids["course_id"], "title": "Benchmarking", "price_cents": 4990,
                "currency": "USD", "capacity": 30}, correlation_id="bench")
        if i % 3 == 1:
            return CATALOGUE.new("student.registered", {"student_id": ids["student_id"]},
                                 correlation_id="bench")
        return CATALOGUE.new("enrollment.confirmed", ids, correlation_id="bench")

    def load(_engine: Engine) -> list[tuple[Envelope, str | None]]:
        return [(one(i), None) for i in range(count)]
    return load


def charge_requests(count: int, groups: int | None) -> Loader:
    """charge.requested (tok_ok) over `groups` students, or one new student per message."""
    def load(_engine: Engine) -> list[tuple[Envelope, str | None]]:
        run = uuid.uuid4().hex[:8]
        out: list[tuple[Envelope, str | None]] = []
        for i in range(count):
            student = f"{run}-s{i % groups if groups else i}"
            event = CATALOGUE.new("charge.requested", {
                "enrollment_id": uuid.uuid4().hex, "student_id": student, "course_id": run,
                "amount_cents": 4990, "currency": "USD", "payment_token": "tok_ok"},
                correlation_id="bench")
            out.append((event, student))  # the topology groups payment requests by student
        return out
    return load


@dataclass(frozen=True)
class ConsumerOptions:
    analytics: int = 2000
    payment: int = 1000
    groups: int = 20


def cases(opts: ConsumerOptions, db_kind: str) -> list[tuple[Case, str]]:
    """Each case with the queue kind whose raw limits it is compared with."""
    other = "4" if db_kind == "sqlite" else "1"  # the default is 1 thread on SQLite, 4 on PG
    return [
        (Case("consumer.analytics", "analytics, standard queue", "analytics", "analytics",
              any_events(opts.analytics)), "standard"),
        (Case("consumer.analytics.threads", f"analytics, {other} handler thread(s), not the "
              "default", "analytics", "analytics", any_events(opts.analytics),
              env=(("SCHOOL_CONSUMER_CONCURRENCY", other),)), "standard"),
        (Case("consumer.payment.groups", f"payment, FIFO, {opts.groups} groups", "payment",
              "payment-requests.fifo", charge_requests(opts.payment, opts.groups),
              databases=("payment_gateway",)), "fifo"),
        (Case("consumer.payment.per_message", "payment, FIFO, one group per message",
              "payment", "payment-requests.fifo", charge_requests(opts.payment, None),
              databases=("payment_gateway",)), "fifo"),
    ]


def measure(bench: Bench, opts: ConsumerOptions, results: Results, run: int) -> None:
    say("consumers: one worker process each, rate from the first to the last handled message")
    for case, kind in cases(opts, bench.settings().db):
        started = time.monotonic()
        rate = Run(bench, case).measure()
        results.add("consumers", case.key, f"{case.label} (msgs/s)", "msgs/s", rate)
        for raw, name in (("batch", "raw ReceiveMessage(10) + DeleteMessageBatch"),
                          ("one", "raw receive-one/delete-one loop")):
            results.ratio("consumers", f"{case.key}.vs_{raw}", f"  ratio to {name}",
                          rate, results.run_value(f"raw.{kind}.{raw}", run))
        say(f"  {case.label} took {time.monotonic() - started:.0f} s in all")
