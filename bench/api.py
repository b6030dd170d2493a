"""Part 5: `POST /enrollments` latency against a raw SendMessage to a standard queue on the same
LocalStack, with LocalStack running and with it frozen (SIGSTOP of its process group). Frozen,
the raw SendMessage times out (2 s, one attempt) while the API keeps answering: it only writes
to its outbox, and the relay publishes once LocalStack is thawed (always, even on Ctrl-C)."""

from __future__ import annotations

import contextlib
import os
import signal
import statistics
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from bench.hops import expected
from bench.report import Results
from bench.school import School
from bench.session import Bench, BenchError, done, progress, say
from deploy.local.client import Client, ProblemError, Unreachable

FROZEN_TIMEOUT = 2  # seconds: the raw SendMessage's connect and read timeout, one attempt


@dataclass(frozen=True)
class ApiOptions:
    requests: int = 200
    warmup: int = 20
    frozen_sends: int = 3  # each takes FROZEN_TIMEOUT when LocalStack is frozen


def p50_p99(samples: list[float]) -> tuple[float, float]:
    ms = [s * 1000 for s in samples]
    p99 = statistics.quantiles(ms, n=100, method="inclusive")[98] if len(ms) > 1 else ms[0]
    return statistics.median(ms), p99


def timed_calls(what: str, count: int, call: Callable[[int], None]) -> list[float]:
    out = []
    for i in range(count):
        started = time.perf_counter()
        call(i)
        out.append(time.perf_counter() - started)
        if i % 20 == 0:
            progress(f"{what}: {i}/{count}")
    return out


def enrollment_ready(client: Client, proc: Any, what: str) -> bool:
    """The enrollment API process the bench started answers /readyz; BenchError if it exited
    (`what` names it)."""
    if proc.poll() is not None:
        raise BenchError(f"{what} exited with {proc.returncode}")
    try:
        client.ready("enrollment")
        return True
    except (ProblemError, Unreachable):
        return False


def raw_client(bench: Bench, frozen: bool) -> Any:
    timeout = FROZEN_TIMEOUT if frozen else 10
    config = Config(connect_timeout=timeout, read_timeout=timeout,
                    retries={"mode": "standard", "max_attempts": 1})
    return boto3.session.Session().client("sqs", endpoint_url=bench.endpoint,
                                          region_name="us-east-1", config=config)


@contextlib.contextmanager
def frozen(bench: Bench) -> Iterator[None]:
    assert bench.proc is not None
    os.killpg(bench.proc.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.killpg(bench.proc.pid, signal.SIGCONT)


def post_latencies(school: School, opts: ApiOptions, course: str, students: list[str],
                   ids: list[str], label: str) -> list[float]:
    # No retries, and no proxy or netrc lookups per call (0.45 ms of client time each).
    client = Client(school.stack.urls, timeout=10, trust_env=False, token=school.api.token)

    def post(i: int) -> None:
        try:
            ids.append(client.enroll(students[i], course)["id"])
        except ProblemError as exc:
            raise BenchError(f"POST /enrollments ({label}): {exc.status} "
                             f"{exc.reply.text[:200]}") from None

    for i in range(opts.warmup):
        post(i)
    samples = timed_calls(f"POST /enrollments, {label}", opts.requests,
                          lambda i: post(opts.warmup + i))
    client.close()
    return samples


def send_latencies(sqs: Any, url: str, count: int, label: str) -> list[float | None]:
    """Seconds per SendMessage; None for a call that timed out."""
    out: list[float | None] = []
    for i in range(count):
        started = time.perf_counter()
        try:
            sqs.send_message(QueueUrl=url, MessageBody=f"probe {i}")
            out.append(time.perf_counter() - started)
        except (BotoCoreError, ClientError):  # ReadTimeoutError, ConnectTimeoutError
            out.append(None)
        if i % 20 == 0 or out[-1] is None:
            progress(f"raw SendMessage, {label}: {i + 1}/{count}")
    return out


def phase(school: School, opts: ApiOptions, results: Results, state: str, url: str,
          ids: list[str]) -> None:
    course = school.course(opts.requests + opts.warmup + 5)
    students = school.students[:opts.requests + opts.warmup]
    sqs = raw_client(school.bench, state == "frozen")
    sends = opts.frozen_sends if state == "frozen" else opts.requests
    if state == "running":
        send_latencies(sqs, url, opts.warmup, "warm-up")
    with frozen(school.bench) if state == "frozen" else contextlib.nullcontext():
        posts = post_latencies(school, opts, course, students, ids, state)
        raw = send_latencies(sqs, url, sends, state)
    post_p50, post_p99 = p50_p99(posts)
    answered = [s for s in raw if s is not None]
    send_p50, send_p99 = p50_p99(answered) if answered else (None, None)
    label = f"LocalStack {state}"
    results.add("api", f"api.{state}.post_p50", f"{label}: POST /enrollments p50", "ms", post_p50)
    results.add("api", f"api.{state}.post_p99", f"{label}: POST /enrollments p99", "ms", post_p99)
    results.add("api", f"api.{state}.send_p50", f"{label}: raw SendMessage p50", "ms", send_p50)
    results.add("api", f"api.{state}.send_p99", f"{label}: raw SendMessage p99", "ms", send_p99)
    results.ratio("api", f"api.{state}.ratio_p50", f"  {label}: POST p50 / SendMessage p50",
                  post_p50, send_p50)
    results.detail(f"api.{state}", {"posts": len(posts), "sends": len(raw),
                                    "send_timeouts": len(raw) - len(answered)})
    if len(answered) < len(raw):
        results.notes[f"api.{state}"] = (
            f"with LocalStack {state}, the raw SendMessage timed out ({len(raw) - len(answered)} "
            f"of {len(raw)} calls in the last run; {FROZEN_TIMEOUT} s read timeout, one "
            f"attempt) while POST /enrollments answered all {len(posts)} requests with a 202")
    shown = f"{send_p50:.1f} ms" if send_p50 is not None else "timed out"
    done(f"{label}: POST /enrollments p50 {post_p50:.1f} ms, p99 {post_p99:.1f} ms; "
         f"raw SendMessage p50 {shown}")


def measure(school: School, opts: ApiOptions, results: Results) -> None:
    say(f"POST /enrollments: {opts.requests} sequential requests after {opts.warmup} warm-up, "
        "against a raw SendMessage, with LocalStack running and then frozen")
    sqs = raw_client(school.bench, frozen=False)
    url = sqs.create_queue(QueueName=school.bench.name("probe"))["QueueUrl"]
    ids: list[str] = []
    before = school.inbox()
    try:
        phase(school, opts, results, "running", url, ids)
        phase(school, opts, results, "frozen", url, ids)
    finally:
        with contextlib.suppress(Exception):
            sqs.delete_queue(QueueUrl=url)
    # The frozen phase's events wait in the outbox; after the thaw every saga completes.
    # Each phase's course adds one course.created for analytics.
    school.settle(expected(before, len(ids)) + Counter({"analytics": 2}), ids, "after the thaw")
