"""A probe consumer for the runtime's tests: real queues, a real database, a test event type.

`probe.ping` v1 data: group, n (position in its group), sleep (seconds), fail_times (transient
failures before success, counted in process), permanent (raise PermanentError).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from marshmallow import Schema, fields
from sqlalchemy import Column, DateTime, Engine, Integer, MetaData, String, Table, insert, select

from shared.attempts import AttemptLedger
from shared.backoff import Backoff
from shared.consumer import Consumer
from shared.consumer_config import ConsumerConfig
from shared.events import Catalogue
from shared.handling import Context, Dispatcher, PermanentError
from shared.inbox import Inbox
from shared.tables import attempts_table, inbox_table, outbox_table
from shared.topology import QueueSpec, TopicSpec, Topology

metadata = MetaData()
outbox = outbox_table(metadata)
inbox = inbox_table(metadata)
attempts = attempts_table(metadata)
effects = Table(
    "probe_effects", metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("event_id", String(64), nullable=False),
    Column("grp", String(50), nullable=False),
    Column("n", Integer, nullable=False),
    Column("handled_at", DateTime(timezone=True), nullable=False),
)

PingSchema = Schema.from_dict({
    "group": fields.String(required=True), "n": fields.Integer(required=True),
    "sleep": fields.Float(load_default=0), "fail_times": fields.Integer(load_default=0),
    "permanent": fields.Boolean(load_default=False),
}, name="PingV1")


def catalogue() -> Catalogue:
    cat = Catalogue()
    cat.register("probe.ping", 1, PingSchema, "probe")
    return cat


def topology(fifo_visibility: int = 30, max_receives: int = 5) -> Topology:
    """A small topology of the same kinds as the real one, for the runtime's tests."""
    return Topology(
        topic=TopicSpec("probe-events"),
        queues=(
            QueueSpec("probe-all", "probe", max_receives, 30, subscribed=True),
            QueueSpec("probe.fifo", "probe", max_receives, fifo_visibility,
                      events=("probe.ping",), group_by=("group",)),
        ),
    )


@dataclass
class Probe:
    """The handler: records each attempt and applies the behaviour the event asks for."""

    attempts: Counter[str] = field(default_factory=Counter)
    attempt_times: dict[str, list[float]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, ctx: Context) -> None:
        data, event_id = ctx.event.data, ctx.event.event_id
        with self.lock:
            self.attempts[event_id] += 1
            attempt = self.attempts[event_id]
            self.attempt_times.setdefault(event_id, []).append(time.monotonic())
        if data.get("permanent"):
            raise PermanentError("the probe was asked to fail permanently")
        if attempt <= data.get("fail_times", 0):
            raise ConnectionError(f"transient failure {attempt} of {data['fail_times']}")
        time.sleep(data.get("sleep", 0))
        ctx.session.execute(insert(effects).values(event_id=event_id, grp=data["group"],
                                                   n=data["n"], handled_at=datetime.now(UTC)))


def dispatcher(sessions: Any, probe: Probe) -> Dispatcher:
    return Dispatcher(sessions, Inbox(inbox, "probe"), catalogue(), {"probe.ping": probe})


def consumer(sqs: Any, queue_name: str, url: str, dlq_url: str, visibility: int,
             reader: Any, engine: Engine, **options: Any) -> Consumer:
    options.setdefault("wait_seconds", 1)
    options.setdefault("backoff", Backoff(base=1, cap=8, jitter=lambda: 1.0))
    return Consumer(sqs, ConsumerConfig(queue_name, url, dlq_url, visibility, **options), reader,
                    AttemptLedger(engine, attempts, "probe"))


def handled(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(select(effects).order_by(effects.c.seq)))
