"""Fakes for the fast unit tests of the services' rules (tests/unit/services): no LocalStack, no
SMTP server, no files. A producer that records what it would write to the outbox, a payment
gateway and a mailer that do what a test tells them, and an in-memory SQLite database per test.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

from sqlalchemy import Engine, MetaData, create_engine
from sqlalchemy.orm import Session
from sqlalchemy.pool import StaticPool

from services.payment.gateway import GatewayUnavailable, Result
from shared import db
from shared.envelope import Envelope
from shared.events import CATALOGUE
from shared.handling import Context
from shared.service import Service


def memory_engine(metadata: MetaData) -> Engine:
    """A fresh in-memory SQLite database holding `metadata`'s tables (one connection, shared
    by every session of the test)."""
    engine = create_engine("sqlite://", poolclass=StaticPool,
                           connect_args={"check_same_thread": False})
    metadata.create_all(engine)
    return engine


@contextmanager
def transaction(engine: Engine) -> Iterator[Session]:
    """One transaction, as the API or the worker opens it: committed at the end, rolled back
    if the block raises."""
    with db.session_factory(engine).begin() as session:
        yield session


class FakeProducer:
    """shared.handling.Producer without an outbox: each event is built from the catalogue (so
    data that breaks its schema fails the test, as it would fail the request) and recorded."""

    catalogue = CATALOGUE

    def __init__(self) -> None:
        self.emitted: list[Envelope] = []

    def emit(self, session: Session, event_type: str, data: dict[str, Any], *,
             correlation_id: str, causation_id: str | None = None,
             actor: str | None = None) -> Envelope:
        envelope = CATALOGUE.new(event_type, data, correlation_id=correlation_id,
                                 causation_id=causation_id, actor=actor)
        self.emitted.append(envelope)
        return envelope

    @property
    def types(self) -> list[str]:
        return [envelope.event_type for envelope in self.emitted]

    def only(self, event_type: str) -> Envelope:
        """The one event of this type that was emitted (fails if there are none or several)."""
        found = [envelope for envelope in self.emitted if envelope.event_type == event_type]
        assert len(found) == 1, f"expected one {event_type}, emitted {self.types}"
        return found[0]


@dataclass
class FakeGateway:
    """The payment gateway's interface (services.payment.gateway.SimulatedGateway): each call
    gets `result`, or raises GatewayUnavailable while `unavailable` is set; calls are recorded."""

    result: Result = field(default_factory=lambda: Result("succeeded"))
    unavailable: bool = False
    calls: list[tuple[str, str, str | None, int]] = field(default_factory=list)

    def charge(self, key: str, token: str, amount_cents: int) -> Result:
        return self._call("charge", key, token, amount_cents)

    def refund(self, key: str, amount_cents: int) -> Result:
        return self._call("refund", key, None, amount_cents)

    def attempts(self, *keys: str) -> int:
        return sum(1 for _, key, _, _ in self.calls if key in keys)

    def _call(self, operation: str, key: str, token: str | None, amount_cents: int) -> Result:
        self.calls.append((operation, key, token, amount_cents))
        if self.unavailable:
            raise GatewayUnavailable(f"gateway unavailable for {operation} {key}")
        return self.result


@dataclass
class FakeMailer:
    """A mailer (anything with `send(message)`) that keeps the messages, or raises `failure`."""

    failure: Exception | None = None
    sent: list[EmailMessage] = field(default_factory=list)

    def send(self, message: EmailMessage) -> None:
        if self.failure is not None:
            raise self.failure
        self.sent.append(message)


def event(event_type: str, data: dict[str, Any], correlation_id: str = "corr-1") -> Envelope:
    """An incoming event of the catalogue's newest version."""
    return CATALOGUE.new(event_type, data, correlation_id=correlation_id)


def handle(service: Service, engine: Engine, envelope: Envelope, producer: FakeProducer | None,
           resources: Any = None) -> None:
    """Run the declared handler of the event in one transaction, as the worker would (without
    the inbox)."""
    with transaction(engine) as session:
        service.consumes[envelope.event_type](Context(envelope, session, producer, resources))
