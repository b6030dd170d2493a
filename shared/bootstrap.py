"""The one bootstrap: a service's API process, worker process and migrations, each built from its
declaration (services/<name>/service.py, see shared.service).

    api("enrollment")      the Flask app gunicorn serves (`shared.bootstrap:api('enrollment')`)
    worker("enrollment")   the worker: consumer, relay, background jobs and housekeeping
    migrate("enrollment")  upgrade its database to the newest revision (shared.db.migrate)
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from flask import Flask

from shared import db, idempotency, logs, telemetry, web
from shared.access import Gate, Sessions
from shared.auth import Verifier
from shared.consumer import Consumer
from shared.handling import Handler
from shared.inbox import Inbox
from shared.outbox import Relay
from shared.runtime import Runtime
from shared.service import Service, declaration
from shared.settings import ConfigError, Settings

log = logging.getLogger(__name__)
HOUR = 3600.0


def _runtime(name: str, settings: Settings | None, process: str) -> tuple[Service, Runtime]:
    service = declaration(name)
    settings = settings or Settings.from_env()
    logs.configure(name, settings.log_level)
    if service.traced:
        telemetry.configure(name, process)
    runtime = runtime_of(service, settings)
    service.check(runtime.topology, runtime.catalogue)
    return service, runtime


def runtime_of(service: Service, settings: Settings) -> Runtime:
    """The runtime of a process of `service`: its database engine, and its resources."""
    engine = db.make_engine(db.database_url(service.name, settings))
    telemetry.instrument_engine(engine)
    resources = service.resources(settings) if service.resources else None
    return Runtime(service.name, settings, engine, service.outbox, service.inbox,
                   resources=resources)


def api(name: str, settings: Settings | None = None, access: Gate | None = None) -> Flask:
    """The service's API: its routes, and its simulator's when SCHOOL_SIMULATOR_CONTROLS=1;
    `access` replaces the access check built from the settings (the bench's, to measure it)."""
    service, runtime = _runtime(name, settings, "api")
    blueprints = list(service.routes(runtime)) if service.routes else []
    if service.simulator is not None and runtime.settings.simulator_controls:
        blueprints += service.simulator.routes(runtime)
    app = web.create_app(name, blueprints, runtime.ready_checks(), errors=service.errors,
                         gate=access or gate(runtime.settings, service.sessions(runtime)
                                             if service.sessions else None))
    telemetry.instrument_app(app)
    return app


def gate(settings: Settings, sessions: Sessions | None = None) -> Gate:
    """The access check of an API: an API without an identity provider refuses to start rather
    than serve anyone (docs/security.md)."""
    if not settings.oidc_issuer or not settings.oidc_client_ids:
        raise ConfigError("OIDC_ISSUER and OIDC_CLIENT_IDS must be set: an API accepts only "
                          "access tokens of the school's identity provider (make up sets them)")
    return Gate(Verifier(settings.oidc_issuer, settings.oidc_client_ids), sessions)


def handlers(service: Service, settings: Settings) -> dict[str, Handler]:
    """The handler of each event type; wrapped by the simulator's `around` when it is on."""
    around = service.simulator.around if service.simulator and settings.simulator_controls \
        else None
    return {event_type: around(handler) if around else handler
            for event_type, handler in service.consumes.items()}


def worker(name: str, settings: Settings | None = None) -> int:
    """Run the service's worker until SIGTERM or SIGINT (see `serve`)."""
    service, runtime = _runtime(name, settings, "worker")
    consumer = None
    if service.consumes:
        dispatcher = runtime.dispatcher(handlers(service, runtime.settings),
                                        on_duplicate=service.on_duplicate)
        consumer = runtime.consumer(dispatcher)
    relay = runtime.relay() if service.outbox is not None else None
    jobs = {job_name: build(runtime) for job_name, build in service.jobs.items()}
    return serve(runtime, consumer, relay, jobs, housekeeping(service, runtime))


def migrate(name: str, url: str) -> None:
    """Upgrade the service's database at `url` to its newest revision."""
    declaration(name)  # a service that cannot be declared has nothing to migrate
    db.migrate(name, url)


def _every(interval: float, job: Callable[[], Any]) -> Callable[[threading.Event], None]:
    """A job that runs `job()` every `interval` seconds until stopped; a failure is logged and
    the job runs again next time (housekeeping must not kill the worker)."""
    def loop(stop: threading.Event) -> None:
        while not stop.wait(interval):
            try:
                job()
            except Exception:
                log.exception("periodic job %s failed", getattr(job, "__name__", job))
    return loop


def housekeeping(service: Service, runtime: Runtime) -> dict[str, Callable[[threading.Event],
                                                                              None]]:
    """The platform tables' purges: published outbox rows, old inbox rows and attempt counts,
    and expired Idempotency-Keys; and the hourly report of dead outbox rows."""
    s, jobs = runtime.settings, {}
    keep = timedelta(days=s.inbox_retention_days)
    if runtime.inbox_table is not None:
        inbox = Inbox(runtime.inbox_table, runtime.service)
        jobs["inbox-purge"] = _every(HOUR, lambda: inbox.purge(runtime.engine, keep))
    if service.consumes:
        ledger = runtime.attempts()
        jobs["attempts-purge"] = _every(HOUR, lambda: ledger.purge(keep))
    if (keys := service.table("idempotency_keys")) is not None:
        older = timedelta(hours=s.idempotency_retention_hours)
        jobs["idempotency-purge"] = _every(
            HOUR, lambda: idempotency.purge(runtime.engine, keys, older))
    return jobs


def serve(runtime: Runtime, consumer: Consumer | None, relay: Relay | None,
          jobs: dict[str, Callable[[threading.Event], None]],
          chores: dict[str, Callable[[threading.Event], None]] | None = None) -> int:
    """Run a worker process until SIGTERM or SIGINT; exit 0 within the shutdown deadline.

    The relay, each job and each chore run in a thread of their own as `job(stop)`; the
    consumer runs in this one. Jobs are joined at shutdown; chores (housekeeping: purges and
    reports) are daemons, not waited for.
    """
    stop = threading.Event()

    def request_stop(signum: int, _frame: object) -> None:
        log.info("signal %d: stopping", signum, extra={"outcome": "stopping"})
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, request_stop)
    jobs, chores = dict(jobs), dict(chores or {})
    if relay is not None:
        jobs["relay"] = lambda stop: relay.run(stop, runtime.settings.relay_interval)
        chores["outbox-purge"] = _every(HOUR, relay.purge)
        chores["outbox-dead-report"] = _every(60, relay.report_dead_rows)
    threads = [threading.Thread(target=loop, name=name, args=(stop,), daemon=daemon)
               for daemon, loops in ((False, jobs), (True, chores))
               for name, loop in loops.items()]
    for thread in threads:
        thread.start()
    log.info("%s worker started", runtime.service, extra={"outcome": "started"})
    if consumer is not None:
        consumer.run(stop)
    else:
        stop.wait()
    for thread in threads:
        if not thread.daemon:
            thread.join(timeout=runtime.settings.shutdown_deadline)
    log.info("%s worker stopped", runtime.service, extra={"outcome": "stopped"})
    if consumer is not None and consumer.abandoned:
        # Handlers still running past the deadline hold threads Python would wait for; their
        # messages were released and their transactions never commit, so leave now.
        telemetry.flush()
        logging.shutdown()
        sys.stdout.flush()
        os._exit(0)
    return 0
