"""What an operator sees of and does with a service's outbox: `school status` and
`school outbox list|retry` (the platform reads the service's database as its own tool, the
way a DBA would; no service reads another's)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, MetaData, Table, create_engine, func, inspect, select, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import NullPool

from shared import db
from shared.events import CATALOGUE
from shared.settings import SERVICES, Settings
from shared.tables import outbox_table

OUTBOX = outbox_table(MetaData())


def producers() -> tuple[str, ...]:
    """The services with an outbox: those that publish events."""
    return tuple(s for s in SERVICES if CATALOGUE.produced_by(s))


@dataclass(frozen=True)
class OutboxState:
    service: str
    pending: int  # waiting to be published now
    backing_off: int  # refused for now, retried after a backoff
    dead: int  # refused for ever, set aside until retried


@contextmanager
def service_engine(service: str, settings: Settings) -> Iterator[Engine | None]:
    """The service's database, or None when it does not exist yet (never creates one)."""
    url = db.database_url(service, settings)
    parsed = make_url(url)
    if parsed.drivername.startswith("sqlite") and not Path(parsed.database or "").exists():
        yield None
        return
    engine = create_engine(url, poolclass=NullPool)
    try:
        try:
            present = inspect(engine).has_table("outbox")
        except OperationalError:  # PostgreSQL: the database does not exist (not migrated)
            present = False
        yield engine if present else None
    finally:
        engine.dispose()


def state(service: str, engine: Engine) -> OutboxState:
    t, now = OUTBOX, datetime.now(UTC)
    unpublished = t.c.published_at.is_(None)
    with engine.connect() as conn:
        def count(*where: Any) -> int:
            return int(conn.execute(select(func.count()).select_from(t).where(
                unpublished, *where)).scalar_one())
        dead = count(t.c.dead_at.is_not(None))
        waiting = count(t.c.dead_at.is_(None), t.c.next_attempt_at > now)
        total = count()
    return OutboxState(service, total - dead - waiting, waiting, dead)


def dead_rows(engine: Engine) -> Sequence[Any]:
    t = OUTBOX
    with engine.connect() as conn:
        return conn.execute(select(t.c.id, t.c.event_type, t.c.destination, t.c.group_id,
                                   t.c.event_id, t.c.dead_at, t.c.attempts, t.c.last_error)
                            .where(t.c.dead_at.is_not(None), t.c.published_at.is_(None))
                            .order_by(t.c.id)).all()


def retry(engine: Engine, ids: Sequence[int] | None = None) -> int:
    """Put dead rows (all, or those of `ids`) back in the relay's way; returns how many."""
    t: Table = OUTBOX
    where = [t.c.dead_at.is_not(None), t.c.published_at.is_(None)]
    if ids:
        where.append(t.c.id.in_(ids))
    with engine.begin() as conn:
        result = conn.execute(update(t).where(*where).values(dead_at=None, next_attempt_at=None))
    return int(result.rowcount or 0)
