"""Several processes starting at once create the same database and tables without failing
(an API's gunicorn workers and the service's worker all start together)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable

from sqlalchemy import Column, Integer, MetaData, Table, inspect
from sqlalchemy.engine import make_url

from shared import db


def at_once(action: Callable[[], None], count: int = 8) -> list[BaseException]:
    """Run `action` in `count` threads released together; return what they raised."""
    barrier, errors = threading.Barrier(count), []

    def run() -> None:
        barrier.wait()
        try:
            action()
        except BaseException as exc:  # collected and asserted on below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


def test_concurrent_creation_of_one_database_and_its_tables(database_url: str,
                                                            db_kind: str) -> None:
    url = database_url
    if db_kind == "postgres":  # a database that does not exist yet
        url = make_url(database_url).set(
            database=f"school_race_{uuid.uuid4().hex[:10]}").render_as_string(False)
    try:
        assert at_once(lambda: db.ensure_database(url)) == []
        metadata = MetaData()
        Table("ledger", metadata, Column("id", Integer, primary_key=True))
        Table("switches", metadata, Column("id", Integer, primary_key=True))
        engine = db.make_engine(url)
        try:
            assert at_once(lambda: db.create_tables(engine, metadata)) == []
            assert {"ledger", "switches"} <= set(inspect(engine).get_table_names())
        finally:
            engine.dispose()
    finally:
        if url != database_url:
            db.drop_database(url)
