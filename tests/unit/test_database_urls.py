"""One builder of database URLs (shared.db.url_of), which every stack uses: the services, the
tests, chaos and the bench all reach the PostgreSQL server that PGHOST, PGPORT, PGUSER and
PGPASSWORD name."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from shared import db
from shared.settings import Settings

SERVER = {"DB": "postgres", "PGHOST": "db.internal", "PGPORT": "6543", "PGUSER": "school",
          "PGPASSWORD": "p@ss/w:rd"}


def test_a_postgres_url_names_the_server_of_the_pg_settings() -> None:
    url = make_url(db.url_of("school_x", Path("unused.sqlite"), postgres=True,
                             settings=Settings.from_env(SERVER)))
    assert (url.drivername, url.host, url.port, url.username, url.password, url.database) == (
        "postgresql+psycopg", "db.internal", 6543, "school", "p@ss/w:rd", "school_x")


def test_without_settings_the_environment_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in SERVER.items():
        monkeypatch.setenv(name, value)
    url = make_url(db.url_of("school_y", Path("unused.sqlite"), postgres=True))
    assert (url.host, url.port, url.password) == ("db.internal", 6543, "p@ss/w:rd")


def test_a_sqlite_url_is_the_file(tmp_path: Path) -> None:
    assert db.url_of("ignored", tmp_path / "a b.sqlite", postgres=False) == (
        f"sqlite:///{tmp_path / 'a b.sqlite'}")


def test_a_service_s_default_url_goes_through_the_same_builder(tmp_path: Path) -> None:
    settings = Settings.from_env(SERVER | {"SCHOOL_VAR_DIR": str(tmp_path)})
    assert make_url(db.database_url("payment", settings, env={})).host == "db.internal"
    local = Settings.from_env({"SCHOOL_VAR_DIR": str(tmp_path)})
    assert db.database_url("payment", local, env={}) == (
        f"sqlite:///{tmp_path / 'db' / 'payment.sqlite'}")
