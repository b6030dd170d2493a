"""`python -m deploy.local.keep -- <command>`: run one process of the Procfile and restart it when
it crashes. honcho stops every process as soon as one exits, so without this a killed worker took
the whole of `make up` down, LocalStack and its in-memory queues with it.

- A crash (a non-zero exit code, or death by a signal such as SIGKILL) is restarted after a
  backoff: `--backoff-base` seconds, doubled for each crash in a row up to `--backoff-cap`, and
  back to the base once the process has stayed up `--stable-after` seconds.
- SIGTERM or SIGINT is forwarded to the process (only to it: gunicorn, which `shared.serve api`
  execs, stops its own workers), and once it has exited the supervisor exits with its code. A
  process that was asked to stop is never restarted.
- A process that exits 0 without the supervisor being asked to stop (someone sent it SIGTERM
  directly) stopped cleanly: it is not restarted, and the supervisor stays, so that honcho keeps
  the rest of the stack running.
- While the process runs, its pid is in `<var>/run/<name>.pid` (name: honcho's
  HONCHO_PROCESS_NAME, e.g. `payment-worker.1`); `make demo` kills the payment worker through it.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from shared.backoff import Backoff
from shared.settings import Settings

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@dataclass(frozen=True)
class Policy:
    """When to restart: the backoff after a crash, and how long up counts as recovered."""

    backoff_base: float = 1.0
    backoff_cap: float = 30.0
    stable_after: float = 30.0


def pidfile(run_dir: Path, name: str) -> Path:
    """Where the supervisor of process `name` keeps the pid of the process it runs."""
    return run_dir / f"{name}.pid"


def describe(returncode: int) -> str:
    """'exited with code 3' or 'was killed by SIGKILL' (Popen gives a signal as -signum)."""
    if returncode >= 0:
        return f"exited with code {returncode}"
    try:
        return f"was killed by {signal.Signals(-returncode).name}"
    except ValueError:
        return f"was killed by signal {-returncode}"


class Keeper:
    """Runs `argv` until asked to stop, restarting it after each crash."""

    def __init__(self, name: str, argv: list[str], run_dir: Path, policy: Policy) -> None:
        self.name, self.argv, self.policy = name, argv, policy
        self.pidfile = pidfile(run_dir, name)
        self.backoff = Backoff(policy.backoff_base, policy.backoff_cap)
        self.child: subprocess.Popen[bytes] | None = None
        self.stop_signal: int | None = None
        self.crashes = 0  # in a row, without a stable run between them

    def say(self, text: str) -> None:
        print(f"[keep] {self.name}: {text}", flush=True)

    def run(self) -> int:
        """Start the process, restart it after each crash; the exit code once asked to stop."""
        with self._signals() as wakeup:
            while self.stop_signal is None:
                started = time.monotonic()
                pid, code = self._run_once()
                if self.stop_signal is not None:
                    name = signal.Signals(self.stop_signal).name
                    self.say(f"stopped on {name} ({describe(code)}); not restarting")
                    return code if code >= 0 else 128 - code
                if code == 0:
                    self.say(f"pid {pid} exited with code 0 though no stop reached this "
                             "supervisor: it was stopped on purpose, so it is not restarted; "
                             "the other processes keep running")
                    self._sleep(wakeup, None)
                    break
                uptime = time.monotonic() - started
                delay = self._next_delay(uptime)
                self.say(f"pid {pid} {describe(code)} after {uptime:.1f} s; restarting it in "
                         f"{delay:g} s, at {_clock(delay)} (crash {self.crashes} in a row; the "
                         f"delay doubles up to {self.policy.backoff_cap:g} s)")
                self._sleep(wakeup, delay)
        self.say("stop requested; not restarting")
        return 0

    def _run_once(self) -> tuple[int, int]:
        """Run the process once, its pid in the pid file while it lives: its pid and code."""
        self.child = subprocess.Popen(self.argv)
        self._write_pid(self.child.pid)
        if self.crashes:
            self.say(f"restarted (pid {self.child.pid})")
        if self.stop_signal is not None:  # arrived before self.child was set: forward it now
            self.child.send_signal(self.stop_signal)
        try:
            return self.child.pid, self.child.wait()
        finally:
            self.pidfile.unlink(missing_ok=True)

    def _next_delay(self, uptime: float) -> float:
        """The backoff before the next start; a process that stayed up long enough starts over."""
        self.crashes = 1 if uptime >= self.policy.stable_after else self.crashes + 1
        return self.backoff.ceiling(self.crashes)

    def _write_pid(self, pid: int) -> None:
        """Write the pid file atomically: a reader (make demo) never sees it half written."""
        self.pidfile.parent.mkdir(parents=True, exist_ok=True)
        partial = self.pidfile.with_name(self.pidfile.name + ".partial")
        partial.write_text(str(pid))
        partial.replace(self.pidfile)

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        """Remember the stop and pass it on; send_signal does nothing once the child is reaped,
        so a recycled pid is never signalled."""
        if self.stop_signal is None:
            self.stop_signal = signum
        if self.child is not None:
            self.child.send_signal(signum)

    @contextlib.contextmanager
    def _signals(self) -> Iterator[int]:
        """Install the stop handlers with a wakeup pipe, so that a backoff ends at once."""
        read_end, write_end = os.pipe()
        for fd in (read_end, write_end):
            os.set_blocking(fd, False)
        previous_fd = signal.set_wakeup_fd(write_end)
        previous = {sig: signal.signal(sig, self._on_signal) for sig in STOP_SIGNALS}
        try:
            yield read_end
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            signal.set_wakeup_fd(previous_fd)
            os.close(read_end)
            os.close(write_end)

    def _sleep(self, wakeup: int, timeout: float | None) -> None:
        """Wait `timeout` seconds (None: for ever) or until a stop signal, whichever is first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.stop_signal is None:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return
            # A signal that arrives after the check above has left a byte in the pipe.
            select.select([wakeup], [], [], remaining)
            with contextlib.suppress(BlockingIOError):  # nothing to drain: the timeout passed
                os.read(wakeup, 512)


def _clock(delay: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(time.time() + delay))


def parse(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(
        prog="python -m deploy.local.keep", usage="%(prog)s [options] -- command [arg ...]",
        description="Run a command; restart it with a backoff when it crashes.")
    parser.add_argument("--name", default=os.environ.get("HONCHO_PROCESS_NAME"),
                        help="the process's name (default: honcho's HONCHO_PROCESS_NAME)")
    parser.add_argument("--run-dir", type=Path, help="where the pid file goes "
                        "(default: var/run/ of SCHOOL_VAR_DIR)")
    policy = Policy()
    parser.add_argument("--backoff-base", type=float, default=policy.backoff_base)
    parser.add_argument("--backoff-cap", type=float, default=policy.backoff_cap)
    parser.add_argument("--stable-after", type=float, default=policy.stable_after)
    ours, command = _split(argv)
    args = parser.parse_args(ours)
    if not command:
        parser.error("no command: give it after --")
    if not args.name or not NAME.fullmatch(args.name):
        parser.error(f"--name must be letters, digits, '.', '_' or '-', got {args.name!r}")
    return args, command


def _split(argv: list[str]) -> tuple[list[str], list[str]]:
    """The supervisor's options before `--`, the command after it."""
    if "--" not in argv:
        return argv, []
    at = argv.index("--")
    return argv[:at], argv[at + 1:]


def main(argv: list[str] | None = None) -> int:
    args, command = parse(sys.argv[1:] if argv is None else argv)
    run_dir = args.run_dir or Settings.from_env().var_dir / "run"
    policy = Policy(args.backoff_base, args.backoff_cap, args.stable_after)
    return Keeper(args.name, command, run_dir, policy).run()


if __name__ == "__main__":
    raise SystemExit(main())
