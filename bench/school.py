"""The whole school for parts 3 to 5: every API and worker (deploy/local/chaos's Stack) on the
bench's LocalStack, with AWS_ENDPOINT_URL pointing at the counting proxy; and the harness's own
view of it (inbox rows, outboxes, queue depths, read directly, so they are never counted)."""

from __future__ import annotations

import contextlib
import sys
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from sqlalchemy import Engine, func, select

from bench.proxy import CountingProxy
from bench.session import Bench, BenchError, progress, say, until
from deploy.local.chaos.client import Api
from deploy.local.chaos.config import ChaosConfig
from deploy.local.chaos.stack import Stack
from shared import db
from shared.service import declaration
from shared.settings import SERVICES
from shared.topology import TOPOLOGY, physical

# The inbox rows one tok_ok enrollment leaves: payment handles charge.requested, enrollment
# handles payment.succeeded, notification enrollment.confirmed, analytics all three.
PER_ENROLLMENT = {"payment": 1, "enrollment": 1, "notification": 1, "analytics": 3}


@dataclass(frozen=True)
class BenchConfig(ChaosConfig):
    @property
    def school_env(self) -> str:
        return f"bench-{self.run_id}"

    @property
    def db_prefix(self) -> str:
        return f"bench_{self.run_id}_"


@dataclass
class ProxiedStack(Stack):
    """The chaos run's Stack, on a LocalStack that is already running, behind the proxy."""

    proxy_url: str = ""

    def _environment(self) -> None:
        super()._environment()
        self.endpoint = self.proxy_url
        self.env["AWS_ENDPOINT_URL"] = self.proxy_url

    def _start_localstack(self) -> None:
        pass  # the bench's own LocalStack serves every part of the run


@dataclass
class School:
    bench: Bench
    stack: ProxiedStack
    proxy: CountingProxy
    api: Api
    engines: dict[str, Engine] = field(default_factory=dict)
    queue_urls: list[str] = field(default_factory=list)
    dlq_urls: list[str] = field(default_factory=list)
    students: list[str] = field(default_factory=list)

    @property
    def env(self) -> str:
        return self.stack.config.school_env

    def inbox(self) -> Counter[str]:
        counts: Counter[str] = Counter()
        for service in SERVICES:
            table = declaration(service).inbox
            assert table is not None  # every service consumes a queue
            with self.engines[service].connect() as conn:
                counts[service] = int(conn.execute(select(func.count()).select_from(table)
                                                   ).scalar_one())
        return counts

    def outbox_pending(self) -> int:
        pending = 0
        for service in SERVICES:
            table = declaration(service).outbox
            if table is None:
                continue
            with self.engines[service].connect() as conn:
                pending += int(conn.execute(select(func.count()).select_from(table).where(
                    table.c.published_at.is_(None))).scalar_one())
        return pending

    def active(self, ids: list[str]) -> int:
        from services.enrollment.tables import enrollments
        active = 0
        with self.engines["enrollment"].connect() as conn:
            for start in range(0, len(ids), 500):
                active += int(conn.execute(select(func.count()).select_from(enrollments).where(
                    enrollments.c.id.in_(ids[start:start + 500]),
                    enrollments.c.status == "active")).scalar_one())
        return active

    def queued(self) -> int:
        sqs = self.bench.client("sqs")  # straight to LocalStack: the harness is not counted
        if dead := sum(self.bench.depth(sqs, url) for url in self.dlq_urls):
            raise BenchError(f"{dead} messages in the dead-letter queues: the run is void")
        return sum(self.bench.depth(sqs, url) for url in self.queue_urls)

    def settle(self, target: Counter[str], ids: list[str], what: str, timeout: float = 300
               ) -> Counter[str]:
        """Wait until the enrollments are active, every service has recorded `target` inbox
        rows, every outbox is published and every queue is empty; the inbox counts then."""
        def check() -> Counter[str] | None:
            self.alive()
            inbox = self.inbox()
            short = sum(max(0, target[s] - inbox[s]) for s in SERVICES)
            active = self.active(ids) if ids else 0
            if short or active < len(ids):
                progress(f"{what}: {active}/{len(ids)} active, {short} deliveries to go")
                return None
            # Only then ask LocalStack (10 queues): polling it harder would slow what it serves.
            pending, queued = self.outbox_pending(), self.queued()
            progress(f"{what}: {pending} outbox rows to publish, {queued} messages queued")
            return None if pending or queued else inbox

        settled = until(check, timeout, f"{what} settled", every=0.2)
        progress(f"{what}: settled")
        assert settled is not None  # `until` returns only a truthy result
        return settled

    def alive(self) -> None:
        """Every API and worker still runs: the bench stops none of them while it measures."""
        for name, proc in self.stack.procs.items():
            if proc.poll() is not None:
                raise BenchError(f"{name} exited with {proc.returncode} during the run, and the "
                                 f"bench did not stop it (log: {self.stack.folder / 'log'})")

    def course(self, seats: int) -> str:
        """A new course (analytics counts its course.created), settled before it is used."""
        before = self.inbox()
        course_id = str(self.api.create_course("Benchmarking", seats, 4990)["id"])
        self.settle(before + Counter({"analytics": 1}), [], "a new course")
        return course_id

    def enroll(self, student: str, course: str) -> str:
        return str(self.api.enroll(student, course)["id"])

    def register(self, count: int) -> None:
        """The students every part enrolls (notification keeps a contact of each)."""
        before = self.inbox()
        with ThreadPoolExecutor(4) as pool:
            self.students = list(pool.map(lambda _: str(self.api.new_student("Bench")["id"]),
                                          range(count)))
        self.settle(before + Counter({"analytics": count, "notification": count}), [],
                    f"{count} students registered")


@contextlib.contextmanager
def running(bench: Bench, students: int) -> Iterator[School]:
    """The whole school behind the proxy; stopped (databases dropped) on the way out."""
    proxy = CountingProxy(bench.endpoint)
    config = BenchConfig(db=bench.db, run_dir=bench.folder / "stack")
    stack = ProxiedStack(config, proxy_url=proxy.start())
    say(f"starting the whole school (5 APIs, 5 workers) with AWS_ENDPOINT_URL = the counting "
        f"proxy {stack.proxy_url} in front of {bench.endpoint}")
    school: School | None = None
    try:
        with contextlib.redirect_stdout(sys.stderr):
            stack.start()
        api = Api(stack.urls)
        api.token = stack.admin_token()
        school = School(bench, stack, proxy, api)
        school.engines = {s: db.make_engine(stack.databases[s]) for s in SERVICES}
        sqs = bench.client("sqs")
        for spec in TOPOLOGY.queues:
            school.queue_urls.append(sqs.get_queue_url(
                QueueName=physical(school.env, spec.name))["QueueUrl"])
            school.dlq_urls.append(sqs.get_queue_url(
                QueueName=physical(school.env, spec.dlq_name))["QueueUrl"])
        school.register(students)
        yield school
    finally:
        if school is not None:
            for engine in school.engines.values():
                engine.dispose()
        with contextlib.redirect_stdout(sys.stderr):
            stack.stop()
        proxy.stop()
        bench.unprovision(config.school_env)
