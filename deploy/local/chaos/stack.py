"""The run's own stack: LocalStack on a free port, the topology of its own SCHOOL_ENV, fresh
databases, the SMTP sink, and every API and worker as a process it can kill and restart."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import requests

from deploy.local import issuer, localstack
from deploy.local.chaos import say
from deploy.local.chaos.config import ChaosConfig
from deploy.local.tokens import mint
from deploy.local.wait import until
from shared import aws, db
from shared.provision import Provisioner, QueueRef, Report
from shared.settings import ROOT, SERVICES, Settings

DATABASES = (*SERVICES, "payment_gateway")


@dataclass
class Stack:
    config: ChaosConfig
    endpoint: str = ""
    env: dict[str, str] = field(default_factory=dict)
    urls: dict[str, str] = field(default_factory=dict)
    databases: dict[str, str] = field(default_factory=dict)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    smtp_port: int = 0
    report: Report | None = None
    frozen: bool = False
    issuer: str = ""

    @property
    def folder(self) -> Path:
        return self.config.folder

    @property
    def mail_dir(self) -> Path:
        return self.folder / "mail"

    def queue(self, name: str) -> QueueRef:
        """A provisioned queue of the topology (and its DLQ), by its logical name."""
        assert self.report is not None, "the stack is not started"
        return self.report.queues[name]

    @property
    def queues(self) -> list[QueueRef]:
        assert self.report is not None, "the stack is not started"
        return list(self.report.queues.values())

    @property
    def topic_arn(self) -> str:
        assert self.report is not None, "the stack is not started"
        return self.report.topic_arn

    def settings(self) -> Settings:
        return Settings.from_env(self.env)

    def client(self, name: str, read_timeout: int = 10) -> Any:
        """A client for the harness's own calls: short timeouts, as LocalStack may be frozen."""
        return aws.client(name, self.settings(), read_timeout)

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        localstack.use_test_credentials()  # the harness's own clients (boto3 needs some)
        self._environment()
        self._start_localstack()
        say(f"provisioning the topology of SCHOOL_ENV={self.config.school_env}")
        self.report = Provisioner(self.client("sqs"), self.client("sns"),
                                  self.config.school_env).run()
        for service in SERVICES:
            db.migrate(service, self.databases[service])
        say(f"migrated {len(SERVICES)} {self.config.db} databases")
        self.start_sink()
        self._start_issuer()
        for service in SERVICES:
            self._spawn(f"{service}-api", ["shared.serve", "api", service])
            self.start_worker(service)
        for service in SERVICES:
            until(partial(self._healthy, service), 90, f"{service} /healthz")
        say("all five APIs and workers are up: " + ", ".join(
            f"{s} {u.rsplit(':', 1)[1]}" for s, u in self.urls.items()))

    def _environment(self) -> None:
        self.endpoint = f"http://127.0.0.1:{localstack.free_port()}"
        self.smtp_port = localstack.free_port()
        keep = {k: v for k, v in os.environ.items()
                if not k.endswith(("_DATABASE_URL", "_PORT")) and not k.startswith("VIRTUAL_ENV")}
        self.env = keep | {
            "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1", "SCHOOL_ENV": self.config.school_env,
            "AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1",
            "SCHOOL_VAR_DIR": str(self.folder), "DB": self.config.db,
            "SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(self.smtp_port),
            # Short backoffs so a run settles in minutes; the behaviour is the same.
            "SCHOOL_BACKOFF_BASE": "1", "SCHOOL_BACKOFF_CAP": "8", "WEB_CONCURRENCY": "2"}
        for service in SERVICES:
            port = localstack.free_port()
            self.urls[service] = f"http://127.0.0.1:{port}"
            self.env[f"{service.upper()}_PORT"] = str(port)
        for name in DATABASES:
            self.databases[name] = self._database_url(name)
            self.env[f"{name.upper()}_DATABASE_URL"] = self.databases[name]

    def _start_issuer(self) -> None:
        """The identity issuer the APIs trust; the workload acts as the school's admin."""
        self.procs["issuer"], self.issuer = issuer.launch(
            self.folder, self.folder / "log" / "issuer.log", self.env)
        self.env |= issuer.trusting(self.issuer)

    def admin_token(self) -> str:
        """A token of the school's admin, valid longer than any run."""
        return mint(self.issuer, "chaos-admin", ["admin"], expires_in=86400)

    def _database_url(self, name: str) -> str:
        return db.url_of(f"{self.config.db_prefix}{name}", self.folder / "db" / f"{name}.sqlite",
                         postgres=self.config.db == "postgres")

    def _start_localstack(self) -> None:
        say(f"starting LocalStack at {self.endpoint}")
        proc = localstack.start(self.endpoint, self.folder / "localstack",
                                self.folder / "log" / "localstack.log")
        self.procs["localstack"] = proc
        localstack.wait_healthy(self.endpoint, proc, timeout=120)

    def _spawn(self, name: str, args: list[str]) -> None:
        log_path = self.folder / "log" / f"{name}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as log:
            self.procs[name] = subprocess.Popen(
                [sys.executable, "-m", *args], cwd=ROOT, env=self.env, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True)

    def _healthy(self, service: str) -> bool:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode} while starting "
                                   f"(log: {self.folder / 'log' / f'{name}.log'})")
        try:
            return requests.get(f"{self.urls[service]}/healthz", timeout=2).ok
        except requests.RequestException:
            return False

    # --- what the faults do ------------------------------------------------------------------

    def start_worker(self, service: str) -> None:
        self._spawn(f"{service}-worker", ["shared.serve", "worker", service])

    def kill_worker(self, service: str) -> None:
        """SIGKILL: no shutdown, no release; in-flight messages come back after visibility."""
        proc = self.procs[f"{service}-worker"]
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)

    def freeze_localstack(self) -> None:
        os.killpg(self.procs["localstack"].pid, signal.SIGSTOP)
        self.frozen = True

    def thaw_localstack(self) -> None:
        os.killpg(self.procs["localstack"].pid, signal.SIGCONT)
        self.frozen = False

    def start_sink(self) -> None:
        self._spawn("smtp", ["deploy.local.smtp_sink", "--host", "127.0.0.1",
                             "--port", str(self.smtp_port), "--folder", str(self.mail_dir)])
        until(lambda: _listening(self.smtp_port), 30, "the SMTP sink to listen")

    def stop_sink(self) -> None:
        localstack.stop_group(self.procs["smtp"].pid)
        until(lambda: not _listening(self.smtp_port), 10, "the SMTP sink to close its port")

    # --- the end -------------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop everything this run started (also after a failure or Ctrl-C), drop databases."""
        if self.frozen:
            with contextlib.suppress(ProcessLookupError):
                self.thaw_localstack()
        # A process already waited for (a killed worker not restarted) has given its PID back,
        # and PIDs come round within minutes: signalling it could hit a stranger's process.
        live = [proc for proc in self.procs.values() if proc.returncode is None]
        for proc in live:  # all at once: each has a shutdown deadline
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in live:
            localstack.stop_group(proc.pid, timeout=30)
        for url in self.databases.values():
            with contextlib.suppress(Exception):  # best effort: report, never mask the result
                db.drop_database(url)
        shutil.rmtree(self.folder / "localstack", ignore_errors=True)
        say("stopped every process of the run and dropped its databases")


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0
