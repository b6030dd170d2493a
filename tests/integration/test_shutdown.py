"""SIGTERM in the middle of a batch: in-flight work finishes, the rest is handed back at once,
nothing is lost or handled twice, and the worker exits 0 within its deadline."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from shared.settings import ROOT
from tests.support import probe
from tests.support.messages import depth, ping, send, wait_for

DEADLINE = 10


def start_worker(probe_stack) -> subprocess.Popen[str]:
    env = os.environ | {"SCHOOL_ENV": probe_stack.env, "PROBE_DATABASE_URL": probe_stack.url,
                        "SCHOOL_CONSUMER_CONCURRENCY": "2",
                        "SCHOOL_SHUTDOWN_DEADLINE": str(DEADLINE), "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "tests.support.probe_worker"], env=env,
                            cwd=ROOT, stderr=subprocess.PIPE, text=True)


def stop(proc: subprocess.Popen[str]) -> tuple[int, float, list[str], str]:
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=DEADLINE + 30)
    outcomes = [json.loads(line).get("outcome") for line in err.splitlines()
                if line.startswith("{")]
    return proc.returncode, time.monotonic() - started, [o for o in outcomes if o], err


def test_sigterm_mid_batch_loses_nothing(sqs, probe_stack):
    url = probe_stack.queue("probe-all").url
    events = [ping("s", n, sleep=1.5) for n in range(8)]
    for event in events:
        send(sqs, url, event)
    first = start_worker(probe_stack)
    try:
        wait_for(lambda: probe.handled(probe_stack.engine), 30, "the first message handled")
    finally:
        code, took, outcomes, log = stop(first)
    handled_first = len(probe.handled(probe_stack.engine))
    assert code == 0 and took < DEADLINE, (code, took, log[-4000:])
    assert 1 <= handled_first < len(events), "SIGTERM should land mid-batch"
    assert outcomes.count("handled") == handled_first  # in-flight work was finished, not cut
    assert "released" in outcomes  # the messages not started were handed back

    second = start_worker(probe_stack)
    try:
        # released, not left invisible: well within the queue's 30 s visibility timeout
        wait_for(lambda: len(probe.handled(probe_stack.engine)) == len(events), 20,
                 "the rest handled by the next worker")
    finally:
        code2, _, outcomes2, _ = stop(second)
    assert code2 == 0
    rows = probe.handled(probe_stack.engine)
    assert sorted(r.event_id for r in rows) == sorted(e.event_id for e in events)
    assert "duplicate" not in outcomes + outcomes2  # nothing was handled twice
    assert depth(sqs, url) == 0 and depth(sqs, probe_stack.queue("probe-all").dlq_url) == 0
