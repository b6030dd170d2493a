"""Part `access`: what checking access tokens costs a request. Two enrollment API processes
(gunicorn, as `make up` runs them) on databases of their own: one as it always runs, checking
each request's token (signature, claims, roles; keys cached), and one built with the check left
out (every request is the bench's admin, nothing verified). `POST /enrollments` is sent in turn
to the second, to the first with the same token each time (as a client sends it: verified
once, then remembered), and to the first with a token it has never seen (verified in full),
after a warm-up, and the medians are compared."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Any

from flask import Flask

from bench.api import enrollment_ready, p50_p99
from bench.report import Results
from bench.session import Bench, BenchError, done, progress, say, until
from deploy.local.client import Client, ProblemError
from deploy.local.localstack import free_port
from shared import bootstrap, db
from shared.access import Gate, Rule
from shared.auth import Principal, Verifier
from shared.serve import gunicorn_args

BENCH_ADMIN = Principal("bench-admin", frozenset({"admin"}), "bench")


class Unchecked(Gate):
    """The access check with the token check left out: every caller is the bench's admin.
    Only this module builds it; no service can."""

    def caller(self, rule: Rule) -> Principal:
        return BENCH_ADMIN


def unchecked(name: str) -> Flask:
    """The service's API without the token check (gunicorn's app for the `off` process)."""
    return bootstrap.api(name, access=Unchecked(Verifier("http://127.0.0.1:9", ["bench"])))


@dataclass(frozen=True)
class AccessOptions:
    requests: int = 200
    warmup: int = 20


def start_api(bench: Bench, school_env: str, app: str, label: str) -> tuple[Any, Client, str]:
    url = bench.database_url(f"{school_env}-{label}")
    db.migrate("enrollment", url)
    port = free_port()
    proc = bench.spawn(f"{school_env}-{label}", gunicorn_args("enrollment", app, port),
                       bench.process_env(school_env, extra={"ENROLLMENT_DATABASE_URL": url}))
    client = Client({"enrollment": f"http://127.0.0.1:{port}"}, timeout=10, trust_env=False,
                    token=bench.token("bench-admin", "admin"))
    what = f"the enrollment API (access {label})"
    until(lambda: enrollment_ready(client, proc, what), 60, what)
    return proc, client, url



def measure(bench: Bench, opts: AccessOptions, results: Results) -> None:
    say("access: POST /enrollments with the token check on and off, in turn")
    school_env = bench.name("access")[:20]
    bench.provision(school_env)
    started: list[tuple[Any, Client, str]] = []
    try:
        for label, app in (("on", "shared.bootstrap:api('enrollment')"),
                           ("off", "bench.access:unchecked('enrollment')")):
            started.append(start_api(bench, school_env, app, label))
        on, off = started[0][1], started[1][1]
        fresh = [bench.token(f"bench-admin-{n}", "admin") for n in range(opts.requests
                                                                          + opts.warmup)]
        samples = alternate(opts, {"off": (off, None), "on": (on, None), NEW: (on, fresh)})
    except ProblemError as exc:
        raise BenchError(f"the enrollment API refused the bench: {exc}") from None
    finally:
        for _, client, _ in started:
            client.close()
        Bench.stop_processes([proc for proc, _, _ in started], timeout=10)
        Bench.drop([url for _, _, url in started])
        bench.unprovision(school_env)
    report(samples, results)


NEW = "on, a new token each time"
Mode = tuple[Client, list[str] | None]  # the API's client, and a token per request if any


def alternate(opts: AccessOptions, modes: dict[str, Mode]) -> dict[str, list[float]]:
    """Each mode's POST latencies, one request of each in turn (so all see the same load)."""
    count = opts.requests + opts.warmup
    ready = {}
    for label, (client, _) in modes.items():
        course = client.create_course("Access", count + 5, 4990, "USD")["id"]
        ready[label] = (course, [client.new_student()["id"] for _ in range(count)])
    samples: dict[str, list[float]] = {label: [] for label in modes}
    for i in range(count):
        for label, (client, tokens) in modes.items():
            course, students = ready[label]
            caller = client.as_(tokens[i]) if tokens else client
            began = time.perf_counter()
            caller.enroll(students[i], course)
            if i >= opts.warmup:
                samples[label].append(time.perf_counter() - began)
        if i % 40 == 0:
            progress(f"access: {i}/{count}")
    return samples


def report(samples: dict[str, list[float]], results: Results) -> None:
    p50 = {label: p50_p99(values)[0] for label, values in samples.items()}
    for key, label in (("off", "off"), ("on", "on"), ("new", NEW)):
        results.add("access", f"access.{key}.p50", f"POST /enrollments p50, token check "
                    f"{label}", "ms", p50[label])
    for key, label in (("on", "on"), ("new", NEW)):
        cost = p50[label] - p50["off"]
        paired = statistics.median(a - b for a, b in zip(samples[label], samples["off"],
                                                         strict=True)) * 1000
        results.add("access", f"access.{key}.cost_p50", f"  cost, {label} (p50 - p50 off)",
                    "ms", cost)
        results.add("access", f"access.{key}.cost_paired", f"  cost, {label} (median of "
                    "paired differences)", "ms", paired)
    done(f"POST /enrollments p50: check off {p50['off']:.2f} ms, on {p50['on']:.2f} ms, "
         f"on with a new token each time {p50[NEW]:.2f} ms")
