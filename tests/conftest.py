"""Fixtures for the whole suite: one LocalStack per session (its own random SCHOOL_ENV), and a
fresh database per test on SQLite, or on PostgreSQL with DB=postgres."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import Engine

from deploy.local.localstack import free_port
from shared import db
from shared.provision import Provisioner, QueueRef, Report
from shared.settings import Settings


@pytest.fixture(scope="session")
def school_env() -> str:
    return "t" + uuid.uuid4().hex[:10]


@dataclass(frozen=True)
class LocalStack:
    endpoint: str
    pid: int | None  # None when it runs in a container


@pytest.fixture(scope="session")
def localstack_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """A LocalStack for this session: from pip (default) or a container (STACK=containers)."""
    if os.environ.get("STACK") == "containers":
        from tests.support.containers import localstack_container
        with localstack_container() as endpoint:
            yield LocalStack(endpoint, None)
        return
    from deploy.local import localstack
    endpoint = f"http://127.0.0.1:{free_port()}"
    state = tmp_path_factory.mktemp("localstack")
    proc = localstack.start(endpoint, state, state / "localstack.log")
    try:
        localstack.wait_healthy(endpoint, proc, timeout=120)
        yield LocalStack(endpoint, proc.pid)
    finally:
        localstack.stop_group(proc.pid)


@pytest.fixture(scope="session")
def localstack_endpoint(localstack_process: LocalStack) -> str:
    return localstack_process.endpoint


@pytest.fixture(scope="session")
def aws_env(localstack_endpoint: str, school_env: str) -> dict[str, str]:
    """The environment a process of this session needs to reach its LocalStack."""
    env = {"AWS_ENDPOINT_URL": localstack_endpoint, "AWS_ACCESS_KEY_ID": "test",
           "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1",
           "SCHOOL_ENV": school_env}
    os.environ.update(env)  # the tests' own clients and the processes they start
    return env


@pytest.fixture(scope="session")
def settings(aws_env: dict[str, str]) -> Settings:
    return Settings.from_env()


@pytest.fixture(scope="session")
def localstack_session(aws_env: dict[str, str]):
    """Clients for the session's LocalStack, through localstack-client (which reads the
    AWS_ENDPOINT_URL that aws_env set)."""
    from localstack_client.session import Session
    return Session(aws_access_key_id="test", aws_secret_access_key="test")


@pytest.fixture(scope="session")
def sqs(localstack_session):
    return localstack_session.client("sqs")


@pytest.fixture(scope="session")
def sns(localstack_session):
    return localstack_session.client("sns")


@pytest.fixture(scope="session")
def provisioned(sqs, sns, settings: Settings) -> Report:
    """The real topology, provisioned once for the session's SCHOOL_ENV."""
    return Provisioner(sqs, sns, settings.school_env).run()


@pytest.fixture(scope="session")
def db_kind() -> str:
    return os.environ.get("DB", "sqlite") or "sqlite"


@pytest.fixture
def database_url(db_kind: str, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database for one test, dropped afterwards."""
    name = f"school_test_{uuid.uuid4().hex[:12]}"
    if os.environ.get("STACK") == "containers" and db_kind == "postgres":
        from tests.support.containers import postgres_base_url
        url = f"{postgres_base_url()}/{name}"
    else:
        url = db.url_of(name, tmp_path / "test.sqlite", postgres=db_kind == "postgres")
    db.ensure_database(url)
    yield url
    db.drop_database(url)


@dataclass
class ProbeStack:
    """A probe topology provisioned for one test, and its own database."""

    env: str
    report: Report
    engine: Engine
    url: str

    def queue(self, name: str) -> QueueRef:
        return self.report.queues[name]


@pytest.fixture
def probe_stack(sqs, sns, settings: Settings, database_url: str
                ) -> Iterator[ProbeStack]:
    from tests.support import probe
    env = f"{settings.school_env}-{uuid.uuid4().hex[:6]}"
    report = Provisioner(sqs, sns, env, probe.topology(fifo_visibility=4, max_receives=4)).run()
    engine = db.make_engine(database_url)
    probe.metadata.create_all(engine)
    yield ProbeStack(env, report, engine, database_url)
    engine.dispose()


def service_stack(services, name, sqs, sns, settings, db_kind, tmp_path_factory, env=None
                  ):  # type: ignore[no-untyped-def]
    """Start services as real processes on a topology of their own (so their events never
    reach another test's queues); yields the stack and stops it afterwards."""
    from tests.support.stack import ServiceStack
    school_env = f"{settings.school_env}-{name}"
    stack = ServiceStack(services, tmp_path_factory.mktemp(name), db_kind)
    stack.report = Provisioner(sqs, sns, school_env).run()
    try:
        stack.start({"SCHOOL_ENV": school_env, "SCHOOL_BACKOFF_BASE": "2",
                     "SCHOOL_BACKOFF_CAP": "8", "SCHOOL_RELAY_INTERVAL": "0.05", **(env or {})})
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="module")
def saga_stack(sqs, sns, settings, db_kind, tmp_path_factory):  # type: ignore[no-untyped-def]
    """The enrollment and payment services (module scope: started once)."""
    yield from service_stack(("enrollment", "payment"), "saga", sqs, sns, settings, db_kind,
                             tmp_path_factory, {"SCHOOL_BACKOFF_BASE": "1",
                                                "SCHOOL_BACKOFF_CAP": "4"})


@pytest.fixture(scope="module")
def assignment_stack(sqs, sns, settings, db_kind, tmp_path_factory):  # type: ignore[no-untyped-def]
    """The assignment service (module scope: started once)."""
    yield from service_stack(("assignment",), "asg", sqs, sns, settings, db_kind,
                             tmp_path_factory)


@pytest.fixture(scope="module")
def mailbox(tmp_path_factory):  # type: ignore[no-untyped-def]
    """The SMTP sink as a process of its own, on a free port (module scope)."""
    from deploy.local.localstack import free_port
    from tests.support.mailbox import Mailbox
    box = Mailbox(tmp_path_factory.mktemp("mail"), free_port())
    box.start()
    yield box
    box.stop()


@pytest.fixture(scope="module")
def school_stack(sqs, sns, settings, db_kind, tmp_path_factory, mailbox
                 ):  # type: ignore[no-untyped-def]
    """All five services and the SMTP sink (module scope: started once per module)."""
    from shared.settings import SERVICES
    name = "all" + uuid.uuid4().hex[:3]  # every module its own topology
    yield from service_stack(SERVICES, name, sqs, sns, settings, db_kind, tmp_path_factory,
                             {"SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(mailbox.port),
                              "SCHOOL_BACKOFF_BASE": "1", "SCHOOL_BACKOFF_CAP": "4"})


@pytest.fixture(scope="session")
def issuer_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The development identity issuer as a process of its own, on a free port, with a key of
    its own (session scope): its URL, which is also the `iss` of what it mints."""
    import signal

    from deploy.local import issuer
    folder = tmp_path_factory.mktemp("issuer")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = issuer.start(port, folder, folder / "issuer.log")
    try:
        issuer.wait_ready(url, proc, log_path=folder / "issuer.log")
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)


@pytest.fixture(scope="session")
def _tracer_provider():  # type: ignore[no-untyped-def]
    """The OpenTelemetry SDK with an in-memory exporter, for this test process: a provider can
    be set only once per process, so every test that looks at spans shares it."""
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return exporter


@pytest.fixture
def finished_spans(_tracer_provider):  # type: ignore[no-untyped-def]
    """The spans this test ends (the exporter is emptied before it)."""
    _tracer_provider.clear()
    return _tracer_provider

