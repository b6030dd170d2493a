"""`make bench-grading`: how fast the assignment worker grades 1 assignment x 200 students x 3
versions, with submissions grouped by assignment and student (the topology) and by assignment
alone (as many tutorials do). Prints the median of 3 runs of each on the same LocalStack."""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime

from sqlalchemy import func, insert, select

from deploy.local import localstack
from services.assignment import handlers, tables
from shared import aws, db, logs
from shared.envelope import new_id
from shared.events import CATALOGUE
from shared.provision import Provisioner
from shared.runtime import Runtime, serve
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


def one_run(settings: Settings, grouping: str, args: argparse.Namespace, seed: int) -> float:
    """Load the submissions, then time `args.processes` worker processes grading them all."""
    env = f"b{uuid.uuid4().hex[:8]}"
    settings = replace(settings, school_env=env)
    bench_topology = topology(grouping)
    Provisioner(aws.client("sqs", settings), aws.client("sns", settings), env,
                bench_topology, say=lambda _text: None).run()
    url = db.database_url(f"bench_{env}", settings, {})  # a fresh database, dropped afterwards
    db.migrate("assignment", url)
    runtime = Runtime("assignment", settings, db.make_engine(url), tables.outbox,
                      tables.inbox, topology=bench_topology)
    workers: list[subprocess.Popen[bytes]] = []
    try:
        total = load(runtime, args.students, args.versions, random.Random(seed))
        env_vars = os.environ | {"SCHOOL_ENV": env, "AWS_ENDPOINT_URL": settings.aws_endpoint_url
                                 or "", "LOG_LEVEL": "WARNING"}
        started = time.monotonic()
        workers = [subprocess.Popen([sys.executable, "-m", "bench.grading", "--worker",
                                     grouping, "--database", url], env=env_vars)
                   for _ in range(args.processes)]
        while (done := graded(runtime)) < total:
            if any(w.poll() is not None for w in workers):
                raise RuntimeError("a benchmark worker exited early")
            time.sleep(0.2)
            print(f"\r  {grouping:<10} {done:>4}/{total} graded", end="", file=sys.stderr)
        elapsed = time.monotonic() - started
        print(f"\r  {grouping:<10} {total}/{total} graded in {elapsed:.1f} s", file=sys.stderr)
        return total / elapsed
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        for worker in workers:
            worker.wait(timeout=60)
        runtime.engine.dispose()
        db.drop_database(url)


def worker(grouping: str, url: str) -> int:
    """One grading worker process, as a deployment runs several."""
    settings = Settings.from_env()
    logs.configure("bench-worker", settings.log_level)
    bench_topology = topology(grouping)
    runtime = Runtime("assignment", settings, db.make_engine(url), tables.outbox,
                      tables.inbox, topology=bench_topology)
    consumer = runtime.consumer(runtime.dispatcher(handlers.HANDLERS),
                                bench_topology.queue(QUEUE))
    return serve(runtime, consumer, relay=None)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--students", type=int, default=200)
    parser.add_argument("--versions", type=int, default=3)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--processes", type=int, default=2,
                        help="worker processes (default 2, one per core of the reference machine)")
    parser.add_argument("--worker", choices=("student", "assignment"), help=argparse.SUPPRESS)
    parser.add_argument("--database", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args.worker, args.database)
    localstack.use_test_credentials()
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
                rates[grouping].append(one_run(settings, grouping, args, seed=run))
    finally:
        if proc is not None:
            localstack.stop_group(proc.pid)
    report(rates, args, settings)
    return 0


def report(rates: dict[str, list[float]], args: argparse.Namespace, settings: Settings) -> None:
    median = {g: statistics.median(r) for g, r in rates.items()}
    messages = args.students * args.versions
    print(f"\n{messages} submissions (1 assignment x {args.students} students x {args.versions} "
          f"versions), DB={settings.db}, {args.processes} worker processes x "
          f"{settings.consumer_concurrency} handler threads, median of {args.runs} runs")
    print(f"{'grouping':<32} {'messages/s':>10}   runs")
    labels = {"student": "<assignment_id>:<student_id>", "assignment": "<assignment_id> alone"}
    for grouping, rate in median.items():
        runs = ", ".join(f"{r:.1f}" for r in rates[grouping])
        print(f"{labels[grouping]:<32} {rate:>10.1f}   {runs}")
    print(f"ratio (per student / per assignment): {median['student'] / median['assignment']:.2f}")


if __name__ == "__main__":
    raise SystemExit(main())
