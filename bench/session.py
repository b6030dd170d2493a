"""What every part of the bench shares: its one LocalStack, fresh databases, topologies under
SCHOOL_ENVs of their own, worker processes, progress on stderr and polling with a deadline."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

from deploy.local import issuer, localstack, wait
from deploy.local.tokens import mint
from shared import aws, db, inspect
from shared.provision import Provisioner, Report
from shared.settings import ROOT, Settings

T = TypeVar("T")


class BenchError(RuntimeError):
    """A measurement that cannot be trusted (a queue not empty, a worker that died)."""


def say(text: str) -> None:
    """Progress for the person at the terminal: stderr, so stdout keeps only the table."""
    print(f"\r\033[K[bench] {text}", file=sys.stderr, flush=True)  # over any counter line


def progress(text: str) -> None:
    """One line that rewrites itself (a counter); end it with `say` or `done`."""
    print(f"\r  {text}\033[K", end="", file=sys.stderr, flush=True)


def done(text: str) -> None:
    print(f"\r  {text}\033[K", file=sys.stderr, flush=True)


def until(check: Callable[[], T], timeout: float, what: str, every: float = 0.1) -> T:
    """Poll `check` until it returns something truthy (deploy.local.wait.until);
    BenchError naming `what` at the deadline."""
    try:
        return wait.until(check, timeout, what, every)
    except TimeoutError as exc:
        raise BenchError(str(exc)) from None


@dataclass
class Bench:
    """One bench run: its LocalStack (on a free port), its folder under var/bench/, and the
    databases and SCHOOL_ENVs it made, so it can remove them all."""

    db: str
    folder: Path
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:6])
    endpoint: str = ""
    proc: subprocess.Popen[bytes] | None = None
    issuer: str = ""  # the run's identity issuer, for the API processes it starts itself
    issuer_proc: subprocess.Popen[bytes] | None = None
    _serial: int = 0

    @classmethod
    @contextlib.contextmanager
    def open(cls, db_kind: str, var_dir: Path) -> Iterator[Bench]:
        """Start LocalStack; on the way out (also Ctrl-C or an error) stop it and clean up."""
        bench = cls(db_kind, var_dir)
        bench.folder = var_dir / f"run-{bench.run_id}"
        ok = False
        try:
            bench.start()
            yield bench
            ok = True
        finally:
            bench.stop(remove=ok)

    def start(self) -> None:
        localstack.use_test_credentials()
        self.folder.mkdir(parents=True, exist_ok=True)
        self.endpoint = f"http://127.0.0.1:{localstack.free_port()}"
        say(f"starting LocalStack at {self.endpoint} (log: {self.log_dir / 'localstack.log'})")
        self.proc = localstack.start(self.endpoint, self.folder / "localstack",
                                     self.log_dir / "localstack.log")
        localstack.wait_healthy(self.endpoint, self.proc, timeout=120)
        self.issuer_proc, self.issuer = issuer.launch(self.folder, self.log_dir / "issuer.log")

    def token(self, sub: str, *groups: str) -> str:
        """An access token of the run's issuer, valid for longer than any run."""
        return mint(self.issuer, sub, list(groups), expires_in=86400)

    def stop(self, remove: bool) -> None:
        if self.issuer_proc is not None:
            self.stop_processes([self.issuer_proc], timeout=10)
            self.issuer_proc = None
        if self.proc is not None:
            localstack.stop_group(self.proc.pid, timeout=30)
            self.proc = None
        if remove:
            shutil.rmtree(self.folder, ignore_errors=True)
        else:
            say(f"kept {self.folder} (logs) for a look")
        say("stopped LocalStack and every process of the bench")

    @property
    def log_dir(self) -> Path:
        return self.folder / "log"

    def settings(self, school_env: str = "bench") -> Settings:
        return replace(Settings.from_env(), school_env=school_env, aws_endpoint_url=self.endpoint,
                       db=self.db, var_dir=self.folder)

    def client(self, name: str, read_timeout: int | None = None) -> Any:
        return aws.client(name, self.settings(), read_timeout)

    def name(self, what: str) -> str:
        """A name unique in this run, such as `b1a2b3c-7-analytics`."""
        self._serial += 1
        return f"b{self.run_id}-{self._serial}-{what}"

    # --- databases ------------------------------------------------------------------------------

    def database_url(self, name: str) -> str:
        """A fresh database: a SQLite file in the run's folder, or a new PostgreSQL database."""
        return db.url_of(name.replace("-", "_"), self.folder / "db" / f"{name}.sqlite",
                         postgres=self.db == "postgres")

    @staticmethod
    def drop(urls: list[str]) -> None:
        for url in urls:
            with contextlib.suppress(Exception):  # best effort: never mask the measurement
                db.drop_database(url)

    # --- topologies -----------------------------------------------------------------------------

    def provision(self, school_env: str) -> Report:
        """The whole topology under a SCHOOL_ENV of its own, so every case starts empty."""
        return Provisioner(self.client("sqs"), self.client("sns"), school_env,
                           say=lambda _text: None).run()

    def unprovision(self, school_env: str) -> None:
        """Delete the queues and the topic of a SCHOOL_ENV (LocalStack keeps them otherwise)."""
        sqs, sns = self.client("sqs"), self.client("sns")
        with contextlib.suppress(Exception):
            for url in sqs.list_queues(QueueNamePrefix=f"{school_env}-").get("QueueUrls", []):
                sqs.delete_queue(QueueUrl=url)
            for topic in sns.list_topics().get("Topics", []):
                if topic["TopicArn"].rsplit(":", 1)[1].startswith(f"{school_env}-"):
                    sns.delete_topic(TopicArn=topic["TopicArn"])

    # --- processes ------------------------------------------------------------------------------

    def process_env(self, school_env: str, endpoint: str | None = None,
                    extra: dict[str, str] | None = None) -> dict[str, str]:
        """The environment of a service process, as `make up` gives it, in this run's world."""
        keep = {k: v for k, v in os.environ.items()
                if not k.endswith(("_DATABASE_URL", "_PORT")) and not k.startswith("VIRTUAL_ENV")}
        return keep | {"PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1",
                       "SCHOOL_ENV": school_env, "AWS_ENDPOINT_URL": endpoint or self.endpoint,
                       "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
                       "AWS_DEFAULT_REGION": "us-east-1", "DB": self.db,
                       "SCHOOL_VAR_DIR": str(self.folder), "OIDC_ISSUER": self.issuer,
                       "OIDC_CLIENT_IDS": issuer.client_ids()} | (extra or {})

    def spawn(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        """A process in its own group (so it can be stopped with its children), logging to
        the run's log folder."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with (self.log_dir / f"{name}.log").open("ab") as log:
            return subprocess.Popen([sys.executable, *args], cwd=ROOT, env=env, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True)

    @staticmethod
    def stop_processes(procs: list[subprocess.Popen[bytes]], timeout: float = 30) -> None:
        """SIGTERM all at once (each has a shutdown deadline), then wait for every group and
        SIGKILL what is left after `timeout`."""
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            localstack.stop_group(proc.pid, timeout=timeout)

    # --- queues ---------------------------------------------------------------------------------

    def depth(self, sqs: Any, url: str) -> int:
        """Visible + in flight + delayed messages of a queue."""
        return inspect.depth(sqs, url).total
