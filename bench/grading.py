"""Grading throughput with 2 (or more) assignment worker processes: 1 assignment x 200 students
x 3 versions, with submissions grouped by `<assignment_id>:<student_id>` (the topology) and by
`<assignment_id>` alone (as many tutorials do). A FIFO group has at most one message in flight,
so grouping by assignment serialises the whole class (`make bench BENCH_ARGS="--only grading"`)."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Engine, insert

from bench.consumers import Case, Loader, Run
from bench.report import Results
from bench.session import Bench, say
from services.assignment import tables
from shared.envelope import Envelope, new_id
from shared.events import CATALOGUE

QUEUE = "assignment-submissions.fifo"
WORDS = ("queue", "fifo", "group", "order", "message", "consumer", "retry", "visibility",
         "batch", "event", "broker", "topic", "stream", "shard", "lease", "commit", "ledger",
         "outbox", "inbox", "replay")
GROUPINGS = {"student": "<assignment_id>:<student_id>", "assignment": "<assignment_id> alone"}


@dataclass(frozen=True)
class GradingOptions:
    students: int = 200
    versions: int = 3
    processes: int = 2


def essay(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(60))


def submissions(opts: GradingOptions, grouping: str, seed: int) -> Loader:
    """A loader: store the assignment and every submission (the API's part), then return one
    submission.received per submission, grouped as asked."""
    def load(engine: Engine) -> list[tuple[Envelope, str | None]]:
        rng, now, assignment_id = random.Random(seed), datetime.now(UTC), new_id()
        out: list[tuple[Envelope, str | None]] = []
        with engine.begin() as conn:
            conn.execute(insert(tables.assignments).values(
                id=assignment_id, course_id="bench", title="Benchmark", max_score=100,
                keywords=["queue", "fifo", "group", "order"], due_at=None,
                created_at=now))
            for version in range(1, opts.versions + 1):
                for student in range(opts.students):
                    row = {"id": new_id(), "assignment_id": assignment_id,
                           "student_id": f"s{student:03d}", "version": version,
                           "content": essay(rng), "status": "received", "received_at": now}
                    conn.execute(insert(tables.submissions).values(row))
                    event = CATALOGUE.new("submission.received", {
                        "submission_id": row["id"], "assignment_id": assignment_id,
                        "student_id": row["student_id"], "version": version,
                        "content": row["content"]}, correlation_id="bench")
                    group = (f"{assignment_id}:{row['student_id']}" if grouping == "student"
                             else assignment_id)
                    out.append((event, group))
        return out
    return load


def measure(bench: Bench, opts: GradingOptions, results: Results, run: int) -> None:
    total = opts.students * opts.versions
    say(f"grading: {total} submissions (1 assignment x {opts.students} students x "
        f"{opts.versions} versions), {opts.processes} worker processes")
    rates = {}
    for grouping, label in GROUPINGS.items():
        case = Case(f"grading.{grouping}", f"grading, grouped by {label}", "assignment", QUEUE,
                    submissions(opts, grouping, seed=run), processes=opts.processes)
        rates[grouping] = Run(bench, case).measure()
        results.add("grading", case.key, f"{case.label} (msgs/s)", "msgs/s", rates[grouping])
    results.ratio("grading", "grading.ratio", "  ratio, by student to by assignment",
                  rates["student"], rates["assignment"])
