"""Process entry points shared by the Procfile and the container image:
`python -m shared.serve api <service>` runs the API under gunicorn on the service's port;
`python -m shared.serve worker <service>` runs its worker;
`python -m shared.serve migrate <service>` upgrades its database (run before a new task serves)."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from shared.settings import PORTS, SERVICES


def port(service: str) -> int:
    """The contract's port, unless `<SERVICE>_PORT` says otherwise (tests use free ports)."""
    return int(os.environ.get(f"{service.upper()}_PORT") or PORTS[service])


def migrate(service: str) -> int:
    """Upgrade the service's database to the newest revision; non-zero, with why, on failure."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    from shared import db
    from shared.settings import ConfigError, Settings
    try:
        url = db.database_url(service, Settings.from_env())
        shown = make_url(url).render_as_string(hide_password=True)
        print(f"migrating the {service} database at {shown}", flush=True)
        db.migrate(service, url)
    except (ConfigError, SQLAlchemyError, OSError) as exc:
        print(f"migrate {service}: {exc}", file=sys.stderr)
        return 1
    print(f"the {service} database is at the newest revision", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shared.serve", description=__doc__)
    parser.add_argument("role", choices=("api", "worker", "migrate"))
    parser.add_argument("service", choices=SERVICES)
    args = parser.parse_args(argv)
    if args.role == "migrate":
        return migrate(args.service)
    if args.role == "worker":
        module = importlib.import_module(f"services.{args.service}.worker")
        return int(module.main())
    host = os.environ.get("BIND_HOST", "127.0.0.1")
    gunicorn = [sys.executable, "-m", "gunicorn", "--bind", f"{host}:{port(args.service)}",
                "--workers", os.environ.get("WEB_CONCURRENCY", "2"), "--threads", "4",
                "--graceful-timeout", "20", "--access-logfile", "-", "--no-control-socket",
                f"services.{args.service}.app:create_app()"]
    os.execv(sys.executable, gunicorn)
    return 0  # not reached: execv replaces this process


if __name__ == "__main__":
    raise SystemExit(main())
