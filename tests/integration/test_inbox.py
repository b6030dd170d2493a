"""The inbox on a real database: one claim per (consumer, event), purge of old rows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update

from shared import db
from shared.inbox import Inbox
from tests.support import probe
from tests.support.messages import ping


def test_claims_once_per_consumer_and_purges_old_rows(database_url: str) -> None:
    engine = db.make_engine(database_url)
    probe.metadata.create_all(engine)
    sessions = db.session_factory(engine)
    old, recent = ping("g", 1), ping("g", 2)
    try:
        with sessions() as session, session.begin():
            assert Inbox(probe.inbox, "a").claim(session, old)
            assert not Inbox(probe.inbox, "a").claim(session, old)  # the same consumer: once
            assert Inbox(probe.inbox, "b").claim(session, old)  # another consumer: its own row
            assert Inbox(probe.inbox, "a").claim(session, recent)
        with engine.begin() as conn:
            conn.execute(update(probe.inbox).where(probe.inbox.c.event_id == old.event_id)
                         .values(handled_at=datetime.now(UTC) - timedelta(days=16)))
        assert Inbox(probe.inbox, "a").purge(engine, keep=timedelta(days=15)) == 2
        with engine.connect() as conn:
            left = conn.execute(select(probe.inbox.c.event_id)).scalars().all()
        assert left == [recent.event_id]
    finally:
        engine.dispose()
