"""A simulated payment gateway, driven by test tokens the way a provider's sandbox is.

`tok_ok` succeeds; `tok_declined` is declined; `tok_flaky_<n>` is unavailable n times, then
succeeds; `tok_down` is unavailable while the simulated outage is on (the default). A repeated
idempotency key gets the first final result again. Every attempt is recorded in the gateway's
own database and its own transaction, as a real provider would, so attempts made by a handler
that then rolled back are still counted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    event,
    func,
    insert,
    select,
)

from shared import db
from shared.settings import Settings

metadata = MetaData()
attempts = Table(
    "gateway_attempts", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("idempotency_key", String(100), nullable=False, index=True),
    Column("operation", String(10), nullable=False),
    Column("amount_cents", Integer, nullable=False),
    Column("outcome", String(20), nullable=False),
    Column("attempted_at", DateTime(timezone=True), nullable=False),
)
results = Table(
    "gateway_results", metadata,
    Column("idempotency_key", String(100), primary_key=True),
    Column("outcome", String(20), nullable=False),
    Column("reason", String(100), nullable=True),
)
switches = Table(
    "gateway_switches", metadata,
    Column("name", String(50), primary_key=True),
    Column("enabled", Boolean, nullable=False),
)
FLAKY = re.compile(r"^tok_flaky_(\d{1,3})$")


class GatewayUnavailable(Exception):
    """A transient failure: the same call may succeed later."""


@dataclass(frozen=True)
class Result:
    outcome: str  # "succeeded" or "declined"
    reason: str | None = None

    @property
    def succeeded(self) -> bool:
        return self.outcome == "succeeded"


class Gateway(Protocol):
    """What the payment service uses of a gateway: SimulatedGateway, or a test's fake."""

    def charge(self, key: str, token: str, amount_cents: int) -> Result: ...

    def refund(self, key: str, amount_cents: int) -> Result: ...

    def attempts(self, *keys: str) -> int: ...


def from_settings(settings: Settings) -> SimulatedGateway:
    """The gateway of a payment process: its ledger in its own database (`payment_gateway`)."""
    url = db.database_url("payment_gateway", settings)
    db.ensure_database(url)
    return SimulatedGateway(db.make_engine(url))


class SimulatedGateway:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        event.listen(engine, "connect", _no_flush_wait)
        db.create_tables(engine, metadata)  # a stand-in for an external provider: no migrations

    def charge(self, key: str, token: str, amount_cents: int) -> Result:
        return self._call("charge", key, token, amount_cents)

    def refund(self, key: str, amount_cents: int) -> Result:
        return self._call("refund", key, "tok_ok", amount_cents)

    def attempts(self, *keys: str) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(attempts).where(
                attempts.c.idempotency_key.in_(keys))).scalar_one())

    def outage(self) -> bool:
        with self.engine.connect() as conn:
            enabled = conn.execute(select(switches.c.enabled).where(
                switches.c.name == "outage")).scalar()
        return True if enabled is None else bool(enabled)

    def set_outage(self, enabled: bool) -> None:
        statement = db.upsert(self.engine.dialect.name, switches,
                              {"name": "outage", "enabled": enabled}, ["name"],
                              {"enabled": enabled})
        with self.engine.begin() as conn:
            conn.execute(statement)

    def _call(self, operation: str, key: str, token: str, amount_cents: int) -> Result:
        # Only tok_down asks whether the outage is on: no other call pays for that read.
        outage = self.outage() if token == "tok_down" else False
        with db.writer(self.engine).begin() as conn:  # reads, then writes the ledger
            first = conn.execute(select(results).where(results.c.idempotency_key == key)).first()
            seen = conn.execute(select(func.count()).select_from(attempts).where(
                attempts.c.idempotency_key == key)).scalar_one()
            result = (Result(first.outcome, first.reason) if first
                      else _decide(token, seen + 1, outage))
            conn.execute(insert(attempts).values(
                idempotency_key=key, operation=operation, amount_cents=amount_cents,
                outcome=result.outcome if result else "unavailable",
                attempted_at=datetime.now(UTC)))
            if result and not first:
                conn.execute(insert(results).values(idempotency_key=key, outcome=result.outcome,
                                                    reason=result.reason))
        if result is None:
            raise GatewayUnavailable(f"gateway unavailable for {operation} {key}")
        return result


def _no_flush_wait(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
    """The simulator stands in for a remote provider, whose latency is not simulated either:
    its commits do not wait for the disk flush (measured, that flush was a third of a payment
    worker's time). A killed process loses nothing (SQLite WAL with synchronous=NORMAL, and
    PostgreSQL with synchronous_commit=off, stay consistent); only a power loss could drop the
    last attempts. The services' own databases keep full durability."""
    cur = dbapi_conn.cursor()
    if hasattr(dbapi_conn, "create_function"):  # sqlite3 (the WAL pragma is set by db.py)
        cur.execute("PRAGMA synchronous=NORMAL")
    else:
        cur.execute("SET synchronous_commit = off")
        dbapi_conn.commit()  # a SET inside a transaction is undone by the pool's rollback
    cur.close()


def _decide(token: str, attempt: int, outage: bool) -> Result | None:
    """The sandbox's answer to the n-th attempt with a token; None means unavailable."""
    if token == "tok_ok":
        return Result("succeeded")
    if token == "tok_declined":
        return Result("declined", "card_declined")
    if token == "tok_down":
        return None if outage else Result("succeeded")
    flaky = FLAKY.match(token)
    if flaky:
        return None if attempt <= int(flaky.group(1)) else Result("succeeded")
    return Result("declined", "invalid_token")
