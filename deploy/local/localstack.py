"""Start, wait for and stop LocalStack from its own virtual environment, without Docker."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from shared.settings import ROOT

VENV_PYTHON = ROOT / ".venv-localstack" / "bin" / "python"
# What the stack uses: SQS and SNS, and STS, whose GetCallerIdentity gives the relay the topic's
# account (shared/publisher.py, Publisher.topic_arn). LocalStack refuses any service not listed.
SERVICES = ("sqs", "sns", "sts")


def use_test_credentials() -> None:
    """LocalStack accepts any credentials; boto3 needs some. Real ones, if set, are kept."""
    for key, value in (("AWS_ACCESS_KEY_ID", "test"), ("AWS_SECRET_ACCESS_KEY", "test"),
                       ("AWS_DEFAULT_REGION", "us-east-1")):
        os.environ.setdefault(key, value)


def free_port() -> int:
    """A port nothing listens on now (for a LocalStack or an API that must not take 4566)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def healthy(endpoint: str) -> bool:
    """True when LocalStack answers its health check with SQS and SNS usable."""
    try:
        with urllib.request.urlopen(f"{endpoint}/_localstack/health", timeout=2) as response:
            services = json.load(response).get("services", {})
    except (OSError, ValueError, urllib.error.URLError):
        return False
    return all(services.get(s) in ("available", "running") for s in ("sqs", "sns"))


def start(endpoint: str, state_dir: Path, log_path: Path,
          services: tuple[str, ...] = SERVICES) -> subprocess.Popen[bytes]:
    """Start LocalStack listening at the endpoint's host and port, in its own process group,
    with only the given services (the stack needs SERVICES; a test may ask for others)."""
    if not VENV_PYTHON.exists():
        raise FileNotFoundError(f"{VENV_PYTHON.relative_to(ROOT)} is missing: run `make venv`")
    address = urlsplit(endpoint)
    state_dir.mkdir(parents=True, exist_ok=True)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTHON"))}
    env |= {
        "GATEWAY_LISTEN": f"{address.hostname}:{address.port or 4566}",
        "SERVICES": ",".join(services),
        "EAGER_SERVICE_LOADING": "1",
        "DNS_ADDRESS": "0",
        "FILESYSTEM_ROOT": str(state_dir),
        # Path-style queue URLs (http://host:port/queue/...) need no *.localstack.cloud DNS.
        "SQS_ENDPOINT_STRATEGY": "path",
        "SQS_DISABLE_CLOUDWATCH_METRICS": "1",
    }
    if "kms" in services:  # LocalStack's KMS needs a Python 3.12 behaviour on 3.11
        env["PYTHONPATH"] = str(Path(__file__).with_name("localstack_kms"))
    with log_path.open("ab") as log:
        return subprocess.Popen([str(VENV_PYTHON), "-m", "localstack.runtime.main"], env=env,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def wait_healthy(endpoint: str, proc: subprocess.Popen[bytes] | None, timeout: float = 90,
                 tick: Callable[[float], None] | None = None) -> None:
    started = time.monotonic()
    while not healthy(endpoint):
        elapsed = time.monotonic() - started
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"LocalStack exited with code {proc.returncode} while starting")
        if elapsed > timeout:
            raise TimeoutError(f"LocalStack at {endpoint} not healthy after {timeout:.0f} s")
        if tick:
            tick(elapsed)
        time.sleep(0.5)


def stop_group(pid: int, timeout: float = 15) -> bool:
    """SIGTERM a process group, then SIGKILL what is left; True if anything was running."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            # Reap our own children of that group: a zombie still counts as a group member.
            while os.waitpid(-pid, os.WNOHANG)[0]:
                pass
        except ChildProcessError:
            pass  # not our children (make down): nothing to reap
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    return True
