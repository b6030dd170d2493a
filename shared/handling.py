"""From a message body to an effect: read the event, claim it in the inbox, run its handler."""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from shared.envelope import Envelope, PoisonMessage
from shared.events import Catalogue
from shared.inbox import Inbox
from shared.outbox import Outbox


class Outcome(enum.StrEnum):
    HANDLED = "handled"
    DUPLICATE = "duplicate"
    RETRY = "retry"
    DEAD_LETTERED = "dead_lettered"
    RELEASED = "released"


class PermanentError(Exception):
    """Raised by a handler for a failure no retry can fix: the message is dead-lettered at once."""


@dataclass
class Context:
    """What a handler gets: the event, the open transaction, and a way to emit new events."""

    event: Envelope
    session: Session
    producer: Producer | None

    def emit(self, event_type: str, data: dict[str, Any]) -> Envelope:
        """Emit an event caused by this one, in this transaction (correlation id carried on)."""
        if self.producer is None:
            raise RuntimeError("this consumer has no outbox to emit through")
        return self.producer.emit(self.session, event_type, data,
                                  correlation_id=self.event.correlation_id,
                                  causation_id=self.event.event_id)


Handler = Callable[[Context], None]


@dataclass(frozen=True)
class Producer:
    """Builds events from the catalogue and writes them to the outbox of the caller's session."""

    catalogue: Catalogue
    outbox: Outbox

    def emit(self, session: Session, event_type: str, data: dict[str, Any], *,
             correlation_id: str, causation_id: str | None = None) -> Envelope:
        envelope = self.catalogue.new(event_type, data, correlation_id=correlation_id,
                                      causation_id=causation_id)
        self.outbox.add(session, envelope)
        return envelope


@dataclass(frozen=True)
class Dispatcher:
    """Handles one message body in one transaction: inbox row first, then the effects."""

    sessions: sessionmaker[Session]
    inbox: Inbox
    catalogue: Catalogue
    handlers: Mapping[str, Handler]
    producer: Producer | None = None
    fallback: Handler | None = None  # for a consumer of every event type (analytics)
    on_duplicate: Handler | None = None  # runs in its own transaction, e.g. to count duplicates

    def read(self, body: str) -> Envelope:
        envelope = self.catalogue.read(body)
        if envelope.event_type not in self.handlers and self.fallback is None:
            raise PoisonMessage("unhandled_event_type",
                                f"{self.inbox.consumer} has no handler for {envelope.event_type}")
        return envelope

    def __call__(self, envelope: Envelope) -> Outcome:
        handler = self.handlers.get(envelope.event_type, self.fallback)
        assert handler is not None  # read() refused the event otherwise
        with self.sessions() as session, session.begin():
            if not self.inbox.claim(session, envelope):
                if self.on_duplicate is not None:
                    self.on_duplicate(Context(envelope, session, self.producer))
                return Outcome.DUPLICATE
            handler(Context(envelope, session, self.producer))
        return Outcome.HANDLED
