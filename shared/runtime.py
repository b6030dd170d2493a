"""One process's dependencies, built once in its factory and passed down (STYLE rule 3)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from functools import cached_property
from typing import Any

from sqlalchemy import Engine, Table, text
from sqlalchemy.orm import Session, sessionmaker

from shared import aws, db, telemetry
from shared.attempts import AttemptLedger
from shared.backoff import Backoff
from shared.consumer import Consumer, Reader
from shared.consumer_config import ConsumerConfig
from shared.events import CATALOGUE, Catalogue
from shared.handling import Dispatcher, Handler, Producer
from shared.inbox import Inbox
from shared.outbox import Outbox, Relay
from shared.provision import resolve
from shared.publisher import Publisher
from shared.settings import ConfigError, Settings
from shared.topology import TOPOLOGY, QueueSpec, Topology, physical

# How long a relay lets fewer than a batch of new rows wait for more: at most this much
# later one at a time, a tenth of the calls in a burst.
RELAY_LINGER = 0.05


@dataclass
class Runtime:
    service: str
    settings: Settings
    engine: Engine
    outbox_table: Table | None = None
    inbox_table: Table | None = None
    topology: Topology = TOPOLOGY
    catalogue: Catalogue = CATALOGUE
    resources: Any = None  # the service's own (its declaration's `resources`)
    _clients: dict[str, Any] = field(default_factory=dict)

    @cached_property
    def sessions(self) -> sessionmaker[Session]:
        """Sessions for reads, and for handlers (whose first statement is the inbox insert)."""
        return db.session_factory(self.engine)

    @cached_property
    def writer(self) -> sessionmaker[Session]:
        """Sessions for requests that read and then write (see db.writer)."""
        return db.session_factory(db.writer(self.engine))

    def ready_checks(self) -> dict[str, Callable[[], None]]:
        """For /readyz: the database answers, and every queue this service uses exists."""
        names = {q.name for q in self.topology.consumed_by(self.service)}
        for event_type in self.catalogue.produced_by(self.service):
            names |= {q.name for q in self.topology.direct_destinations(event_type)}

        def database() -> None:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))

        def queues() -> None:
            for name in sorted(names):
                self.client("sqs", 5).get_queue_url(
                    QueueName=physical(self.settings.school_env, name))

        return {"database": database, "queues": queues}

    def client(self, name: str, read_timeout: int | None = None) -> Any:
        key = f"{name}:{read_timeout}"
        if key not in self._clients:
            self._clients[key] = aws.client(name, self.settings, read_timeout)
        return self._clients[key]

    def _table(self, table: Table | None, name: str) -> Table:
        if table is None:
            raise ConfigError(f"{self.service} has no {name} table (shared.tables)")
        return table

    @cached_property
    def producer(self) -> Producer:
        return Producer(self.catalogue, Outbox(self._table(self.outbox_table, "outbox"),
                                               self.topology))

    def relay(self) -> Relay:
        outbox = self._table(self.outbox_table, "outbox")
        publisher = Publisher(self.client("sqs", 5), self.client("sns", 5), self.topology,
                              self.settings.school_env, sts=self.client("sts", 5))
        relay = Relay(self.engine, outbox, publisher, linger=RELAY_LINGER,
                      retention=timedelta(hours=self.settings.outbox_retention_hours))
        relay.wake_on_commit(self.sessions)
        telemetry.watch_outbox(relay)
        return relay

    def dispatcher(self, handlers: Mapping[str, Handler], **options: Any) -> Dispatcher:
        inbox = Inbox(self._table(self.inbox_table, "inbox"), self.service)
        producer = self.producer if self.outbox_table is not None else None
        options.setdefault("transaction_budget", self.transaction_budget())
        return Dispatcher(self.sessions, inbox, self.catalogue, handlers, producer=producer,
                          resources=self.resources, **options)

    def transaction_budget(self) -> float:
        """How long one transaction may take further events of a batch (for throughput). On SQLite
        0.1 s: its one writer cannot deadlock, and a batch then costs one commit. On PostgreSQL
        0, one event per transaction: two batches (threads, or worker tasks) that update the
        same rows in different orders deadlock, and the analytics counters did so at once."""
        return 0.1 if self.engine.dialect.name == "sqlite" else 0.0

    def consumer(self, reader: Reader, spec: QueueSpec | None = None) -> Consumer:
        """The consumer of this service's queue (the one the topology names it consumer of)."""
        spec = spec or self.topology.consumed_by(self.service)[0]
        url, dlq = resolve(self.client("sqs"), self.settings.school_env, spec)
        s = self.settings
        config = ConsumerConfig(spec.name, url, dlq, spec.visibility_timeout,
                                concurrency=self.handler_threads(),
                                shutdown_deadline=s.shutdown_deadline,
                                backoff=Backoff(s.backoff_base, s.backoff_cap),
                                max_attempts=spec.max_receive_count)
        return Consumer(self.client("sqs"), config, reader, self.attempts())

    def handler_threads(self) -> int:
        """SCHOOL_CONSUMER_CONCURRENCY, else by database: on SQLite one thread, since threads
        only queue on its single writer (measured, one thread handled more than four); on
        PostgreSQL four, whose transactions do run side by side."""
        if self.settings.consumer_concurrency:
            return self.settings.consumer_concurrency
        return 1 if self.engine.dialect.name == "sqlite" else 4

    def attempts(self) -> AttemptLedger:
        """The retry budget's ledger, a platform table beside the inbox (shared.tables)."""
        if self.inbox_table is None or "handler_attempts" not in self.inbox_table.metadata.tables:
            raise ConfigError(f"{self.service}'s tables need shared.tables.attempts_table")
        table = self.inbox_table.metadata.tables["handler_attempts"]
        return AttemptLedger(self.engine, table, self.service)
