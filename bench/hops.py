"""Parts 3 and 4: SQS + SNS calls per hop, counted by the proxy, under a burst of enrollments and
one enrollment at a time; and the ReceiveMessage calls each consumer makes while the school is
idle. A hop is one event delivered to one consuming service, counted from what the services
recorded: the new inbox rows of all five databases."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from bench.proxy import Counts
from bench.report import Results
from bench.school import PER_ENROLLMENT, School
from bench.session import done, progress, say
from shared.topology import TOPOLOGY, physical


@dataclass(frozen=True)
class HopOptions:
    burst: int = 200
    serial: int = 10
    idle_seconds: float = 60.0


def expected(before: Counter[str], enrollments: int) -> Counter[str]:
    return before + Counter({s: n * enrollments for s, n in PER_ENROLLMENT.items()})


def record(results: Results, name: str, label: str, calls: Counts, hops: int,
           enrollments: int) -> None:
    results.add("hops", f"hops.{name}.per_hop", f"{label}: calls per hop", "calls/hop",
                calls.total / hops)
    results.add("hops", f"hops.{name}.per_enrollment", f"{label}: calls per enrollment",
                "calls/enrollment", calls.total / enrollments)
    results.add("hops", f"hops.{name}.hops_per_enrollment", f"{label}: hops per enrollment",
                "hops", hops / enrollments)
    results.detail(f"hops.{name}", {"enrollments": enrollments, "hops": hops,
                                    "calls": calls.total, "actions": dict(calls.actions),
                                    "receives_by_queue": dict(calls.receives)})
    done(f"{label}: {calls.total} calls for {hops} hops ({calls.total / hops:.2f} per hop, "
         f"{calls.total / enrollments:.1f} per enrollment)")


def burst(school: School, opts: HopOptions, results: Results) -> None:
    """Every POST at once (8 clients), then wait until every saga has settled."""
    course = school.course(opts.burst + 5)
    students = school.students[:opts.burst]
    before_inbox, before = school.inbox(), school.proxy.snapshot()

    def enroll(student: str) -> str:
        return str(school.api.enroll(student, course, key=uuid.uuid4().hex)["id"])

    started = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(enroll, students))
    posted = time.monotonic() - started
    after_inbox = school.settle(expected(before_inbox, len(ids)), ids, "burst")
    calls = school.proxy.snapshot() - before
    say(f"  burst: {len(ids)} POSTs in {posted:.1f} s, settled in "
        f"{time.monotonic() - started:.1f} s")
    record(results, "burst", f"burst of {len(ids)}", calls,
           sum((after_inbox - before_inbox).values()), len(ids))


def serial(school: School, opts: HopOptions, results: Results) -> None:
    """One enrollment at a time, each settled before the next."""
    course = school.course(opts.serial + 5)
    students = school.students[opts.burst:opts.burst + opts.serial]
    before_inbox, before = school.inbox(), school.proxy.snapshot()
    inbox = before_inbox
    for i, student in enumerate(students):
        enrollment = school.enroll(student, course)
        inbox = school.settle(expected(inbox, 1), [enrollment], f"one at a time {i + 1}")
    calls = school.proxy.snapshot() - before
    record(results, "serial", f"one at a time (x{len(students)})", calls,
           sum((inbox - before_inbox).values()), len(students))


def idle(school: School, opts: HopOptions, results: Results) -> None:
    """ReceiveMessage calls per queue over a window in which nothing is sent."""
    school.settle(school.inbox(), [], "quiet before the idle window")
    before, started = school.proxy.snapshot(), time.monotonic()
    while (elapsed := time.monotonic() - started) < opts.idle_seconds:
        progress(f"idle window: {elapsed:.0f}/{opts.idle_seconds:.0f} s")
        time.sleep(min(1.0, opts.idle_seconds - elapsed))  # the window itself, not a wait
    calls = school.proxy.snapshot() - before
    minutes = (time.monotonic() - started) / 60
    for spec in TOPOLOGY.queues:
        count = calls.receives[physical(school.env, spec.name)]
        results.add("idle", f"idle.{spec.name}", f"{spec.consumer} ({spec.name}), per minute",
                    "per min", count / minutes)
    results.detail("idle", {"seconds": minutes * 60, "actions": dict(calls.actions)})
    done(f"idle: {calls.total} calls in {minutes * 60:.0f} s: "
         + ", ".join(f"{a} {n}" for a, n in calls.actions.most_common()))


def students_needed(opts: HopOptions) -> int:
    return opts.burst + opts.serial


def measure(school: School, opts: HopOptions, results: Results, parts: set[str]) -> None:
    if "hops" in parts:
        say(f"calls per hop: a burst of {opts.burst} enrollments, then {opts.serial} one at a "
            "time (tok_ok, 6 hops each: payment, enrollment, notification, analytics x3)")
        burst(school, opts, results)
        serial(school, opts, results)
    if "idle" in parts:
        say(f"idle receives: a {opts.idle_seconds:.0f} s window with nothing sent")
        idle(school, opts, results)
