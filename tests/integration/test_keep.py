"""deploy/local/keep.py, the supervisor of each Procfile process, with real processes: a crash is
restarted after a doubling, capped backoff that starts over after a stable run; a stop signal is
forwarded and nothing is restarted after it. No LocalStack, no database."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from shared.settings import ROOT
from tests.support.messages import wait_for

# The supervised process: logs each start (once its handlers are in place) and each stop signal
# to argv[1], then follows the
# plan in argv[2], one entry per start (the last repeats): `crash` exits 3 at once, `up:<s>`
# exits 3 after <s> seconds, `run` runs until a signal. A signal makes it exit 0, as the
# workers and gunicorn do.
CHILD = """
import os, signal, sys, time
log, plan = sys.argv[1], sys.argv[2].split(",")
def stop(signum, _frame):
    with open(log, "a") as f:
        f.write(f"signal {signum}\\n")
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
signal.signal(signal.SIGINT, stop)
with open(log) as f:
    n = f.read().count("start")
with open(log, "a") as f:
    f.write(f"start {os.getpid()} {time.monotonic()}\\n")
action = plan[min(n, len(plan) - 1)]
if action == "crash":
    sys.exit(3)
if action.startswith("up:"):
    time.sleep(float(action[3:]))
    sys.exit(3)
while True:
    time.sleep(60)
"""


@dataclass
class Supervised:
    proc: subprocess.Popen[str]
    log: Path
    pidfile: Path
    lines: list[str] = field(default_factory=list)

    def starts(self) -> list[tuple[int, float]]:
        """(pid, monotonic time) of each start of the supervised process."""
        return [(int(pid), float(at)) for kind, pid, at in
                (line.split() for line in self.log.read_text().splitlines()
                 if line.startswith("start"))]

    def signals(self) -> list[int]:
        return [int(line.split()[1]) for line in self.log.read_text().splitlines()
                if line.startswith("signal")]

    def said(self, text: str) -> bool:
        return any(text in line for line in self.lines)

    def started(self, count: int = 1) -> int:
        """Wait for the `count`-th start (its signal handlers in place); its pid."""
        starts = wait_for(lambda: len(s := self.starts()) >= count and s, 10, f"start {count}")
        return starts[count - 1][0]

    def pid(self) -> int | None:
        try:
            return int(self.pidfile.read_text())
        except FileNotFoundError:
            return None

    def stop(self, sig: int = signal.SIGTERM) -> tuple[int, float]:
        """Signal the supervisor alone (not its group): its exit code and how long it took."""
        started = time.monotonic()
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=10), time.monotonic() - started


@pytest.fixture
def supervise(tmp_path: Path) -> Iterator:  # type: ignore[type-arg]
    """Start keep.py over CHILD with a plan; every process it started is gone afterwards."""
    started: list[Supervised] = []

    def start(plan: str, base: float = 0.2, cap: float = 0.8, stable: float = 1.5
              ) -> Supervised:
        log = tmp_path / f"child{len(started)}.log"
        log.touch()
        name = f"probe-{len(started)}.1"
        proc = subprocess.Popen(
            [sys.executable, "-m", "deploy.local.keep", "--name", name, "--run-dir",
             str(tmp_path / "run"), "--backoff-base", str(base), "--backoff-cap", str(cap),
             "--stable-after", str(stable), "--", sys.executable, "-c", CHILD, str(log), plan],
            cwd=ROOT, env=os.environ | {"PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, start_new_session=True)
        supervised = Supervised(proc, log, tmp_path / "run" / f"{name}.pid")
        assert proc.stdout is not None
        threading.Thread(target=lambda: supervised.lines.extend(iter(proc.stdout.readline, "")),
                         daemon=True).start()
        started.append(supervised)
        return supervised

    yield start
    for supervised in started:
        if supervised.proc.poll() is None:
            os.killpg(supervised.proc.pid, signal.SIGKILL)
            supervised.proc.wait()


def test_crashes_restart_after_a_doubling_capped_backoff_that_starts_over(supervise) -> None:
    # 4 crashes in a row, then one after 2 s up (more than --stable-after), then it stays up.
    keep = supervise("crash,crash,crash,crash,up:2,run")
    starts = wait_for(lambda: len(s := keep.starts()) == 6 and s, 30, "6 starts")
    gaps = [later - earlier for (_, earlier), (_, later) in zip(starts, starts[1:], strict=False)]
    expected = [0.2, 0.4, 0.8, 0.8, 2 + 0.2]  # the 5th start ran 2 s before its crash
    assert all(gap >= delay for gap, delay in zip(gaps, expected, strict=True)), gaps
    assert all(gap < delay + 1.5 for gap, delay in zip(gaps, expected, strict=True)), gaps
    announced = [line for line in keep.lines if "restarting it in" in line]
    assert [line.split("restarting it in ")[1].split(" s,")[0] for line in announced] \
        == ["0.2", "0.4", "0.8", "0.8", "0.2"]
    assert all("exited with code 3" in line for line in announced)
    assert "(crash 1 in a row" in announced[-1]  # the stable run reset the count
    wait_for(lambda: keep.pid() == starts[-1][0], 10, "the pid file of the 6th start")
    code, took = keep.stop()
    assert (code, keep.signals(), len(keep.starts())) == (0, [signal.SIGTERM], 6)
    assert took < 5 and keep.pid() is None


def test_a_sigkilled_process_is_restarted_and_the_pid_file_follows(supervise) -> None:
    keep = supervise("run")
    first = keep.started()
    assert keep.pid() == first
    os.kill(first, signal.SIGKILL)
    second = keep.started(2)
    wait_for(lambda: keep.pid() == second, 10, "the new pid in the pid file")
    assert len(keep.starts()) == 2
    assert keep.said(f"pid {first} was killed by SIGKILL") and keep.said(f"restarted (pid "
                                                                         f"{second})")
    assert keep.stop()[0] == 0


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_signal_is_forwarded_and_nothing_restarts(supervise, sig: int) -> None:
    keep = supervise("run")
    keep.started()
    code, took = keep.stop(sig)
    assert (code, keep.signals(), len(keep.starts())) == (0, [sig], 1)
    assert took < 5 and keep.pid() is None
    assert keep.said(f"stopped on {signal.Signals(sig).name} (exited with code 0)")


def test_a_stop_during_the_backoff_ends_it_at_once(supervise) -> None:
    keep = supervise("crash", base=30, cap=60)
    wait_for(lambda: keep.said("restarting it in 30 s"), 10, "the first crash")
    code, took = keep.stop()
    assert (code, len(keep.starts())) == (0, 1) and took < 3


def test_a_clean_exit_of_its_own_is_not_restarted_and_the_rest_keep_running(supervise
                                                                             ) -> None:
    keep = supervise("run")
    os.kill(keep.started(), signal.SIGTERM)  # to the process, not to its supervisor
    wait_for(lambda: keep.said("exited with code 0 though no stop reached"), 10,
             "the clean exit")
    # It said so after deciding: no restart, and it stays up so that honcho stops nothing.
    assert keep.proc.poll() is None and len(keep.starts()) == 1 and keep.pid() is None
    code, took = keep.stop()
    assert (code, len(keep.starts())) == (0, 1) and took < 3
