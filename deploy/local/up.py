"""`make up`: LocalStack, the topology, the databases, then every process of the Procfile."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from functools import partial
from pathlib import Path
from types import FrameType

from deploy.local import issuer, localstack
from shared import aws, db
from shared.auth import exporter_headers
from shared.provision import Provisioner
from shared.serve import port
from shared.settings import CONSOLE, ROOT, SERVICES, Settings

PROCFILE = ROOT / "deploy" / "local" / "Procfile"
DEFAULT_ENDPOINT = "http://127.0.0.1:4566"
OWN_PIDFILES = ("honcho", "localstack")  # the rest of var/run/*.pid are keep.py's


def say(text: str) -> None:
    print(f"[up] {text}", flush=True)


class Stack:
    def __init__(self) -> None:
        os.environ.setdefault("AWS_ENDPOINT_URL", DEFAULT_ENDPOINT)
        localstack.use_test_credentials()
        # The local stack is for trying things out: the simulated gateway's switch is on.
        os.environ.setdefault("SCHOOL_SIMULATOR_CONTROLS", "1")
        # Every process exports its spans to the console, which draws the conversations from
        # them, unless an OTLP endpoint is set already (`make traces`, a collector).
        self.console_traces = not any(os.environ.get(name) for name in (
            "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
        if self.console_traces:
            os.environ["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] = (
                f"http://127.0.0.1:{port(CONSOLE)}/v1/traces")
            # The console keeps no statement spans: not making them halves what tracing costs
            # a worker (docs/observability.md).
            os.environ.setdefault("OTEL_PYTHON_DISABLED_INSTRUMENTATIONS", "sqlalchemy")
        self.identity()
        self.settings = Settings.from_env()
        self.endpoint = self.settings.aws_endpoint_url or DEFAULT_ENDPOINT
        self.run_dir = self.settings.var_dir / "run"
        self.localstack: subprocess.Popen[bytes] | None = None
        self.honcho: subprocess.Popen[bytes] | None = None

    @staticmethod
    def identity() -> None:
        """Every API trusts the local issuer's tokens; every exporter sends the console's intake
        a secret made for this run (docs/security.md)."""
        os.environ.setdefault("OIDC_ISSUER", f"http://127.0.0.1:{port('issuer')}")
        os.environ.setdefault("OIDC_CLIENT_IDS", issuer.client_ids())
        os.environ.setdefault("SCHOOL_OTLP_TOKEN", secrets.token_urlsafe(24))
        headers = os.environ.get("OTEL_EXPORTER_OTLP_HEADERS")
        intake = exporter_headers(os.environ["SCHOOL_OTLP_TOKEN"])
        os.environ["OTEL_EXPORTER_OTLP_HEADERS"] = f"{headers},{intake}" if headers else intake

    def _pidfile(self, name: str, pid: int) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / f"{name}.pid").write_text(str(pid))

    def start_localstack(self) -> None:
        if localstack.healthy(self.endpoint):
            say(f"using the LocalStack already running at {self.endpoint}")
            return
        log_path = self.settings.var_dir / "log" / "localstack.log"
        say(f"starting LocalStack at {self.endpoint} (log: {shown(log_path)})")
        self.localstack = localstack.start(self.endpoint, self.settings.var_dir / "localstack",
                                           log_path)
        self._pidfile("localstack", self.localstack.pid)
        last = [-5.0]

        def tick(elapsed: float) -> None:
            if elapsed - last[0] >= 5:
                last[0] = elapsed
                say(f"  waiting for LocalStack... {elapsed:.0f} s")

        localstack.wait_healthy(self.endpoint, self.localstack, tick=tick)
        say("LocalStack is healthy")

    def provision(self) -> None:
        say(f"provisioning the topology for SCHOOL_ENV={self.settings.school_env}")
        report = Provisioner(aws.client("sqs", self.settings), aws.client("sns", self.settings),
                             self.settings.school_env, say=lambda t: say(f"  {t}")).run()
        say(f"  {len(report.queues)} queues with their DLQs and 1 topic: "
            + (f"{len(report.changes)} change(s)" if report.changed else "nothing to change"))

    def migrate(self) -> None:
        for service in (*SERVICES, CONSOLE):
            if not (ROOT / "services" / service / "migrations").is_dir():
                continue
            say(f"migrating the {service} database ({self.settings.db})")
            db.migrate(service, db.database_url(service, self.settings))

    def start_processes(self) -> None:
        say(f"starting the processes of {PROCFILE.relative_to(ROOT)} with honcho")
        # The Procfile says `python`, `gunicorn`...: this environment's, not the system's.
        env = os.environ | {"PATH": f"{Path(sys.executable).parent}{os.pathsep}"
                                    f"{os.environ.get('PATH', '')}", "PYTHONUNBUFFERED": "1"}
        self.honcho = subprocess.Popen(
            [sys.executable, "-m", "honcho", "-f", str(PROCFILE), "-d", str(ROOT), "start"],
            env=env, start_new_session=True)
        self._pidfile("honcho", self.honcho.pid)

    def wait_ready(self, timeout: float = 60) -> list[str]:
        """Poll the SMTP sink's port and every API's /healthz until all answer."""
        names = procfile_names(PROCFILE)
        apis = [n.removesuffix("-api") for n in names if n.endswith("-api")]
        checks: dict[str, Callable[[], bool]] = {
            "smtp sink": partial(_port_open, self.settings.smtp_host, self.settings.smtp_port)}
        for api in apis:
            checks[api] = partial(_http_ok, f"http://127.0.0.1:{port(api)}/healthz")
        if "issuer" in names:
            checks["issuer"] = partial(_http_ok, f"{self.settings.oidc_issuer}/healthz")
        deadline = time.monotonic() + timeout
        waiting = dict(checks)
        while waiting:
            if self.honcho and self.honcho.poll() is not None:
                raise RuntimeError("a process of the Procfile exited while starting (see above)")
            if time.monotonic() > deadline:
                raise TimeoutError(f"not ready after {timeout:.0f} s: {', '.join(waiting)}")
            waiting = {n: c for n, c in waiting.items() if not c()}
            time.sleep(0.3)
        return apis

    def banner(self, apis: list[str], started: float) -> None:
        lines = [f"the online school is up in {time.monotonic() - started:.1f} s "
                 f"(SCHOOL_ENV={self.settings.school_env}, DB={self.settings.db})",
                 f"  LocalStack   {self.endpoint}",
                 f"  SMTP sink    {self.settings.smtp_host}:{self.settings.smtp_port} "
                 f"(mail in {shown(self.settings.var_dir / 'mail')}/)"]
        lines += [f"  {api:<12} http://127.0.0.1:{port(api)}  (docs: /docs)" for api in apis
                  if api != CONSOLE]
        if "issuer" in procfile_names(PROCFILE):
            lines.append(f"  {'issuer':<12} {self.settings.oidc_issuer}  (development sign-in; "
                         "school login --as student|instructor|admin|operator)")
        if CONSOLE in apis:
            lines.append(f"  {CONSOLE:<12} http://127.0.0.1:{port(CONSOLE)}  (topology, dead "
                         "letters with redrive, conversations; school trace <correlation-id>)")
            if not self.console_traces:
                lines.append("  (OTLP endpoint set: spans go there, so the console shows no "
                             "conversations)")
        lines += ["  a process that crashes is restarted with a backoff ([keep] lines say so)",
                  "  make status: the queues   make down or Ctrl-C: stop everything"]
        width = max(len(line) for line in lines)
        print("\n" + "=" * width + "\n" + "\n".join(lines) + "\n" + "=" * width, flush=True)

    def stop(self) -> None:
        if self.honcho is not None:
            say("stopping the processes")
            localstack.stop_group(self.honcho.pid)
            (self.run_dir / "honcho.pid").unlink(missing_ok=True)
            forget_processes(self.run_dir)
        if self.localstack is not None:
            say("stopping LocalStack")
            localstack.stop_group(self.localstack.pid)
            (self.run_dir / "localstack.pid").unlink(missing_ok=True)


def procfile_names(procfile: Path) -> list[str]:
    """The names of the Procfile's processes."""
    return [line.split(":", 1)[0] for line in procfile.read_text().splitlines()
            if line and not line.startswith("#")]


def forget_processes(run_dir: Path) -> None:
    """Remove the pid files keep.py left for processes honcho had to SIGKILL (it gives them
    5 s), so that nothing later reads a pid the system may have handed to another process."""
    for path in run_dir.glob("*.pid"):
        if path.stem not in OWN_PIDFILES:
            path.unlink(missing_ok=True)


def shown(path: Path) -> str:
    """A path relative to the repository when it lies inside it."""
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


class Stopped(Exception):
    pass


def _raise_stopped(signum: int, _frame: FrameType | None) -> None:
    raise Stopped(signum)


def main() -> int:
    started = time.monotonic()
    stack = Stack()
    signal.signal(signal.SIGTERM, _raise_stopped)
    signal.signal(signal.SIGINT, _raise_stopped)
    code = 0
    try:
        stack.start_localstack()
        stack.provision()
        stack.migrate()
        stack.start_processes()
        stack.banner(stack.wait_ready(), started)
        assert stack.honcho is not None
        code = stack.honcho.wait()
        # keep.py restarts what crashes, so honcho ends only when a supervisor itself is gone.
        say(f"honcho exited with code {code}: a process's supervisor stopped (see above)")
    except Stopped:
        say("stop requested")
    except Exception as exc:
        say(f"failed: {exc}")
        code = 1
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        stack.stop()
    say("stopped")
    return code


if __name__ == "__main__":
    raise SystemExit(main())
