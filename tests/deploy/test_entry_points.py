"""What the containers run: `python -m shared.serve migrate <service>` (before a task serves),
the database settings they get from Secrets Manager, and `make synth`'s checks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import inspect
from sqlalchemy.engine import make_url

from shared import db
from shared.settings import ROOT, Settings


def migrate(service: str, url: str) -> subprocess.CompletedProcess[str]:
    env = os.environ | {f"{service.upper()}_DATABASE_URL": url}
    return subprocess.run([sys.executable, "-m", "shared.serve", "migrate", service], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=120)


def test_migrate_upgrades_the_service_database_and_can_run_again(database_url: str) -> None:
    for _ in range(2):  # the API's and the worker's migrate containers both run it
        done = migrate("analytics", database_url)
        assert done.returncode == 0, done.stderr
        assert "the analytics database is at the newest revision" in done.stdout
    engine = db.make_engine(database_url)
    try:
        assert {"alembic_version", "event_counts", "inbox"} <= set(
            inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_migrate_fails_with_a_clear_message(tmp_path: Path) -> None:
    unreachable = "postgresql+psycopg://school:secret@127.0.0.1:1/school_payment"
    done = migrate("payment", unreachable)
    assert done.returncode == 1
    assert done.stderr.startswith("migrate payment:") and "Traceback" not in done.stderr
    assert "secret" not in done.stdout + done.stderr  # the password is never printed


def test_a_generated_password_survives_into_the_database_url() -> None:
    settings = Settings.from_env({"DB": "postgres", "PGHOST": "db.internal", "PGPORT": "5432",
                                  "PGUSER": "school", "PGPASSWORD": "p@ss/w:rd%"})
    url = make_url(db.database_url("payment", settings, env={}))
    assert (url.username, url.password, url.host, url.database) == (
        "school", "p@ss/w:rd%", "db.internal", "school_payment")


def test_synth_refuses_a_bad_environment_name() -> None:
    from deploy.aws.app import build
    with pytest.raises(ValueError, match="DEPLOY_ENV must be lowercase"):
        build("Prod_1")
