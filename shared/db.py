"""Databases: one per service, SQLite under var/db/ by default, PostgreSQL with DB=postgres."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, MetaData, Table, create_engine, event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool

from shared.settings import ROOT, Settings


def url_of(database: str, sqlite_file: Path, *, postgres: bool,
           settings: Settings | None = None) -> str:
    """The URL of one database: the PostgreSQL database `database` on the server that PGHOST,
    PGPORT, PGUSER and PGPASSWORD name (`settings`, or the environment's), or the SQLite file
    `sqlite_file`. Every database URL the project builds is built here."""
    if not postgres:
        return f"sqlite:///{sqlite_file}"
    s = settings or Settings.from_env()
    # URL.create escapes the credentials: a generated password may hold '@', '/' or ':'.
    return URL.create("postgresql+psycopg", username=s.pg_user, password=s.pg_password or None,
                      host=s.pg_host, port=s.pg_port, database=database,
                      ).render_as_string(hide_password=False)


def database_url(service: str, settings: Settings, env: dict[str, str] | None = None) -> str:
    """`<SERVICE>_DATABASE_URL` if set, else the default for the DB setting."""
    env = dict(os.environ) if env is None else env
    explicit = env.get(f"{service.upper()}_DATABASE_URL")
    if explicit:
        return explicit
    return url_of(f"school_{service}", settings.var_dir / "db" / f"{service}.sqlite",
                  postgres=settings.db == "postgres", settings=settings)


def make_engine(url: str) -> Engine:
    """An engine tuned for this project's use: WAL and a busy timeout on SQLite."""
    if url.startswith("sqlite"):
        ensure_database(url)
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
        # pysqlite's own transaction handling defers BEGIN; let SQLAlchemy emit it (SQLAlchemy
        # docs, "Serializable isolation / Savepoints / Transactional DDL" for pysqlite).
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10)


def _sqlite_pragmas(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    # WAL lets readers and one writer work at once; the relay reads while the API writes.
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def _sqlite_begin(conn: Connection) -> None:
    # In WAL mode a deferred transaction that reads and then writes fails at once with
    # SQLITE_BUSY_SNAPSHOT when another writer committed in between; busy_timeout does not apply.
    # Such transactions run on `writer(engine)` and begin IMMEDIATE: they take the write lock
    # first and wait for it. Reads stay deferred, so they never queue behind writers.
    immediate = conn.get_execution_options().get("sqlite_immediate", False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def writer(engine: Engine) -> Engine:
    """The engine for transactions that read and then write (IMMEDIATE on SQLite)."""
    return engine.execution_options(sqlite_immediate=True)


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def ensure_database(url: str) -> None:
    """Create the database of a URL if it does not exist (for SQLite, its folder)."""
    parsed = make_url(url)
    if parsed.drivername.startswith("sqlite"):
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        return
    if not parsed.drivername.startswith("postgresql"):
        return
    admin = create_engine(parsed.set(database="postgres"), isolation_level="AUTOCOMMIT")
    query = text("SELECT 1 FROM pg_database WHERE datname = :n")
    try:
        with admin.connect() as conn:
            if conn.execute(query, {"n": parsed.database}).scalar():
                return
            try:
                conn.execute(text(f'CREATE DATABASE "{parsed.database}"'))
            except DBAPIError:
                # Two processes starting at once (an API's gunicorn workers, or an API and its
                # worker) both saw no database; one CREATE wins and the other fails on the
                # catalogue's unique index. Only a database that still does not exist is an error.
                if not conn.execute(query, {"n": parsed.database}).scalar():
                    raise
    finally:
        admin.dispose()


def create_tables(engine: Engine, metadata: MetaData) -> None:
    """`metadata.create_all` that several processes may run at once: serialised by an advisory
    lock on PostgreSQL and by an IMMEDIATE transaction on SQLite, so none fails on a table
    another has just created. (Services use Alembic; this is for stand-ins such as the gateway.)"""
    with writer(engine).begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:k))"),
                         {"k": "create_tables:" + ",".join(sorted(metadata.tables))})
        metadata.create_all(conn)


def drop_database(url: str) -> None:
    """Drop a PostgreSQL database (tests clean up after themselves); SQLite files are removed."""
    parsed = make_url(url)
    if parsed.drivername.startswith("sqlite"):
        if parsed.database and parsed.database != ":memory:":
            for suffix in ("", "-wal", "-shm"):
                Path(parsed.database + suffix).unlink(missing_ok=True)
        return
    admin = create_engine(parsed.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{parsed.database}" WITH (FORCE)'))
    finally:
        admin.dispose()


def alembic_config(service: str, url: str) -> Config:
    """The Alembic configuration of a service's own migration history: the one env.py
    (shared/alembic_env, which takes the service's metadata from its declaration) and the
    service's revisions in services/<name>/migrations/versions."""
    cfg = Config()
    cfg.set_main_option("script_location", str(ROOT / "shared" / "alembic_env"))
    cfg.set_main_option("path_separator", "os")  # one path, which may hold spaces
    cfg.set_main_option("version_locations",
                        str(ROOT / "services" / service / "migrations" / "versions"))
    cfg.set_main_option("service", service)
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def migrate(service: str, url: str) -> None:
    """Create the database if needed and upgrade it to the newest revision.

    On PostgreSQL an advisory lock makes concurrent runs (the migrate containers of an API task
    and a worker task starting together) take turns: the second finds the work done."""
    ensure_database(url)
    if not make_url(url).drivername.startswith("postgresql"):
        command.upgrade(alembic_config(service, url), "head")
        return
    engine = create_engine(url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        with engine.connect() as lock:  # the lock is released when this session ends
            lock.execute(text("SELECT pg_advisory_lock(hashtext(:k))"), {"k": f"migrate:{service}"})
            command.upgrade(alembic_config(service, url), "head")
    finally:
        engine.dispose()


def upsert(dialect: str, table: Table, values: dict[str, Any], key: list[str],
           set_: dict[str, Any]) -> Any:
    """`INSERT ... ON CONFLICT (key) DO UPDATE SET ...` in `dialect`'s own syntax (both
    databases spell it the same; SQLAlchemy has one construct per dialect)."""
    module: Any = postgresql if dialect == "postgresql" else sqlite
    return module.insert(table).values(values).on_conflict_do_update(index_elements=key,
                                                                     set_=set_)


def utc(value: datetime) -> datetime:
    """A datetime read back from the database, in UTC: SQLite returns naive datetimes, which
    were stored in UTC; PostgreSQL's are aware already."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)
