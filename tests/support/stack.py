"""Real service processes for end-to-end tests: each service's API under gunicorn on a free port
and its worker, on fresh databases, against the session's LocalStack and topology."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from deploy.local import issuer
from deploy.local.tokens import mint
from shared import db
from shared.provision import Report
from shared.settings import CONSOLE, ROOT
from tests.support.messages import wait_for


def fresh_database_url(db_kind: str, folder: Path, name: str) -> str:
    return db.url_of(f"school_e2e_{uuid.uuid4().hex[:8]}_{name}", folder / f"{name}.sqlite",
                     postgres=db_kind == "postgres")


@dataclass
class ServiceStack:
    services: tuple[str, ...]
    folder: Path
    db_kind: str
    env: dict[str, str] = field(default_factory=dict)
    urls: dict[str, str] = field(default_factory=dict)
    databases: dict[str, str] = field(default_factory=dict)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    report: Report | None = None  # the topology this stack was provisioned with
    issuer: str = ""  # the stack's own identity issuer (deploy/local/issuer.py)

    def start(self, extra_env: dict[str, str]) -> None:
        from deploy.local.localstack import free_port
        self.env = os.environ | {"PYTHONPATH": str(ROOT), "SCHOOL_SIMULATOR_CONTROLS": "1",
                                 "WEB_CONCURRENCY": "2", **extra_env}
        self._start_issuer()
        for service in self.services:
            port = free_port()
            self.urls[service] = f"http://127.0.0.1:{port}"
            self.env[f"{service.upper()}_PORT"] = str(port)
            names = [service] + (["payment_gateway"] if service == "payment" else [])
            for name in names:
                url = fresh_database_url(self.db_kind, self.folder, name)
                self.databases[name] = url
                self.env[f"{name.upper()}_DATABASE_URL"] = url
            db.migrate(service, self.databases[service])
        if CONSOLE in self.services:  # every process exports its spans to the console
            self.env.setdefault("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                                f"{self.urls[CONSOLE]}/v1/traces")
        for service in self.services:
            for role in ("api",) if service == CONSOLE else ("api", "worker"):
                self.procs[f"{service}-{role}"] = self._spawn(role, service)
        for service in self.services:
            wait_for(lambda s=service: self._healthy(s), 120, f"{service} /healthz")

    def _start_issuer(self) -> None:
        """The identity issuer every API of the stack trusts, and the exporters' credential."""
        self.procs["issuer"], self.issuer = issuer.launch(self.folder, self.folder / "issuer.log",
                                                          self.env)
        self.env |= issuer.trusting(self.issuer)

    def token(self, sub: str, *groups: str, **claims: Any) -> str:
        """An access token of the stack's issuer for `sub` with these roles."""
        return mint(self.issuer, sub, list(groups), **claims)

    def admin(self) -> str:
        """An admin's token: the end-to-end tests act as the school's administrator unless
        they test who may do what."""
        return self.token("admin-e2e", "admin")

    def _spawn(self, role: str, service: str) -> subprocess.Popen[bytes]:
        log = (self.folder / f"{service}-{role}.log").open("wb")
        return subprocess.Popen([sys.executable, "-m", "shared.serve", role, service], cwd=ROOT,
                                env=self.env, stdout=log, stderr=subprocess.STDOUT)

    def _healthy(self, service: str) -> bool:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise AssertionError(f"{name} exited: {self.log(name)[-3000:]}")
        try:
            return requests.get(f"{self.urls[service]}/healthz", timeout=2).ok
        except (requests.ConnectionError, requests.Timeout):
            return False

    def log(self, name: str) -> str:
        return (self.folder / f"{name}.log").read_text(errors="replace")

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                proc.kill()
        for url in self.databases.values():
            db.drop_database(url)
