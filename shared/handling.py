"""From a message body to an effect: read the event, claim it in the inbox, run its handler."""

from __future__ import annotations

import enum
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy.orm import Session, sessionmaker

from shared import telemetry
from shared.envelope import DeadLetterReason, Envelope, PoisonMessage
from shared.events import Catalogue
from shared.inbox import Inbox
from shared.logs import bound
from shared.outbox import Outbox

if TYPE_CHECKING:
    from opentelemetry.trace import Span


class Outcome(enum.StrEnum):
    HANDLED = "handled"
    DUPLICATE = "duplicate"
    RETRY = "retry"
    DEAD_LETTERED = "dead_lettered"
    RELEASED = "released"


class PermanentError(Exception):
    """Raised by a handler for a failure no retry can fix: the message is dead-lettered at once."""


class Emitter(Protocol):
    """What handlers and commands need of a producer: `emit`, as Producer does it (the unit
    tests' FakeProducer records the events instead)."""

    def emit(self, session: Session, event_type: str, data: dict[str, Any], *,
             correlation_id: str, causation_id: str | None = None,
             actor: str | None = None) -> Envelope: ...


@dataclass
class Context:
    """What a handler gets: the event, the open transaction, a way to emit new events, and the
    service's own resources (its declaration's `resources`, e.g. the payment gateway)."""

    event: Envelope
    session: Session
    producer: Emitter | None
    resources: Any = None

    def emit(self, event_type: str, data: dict[str, Any]) -> Envelope:
        """Emit an event caused by this one, in this transaction (correlation id carried on)."""
        if self.producer is None:
            raise RuntimeError("this consumer has no outbox to emit through")
        return self.producer.emit(self.session, event_type, data,
                                  correlation_id=self.event.correlation_id,
                                  causation_id=self.event.event_id, actor=self.event.actor)


Handler = Callable[[Context], None]


@dataclass(frozen=True)
class Producer:
    """Builds events from the catalogue and writes them to the outbox of the caller's session."""

    catalogue: Catalogue
    outbox: Outbox
    actor: str | None = None  # the `sub` of the request its events are caused by

    def acting_for(self, actor: str | None) -> Producer:
        """This producer, naming `actor` in every event it emits (a request's caller)."""
        return replace(self, actor=actor)

    def emit(self, session: Session, event_type: str, data: dict[str, Any], *,
             correlation_id: str, causation_id: str | None = None,
             actor: str | None = None) -> Envelope:
        envelope = self.catalogue.new(event_type, data, correlation_id=correlation_id,
                                      causation_id=causation_id, actor=actor or self.actor)
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
    on_duplicate: Handler | None = None  # runs in the event's savepoint, e.g. to count duplicates
    # Seconds a batch's transaction may keep taking events; 0: one event per transaction.
    transaction_budget: float = 0.1
    resources: Any = None  # handed to every handler as ctx.resources

    def read(self, body: str) -> Envelope:
        envelope = self.catalogue.read(body, self.handlers)
        if envelope.event_type not in self.handlers:
            raise PoisonMessage(DeadLetterReason.UNHANDLED_EVENT_TYPE,
                                f"{self.inbox.consumer} has no handler for {envelope.event_type}")
        return envelope

    def __call__(self, envelope: Envelope) -> Outcome:
        with self.sessions() as session, session.begin():
            return self._apply(session, envelope)

    def handle_batch(self, envelopes: Sequence[Envelope], keys: Sequence[str | None],
                     go_on: Callable[[], bool], spans: Sequence[Span | None] | None = None
                     ) -> list[Outcome | Exception | None]:
        """Handle several events in few transactions, each event in a savepoint of its own,
        for throughput: a transaction takes events until it has run `transaction_budget` seconds,
        so a batch of quick events costs one commit and a slow one holds no lock for long.

        Each event's result is its outcome, or the exception that rolled it back alone (or the
        failed commit of its transaction), or None if it was not run: after a failure, the
        later events of the same key (a FIFO group) are not run, nor is anything once `go_on()`
        turns false. It raises nothing an event or a commit raised. Each event runs under its
        span of `spans`, if given (its `process` span: what it emits is traced under it)."""
        results: list[Outcome | Exception | None] = [None] * len(envelopes)
        spans = spans or [None] * len(envelopes)
        failed: set[str] = set()
        if self.transaction_budget <= 0:  # one event per transaction: no savepoint needed
            for index, (envelope, key) in enumerate(zip(envelopes, keys, strict=True)):
                if not go_on():
                    break
                if key is None or key not in failed:
                    results[index] = self._alone(envelope, spans[index])
                    if isinstance(results[index], Exception) and key is not None:
                        failed.add(key)
            return results
        position = 0
        while position < len(envelopes) and go_on():
            position = self._transaction(envelopes, keys, go_on, results, failed, position,
                                         spans)
        return results

    def _transaction(self, envelopes: Sequence[Envelope], keys: Sequence[str | None],
                     go_on: Callable[[], bool], results: list[Outcome | Exception | None],
                     failed: set[str], start: int, spans: Sequence[Span | None]) -> int:
        """One transaction from `start`; returns the position of the first event it left."""
        began, position, ran = time.monotonic(), start, []
        try:
            with self.sessions() as session, session.begin():
                while position < len(envelopes) and go_on() and (
                        position == start or time.monotonic() - began < self.transaction_budget):
                    envelope, key = envelopes[position], keys[position]
                    position += 1
                    if key is not None and key in failed:
                        continue
                    ran.append(position - 1)
                    results[position - 1] = self._savepoint(session, envelope,
                                                            spans[position - 1])
                    if isinstance(results[position - 1], Exception) and key is not None:
                        failed.add(key)
        except Exception as exc:  # the commit failed: nothing of this transaction was applied
            for index in ran:
                key = keys[index]
                first_of_key = key is None or not any(keys[i] == key for i in ran if i < index)
                results[index] = exc if first_of_key else None
                if key is not None:
                    failed.add(key)
        return position

    def _alone(self, envelope: Envelope, span: Span | None = None) -> Outcome | Exception:
        with bound(correlation=envelope.correlation_id, event=envelope.event_id), \
                telemetry.current(span):
            try:
                with self.sessions() as session, session.begin():
                    return self._apply(session, envelope)
            except Exception as exc:  # rolled back; the consumer retries or dead-letters it
                return exc

    def _savepoint(self, session: Session, envelope: Envelope, span: Span | None = None
                   ) -> Outcome | Exception:
        with bound(correlation=envelope.correlation_id, event=envelope.event_id), \
                telemetry.current(span):
            try:
                with session.begin_nested():
                    return self._apply(session, envelope)
            except Exception as exc:  # the consumer retries or dead-letters it
                return exc

    def _apply(self, session: Session, envelope: Envelope) -> Outcome:
        """Claim the event in the inbox, then run its handler, in the caller's transaction."""
        handler = self.handlers[envelope.event_type]  # read() refused the event otherwise
        began = time.perf_counter()
        try:
            if not self.inbox.claim(session, envelope):
                if self.on_duplicate is not None:
                    self.on_duplicate(Context(envelope, session, self.producer, self.resources))
                return Outcome.DUPLICATE
            handler(Context(envelope, session, self.producer, self.resources))
            return Outcome.HANDLED
        finally:
            telemetry.handler_duration.record(time.perf_counter() - began, {
                "school.consumer": self.inbox.consumer, "school.event_type": envelope.event_type})
