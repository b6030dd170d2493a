"""`make chaos`, reduced: its own stack, about 150 enrollments and every kind of fault, run as
`python -m deploy.local.chaos` is by `make chaos`; every invariant must hold."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from shared.settings import ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

FAULT_KINDS = ("worker_kill", "localstack_freeze", "smtp_down", "duplicate_topic",
               "duplicate_fifo")


def test_a_reduced_chaos_run_keeps_every_guarantee(tmp_path: Path, db_kind: str) -> None:
    report_path = tmp_path / "chaos.json"
    env = os.environ | {
        "CHAOS_EVENTS": "150", "CHAOS_SEED": "7", "DB": db_kind, "CHAOS_DIR": str(tmp_path),
        # The assignment worker is left alive here: its queue's 300 s visibility timeout
        # would make a SIGKILL cost this run five minutes (the full `make chaos` kills it).
        "CHAOS_KILL": "enrollment,payment,notification,analytics",
        "CHAOS_SMTP_DOWN_SECONDS": "10", "CHAOS_SETTLE_TIMEOUT": "420"}
    run = subprocess.run([sys.executable, "-m", "deploy.local.chaos", "--report",
                          str(report_path)], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=870)
    output = run.stdout[-6000:] + run.stderr[-2000:]
    assert report_path.exists(), output
    report = json.loads(report_path.read_text())
    assert report["error"] is None, output
    assert report["events_driven"]["enrollments accepted"] >= 150
    for kind in FAULT_KINDS + (("db_kill",) if db_kind == "postgres" else ()):
        assert report["faults"].get(kind, 0) > 0, f"no {kind} injected: {output}"
    broken = {name: found for name, found in report["invariants"].items()
              if found["violations"]}
    assert broken == {}, output
    assert run.returncode == 0, output
