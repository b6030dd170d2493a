"""`make bench-grading`: how fast the assignment worker grades 1 assignment x 200 students x 3
versions, with submissions grouped by assignment and student (the topology) and by assignment
alone (as many tutorials do). Prints the median of 3 runs of each on the same LocalStack."""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import threading
import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime

from sqlalchemy import func, insert, select

from deploy.local import localstack
from services.assignment import handlers, tables
from shared import aws, db
from shared.envelope import new_id
from shared.events import CATALOGUE
from shared.provision import Provisioner
from shared.runtime import Runtime
from shared.settings import Settings
from shared.topology import TOPOLOGY, Topology

QUEUE = "assignment-submissions.fifo"
WORDS = ("queue", "fifo", "group", "order", "message", "consumer", "retry", "visibility",
         "batch", "event", "broker", "topic", "stream", "shard", "lease", "commit", "ledger",
         "outbox", "inbox", "replay")


def topology(grouping: str) -> Topology:
    spec = TOPOLOGY.queue(QUEUE)
    group_by = ("assignment_id", "student_id") if grouping == "student" else ("assignment_id",)
    return Topology(TOPOLOGY.topic, (replace(spec, group_by=group_by),))


def essay(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(60))


def load(runtime: Runtime, students: int, versions: int, rng: random.Random) -> int:
    """Store the assignment and every submission, then send one message per submission."""
    now = datetime.now(UTC)
    assignment_id = new_id()
    with runtime.writer.begin() as session:
        session.execute(insert(tables.assignments).values(
            id=assignment_id, course_id="bench", title="Benchmark", max_score=100,
            keywords=json.dumps(["queue", "fifo", "group", "order"]), due_at=None,
            created_at=now))
    sqs, spec = runtime.client("sqs"), runtime.topology.queue(QUEUE)
    url = sqs.get_queue_url(QueueName=f"{runtime.settings.school_env}-{QUEUE}")["QueueUrl"]
    entries = []
    with runtime.writer.begin() as session:
        for version in range(1, versions + 1):
            for student in range(students):
                row = {"id": new_id(), "assignment_id": assignment_id,
                       "student_id": f"s{student:03d}", "version": version,
                       "content": essay(rng), "status": "received", "received_at": now}
                session.execute(insert(tables.submissions).values(row))
                event = CATALOGUE.new("submission.received", {
                    "submission_id": row["id"], "assignment_id": assignment_id,
                    "student_id": row["student_id"], "version": version,
                    "content": row["content"]}, correlation_id="bench")
                entries.append({"Id": str(len(entries) % 10), "MessageBody": event.body(),
                                "MessageAttributes": event.attributes(),
                                "MessageGroupId": spec.group_id(event.data),
                                "MessageDeduplicationId": event.event_id})
    for start in range(0, len(entries), 10):
        sqs.send_message_batch(QueueUrl=url, Entries=entries[start:start + 10])
    return len(entries)


def graded(runtime: Runtime) -> int:
    with runtime.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(tables.submissions).where(
            tables.submissions.c.status == "graded")).scalar_one())


def one_run(settings: Settings, grouping: str, students: int, versions: int, seed: int) -> float:
    env = f"b{uuid.uuid4().hex[:8]}"
    settings = replace(settings, school_env=env)
    bench_topology = topology(grouping)
    Provisioner(aws.client("sqs", settings), aws.client("sns", settings), env,
                bench_topology, say=lambda _text: None).run()
    url = db.database_url(f"bench_{env}", settings, {})  # a fresh database, dropped afterwards
    db.migrate("assignment", url)
    runtime = Runtime("assignment", settings, db.make_engine(url), tables.outbox,
                      tables.inbox, topology=bench_topology)
    try:
        total = load(runtime, students, versions, random.Random(seed))
        consumer = runtime.consumer(runtime.dispatcher(handlers.HANDLERS),
                                    bench_topology.queue(QUEUE))
        stop = threading.Event()
        started = time.monotonic()
        thread = threading.Thread(target=consumer.run, args=(stop,))
        thread.start()
        while (done := graded(runtime)) < total:
            time.sleep(0.2)
            print(f"\r  {grouping:<8} {done:>4}/{total} graded", end="", file=sys.stderr)
        elapsed = time.monotonic() - started
        stop.set()
        thread.join()
        print(f"\r  {grouping:<8} {total}/{total} graded in {elapsed:.1f} s", file=sys.stderr)
        return total / elapsed
    finally:
        runtime.engine.dispose()
        db.drop_database(url)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--students", type=int, default=200)
    parser.add_argument("--versions", type=int, default=3)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    settings = Settings.from_env()
    proc = None
    if not settings.aws_endpoint_url or not localstack.healthy(settings.aws_endpoint_url):
        endpoint = f"http://127.0.0.1:{localstack.free_port()}"
        print(f"starting LocalStack at {endpoint} for the benchmark", file=sys.stderr)
        state = settings.var_dir / "bench-localstack"
        proc = localstack.start(endpoint, state, state / "localstack.log")
        localstack.wait_healthy(endpoint, proc)
        settings = replace(settings, aws_endpoint_url=endpoint)
    try:
        rates: dict[str, list[float]] = {"student": [], "assignment": []}
        for run in range(args.runs):
            for grouping in rates:
                rates[grouping].append(one_run(settings, grouping, args.students,
                                               args.versions, seed=run))
    finally:
        if proc is not None:
            localstack.stop_group(proc.pid)
    report(rates, args, settings)
    return 0


def report(rates: dict[str, list[float]], args: argparse.Namespace, settings: Settings) -> None:
    median = {g: statistics.median(r) for g, r in rates.items()}
    messages = args.students * args.versions
    print(f"\n{messages} submissions (1 assignment x {args.students} students x {args.versions} "
          f"versions), DB={settings.db}, consumer concurrency {settings.consumer_concurrency}, "
          f"median of {args.runs} runs")
    print(f"{'grouping':<32} {'messages/s':>10}   runs")
    labels = {"student": "<assignment_id>:<student_id>", "assignment": "<assignment_id> alone"}
    for grouping, rate in median.items():
        runs = ", ".join(f"{r:.1f}" for r in rates[grouping])
        print(f"{labels[grouping]:<32} {rate:>10.1f}   {runs}")
    print(f"ratio: {median['student'] / median['assignment']:.1f}x faster per student")


if __name__ == "__main__":
    raise SystemExit(main())
