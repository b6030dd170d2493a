"""One chaos run from start to end: stack, workload with faults, settle, DLQs, redrive, checks."""

from __future__ import annotations

import contextlib
import io
import random
import signal
import threading
import time
from collections import Counter
from pathlib import Path

from deploy.local.chaos import say
from deploy.local.chaos.checks import Checks
from deploy.local.chaos.client import Api
from deploy.local.chaos.config import ChaosConfig
from deploy.local.chaos.faults import DB_NOT_APPLICABLE, Injector, describe, schedule
from deploy.local.chaos.observe import DeadLetter, Observer, dead_letters
from deploy.local.chaos.report import Report
from deploy.local.chaos.stack import Stack
from deploy.local.chaos.tap import Tap
from deploy.local.chaos.workload import Workload
from shared import aws
from shared.cli import dlq_redrive
from shared.settings import ROOT


def run(config: ChaosConfig) -> Report:
    """Run, check, and stop everything started, whatever happens (also on Ctrl-C)."""
    started = time.monotonic()
    report = Report(config={"events": config.events, "seed": config.seed, "db": config.db,
                            "school_env": config.school_env, "folder": _shown(config.folder),
                            "freeze_seconds": config.freeze_seconds,
                            "kill_services": list(config.kill_services)})
    stack, api = Stack(config), Api({})
    try:
        stack.start()
        api.urls = stack.urls
        api.token = stack.admin_token()
        _run(config, stack, api, report)
    except Exception as exc:
        report.error = f"{type(exc).__name__}: {exc}"
        say(f"the run failed: {report.error}")
    finally:
        api.closed = True
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):  # a second Ctrl-C must not cut it short
                signal.signal(sig, signal.SIG_IGN)
        stack.stop()
        report.duration = time.monotonic() - started
    return report


def _run(config: ChaosConfig, stack: Stack, api: Api, report: Report) -> None:
    tap = Tap(stack.client("sqs"), stack.client("sns"), config.school_env, stack.topic_arn)
    tap.create()
    stop = threading.Event()
    threading.Thread(target=tap.run, args=(stop,), name="tap", daemon=True).start()
    workload = Workload(api, config.events, config.seed, config.concurrency, config.pace)
    say("creating students, courses and assignments")
    workload.setup()
    ops = workload.plan()
    rng = random.Random(f"{config.seed}:faults")
    injector = Injector(stack, tap, api, workload.progress, rng, schedule(config, rng))
    faults = threading.Thread(target=injector.run, args=(stop,), name="faults", daemon=True)
    faults.start()
    threading.Thread(target=_progress, args=(workload, injector, stop), daemon=True).start()
    say(f"driving {len(ops)} requests with {len(injector.faults)} faults on a seeded schedule")
    try:
        workload.drive(ops)
        say("workload done; injecting the faults still due")
        faults.join()
    finally:
        stop.set()
    with contextlib.suppress(Exception):
        tap.remove()
    report.driven = workload.ledger.driven()
    report.faults = describe(injector.counts, injector.details, config.db)
    report.fault_counts = dict(injector.counts) | (
        {} if config.db == "postgres" else {"db_kill": 0})
    if config.db != "postgres":
        report.notes["db_kill"] = DB_NOT_APPLICABLE
    _settle_and_check(config, stack, api, workload, report)


def _settle_and_check(config: ChaosConfig, stack: Stack, api: Api, workload: Workload,
                      report: Report) -> None:
    observer = Observer(stack, api, workload.ledger)
    observer.settle(config.settle_timeout, config.quiet_seconds, "settling")
    dlq = dead_letters(stack)
    report.dead_letters = _dead_letter_table(dlq)
    moved = redrive(stack, dlq)
    report.notes["redriven"] = moved
    if moved:
        observer.settle(config.settle_timeout, config.quiet_seconds, "after the redrive")
    state = observer.poll(full=True)
    report.invariants = Checks(api, workload.ledger, state, dlq).run()
    report.notes["http"] = dict(workload.ledger.http)
    report.notes["http retried"] = dict(api.retried)
    report.notes["analytics duplicates_absorbed"] = state.summary.get("duplicates_absorbed")
    report.notes["emails resent with the same Message-ID"] = len(state.mail) - len(
        {(m["event_id"], m["message_id"]) for m in state.mail})


def _dead_letter_table(dlq: list[DeadLetter]) -> dict[str, int]:
    return dict(sorted(Counter(f"{d.queue} {d.event_type} {d.dlq_reason or '(none)'}"
                               for d in dlq).items()))


def redrive(stack: Stack, dlq: list[DeadLetter]) -> dict[str, int]:
    """`school dlq redrive <queue>` for each DLQ that holds messages."""
    settings = stack.settings()
    sqs = aws.client("sqs", settings)
    moved = Counter(d.queue for d in dlq)
    for name in moved:
        out = io.StringIO()
        dlq_redrive(settings, sqs, stack.queue(name).spec, out=out)
        say(f"redrove {moved[name]} message(s): {out.getvalue().strip().splitlines()[-1]}")
    return dict(moved)


def _shown(path: Path) -> str:
    """A path relative to the repository when it lies inside it (reports travel)."""
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def _progress(workload: Workload, injector: Injector, stop: threading.Event) -> None:
    while not stop.wait(10):
        p, ledger = workload.progress, workload.ledger
        faults = ", ".join(f"{k} {n}" for k, n in sorted(injector.counts.items()))
        say(f"drive {p.done}/{p.total} ({100 * p.fraction:.0f} %): "
            f"{len(ledger.enrollments)} enrollments, {len(ledger.submissions)} submissions "
            f"accepted; faults so far: {faults or 'none'}")
