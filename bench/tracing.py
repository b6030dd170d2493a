"""Part `tracing`: what tracing costs. The same measurements with tracing off (no
OTLP endpoint: the OpenTelemetry API is a no-op), on (every span and metric exported over
OTLP/HTTP to a receiver in the bench's own process), and on without the SQLAlchemy spans
(OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=sqlalchemy), one after another in each run:

- the consumer rate of analytics (standard queue) and payment (FIFO, 20 groups), as part 2
  measures it;
- `POST /enrollments` latency of one enrollment API process (gunicorn, as `make up` runs it),
  sequential requests after a warm-up.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

from bench.api import enrollment_ready, p50_p99, timed_calls
from bench.consumers import Case, Run, any_events, charge_requests
from bench.report import Results
from bench.session import Bench, BenchError, done, say, until
from deploy.local.client import Client, ProblemError
from deploy.local.localstack import free_port
from deploy.local.traces import Receiver, receiving
from shared import db

# Export within the run, not after it (the defaults are 5 s for spans and 60 s for metrics).
FAST_EXPORT = {"OTEL_BSP_SCHEDULE_DELAY": "500", "OTEL_METRIC_EXPORT_INTERVAL": "5000"}


@dataclass(frozen=True)
class TracingOptions:
    analytics: int = 1000
    payment: int = 500
    requests: int = 200
    warmup: int = 20


def modes(endpoint: str) -> list[tuple[str, dict[str, str]]]:
    on = {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, **FAST_EXPORT}
    return [("off", {}), ("on", on),
            ("on without SQL spans", on | {"OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "sqlalchemy"})]


def consumer_rate(bench: Bench, case: Case, env: dict[str, str]) -> float:
    return Run(bench, dataclasses.replace(case, env=case.env + tuple(env.items()))).measure()


def api_latency(bench: Bench, opts: TracingOptions, env: dict[str, str], label: str
                ) -> tuple[float, float]:
    """p50 and p99 of POST /enrollments on one enrollment API process (no worker: the rows
    wait in its outbox, which the request does not read)."""
    school_env = bench.name("api")[:20]
    bench.provision(school_env)
    url = bench.database_url(f"{school_env}-enrollment")
    db.migrate("enrollment", url)
    port = free_port()
    proc = bench.spawn(f"{school_env}-api", ["-m", "shared.serve", "api", "enrollment"],
                       bench.process_env(school_env, extra={
                           "ENROLLMENT_DATABASE_URL": url, "ENROLLMENT_PORT": str(port),
                           **env}))
    client = Client({"enrollment": f"http://127.0.0.1:{port}"}, timeout=10, trust_env=False,
                    token=bench.token("bench-admin", "admin"))
    try:
        until(lambda: enrollment_ready(client, proc, "the enrollment API"), 60,
              f"the enrollment API ({label})")
        count = opts.requests + opts.warmup
        course = client.create_course("Tracing", count + 5, 4990, "USD")["id"]
        students = [client.new_student()["id"] for _ in range(count)]
        for i in range(opts.warmup):
            client.enroll(students[i], course)

        def post(i: int) -> None:
            client.enroll(students[opts.warmup + i], course)
        samples = timed_calls(f"POST /enrollments, tracing {label}", opts.requests, post)
    except ProblemError as exc:
        raise BenchError(f"the enrollment API refused the bench ({label}): {exc}") from None
    finally:
        client.close()
        Bench.stop_processes([proc], timeout=10)
        Bench.drop([url])
        bench.unprovision(school_env)
    return p50_p99(samples)



def measure(bench: Bench, opts: TracingOptions, results: Results) -> None:
    say("tracing: the same work with tracing off and on (OTLP/HTTP to a receiver in this "
        "process), alternately")
    cases = [Case("tracing.analytics", "analytics, standard queue", "analytics", "analytics",
                  any_events(opts.analytics)),
             Case("tracing.payment", "payment, FIFO, 20 groups", "payment",
                  "payment-requests.fifo", charge_requests(opts.payment, 20),
                  databases=("payment_gateway",))]
    with receiving() as (receiver, endpoint):
        rates: dict[str, dict[str, float]] = {}
        for case in cases:
            for mode, env in modes(endpoint):
                started = time.monotonic()
                rate = consumer_rate(bench, case, env)
                rates.setdefault(case.key, {})[mode] = rate
                results.add("tracing", f"{case.key}.{mode}",
                            f"{case.label}, tracing {mode} (msgs/s)", "msgs/s", rate)
                say(f"  {case.label}, tracing {mode}: {time.monotonic() - started:.0f} s")
            for mode in list(rates[case.key])[1:]:
                results.ratio("tracing", f"{case.key}.ratio.{mode}", f"  ratio {mode} / off",
                              rates[case.key][mode], rates[case.key]["off"])
        latency: dict[str, tuple[float, float]] = {}
        for mode, env in modes(endpoint):
            latency[mode] = api_latency(bench, opts, env, mode)
            p50, p99 = latency[mode]
            results.add("tracing", f"tracing.api.{mode}.p50",
                        f"POST /enrollments p50, tracing {mode}", "ms", p50)
            results.add("tracing", f"tracing.api.{mode}.p99",
                        f"POST /enrollments p99, tracing {mode}", "ms", p99)
            done(f"POST /enrollments, tracing {mode}: p50 {p50:.1f} ms, p99 {p99:.1f} ms")
        for mode in list(latency)[1:]:
            results.ratio("tracing", f"tracing.api.ratio_p50.{mode}",
                          f"  POST p50 ratio {mode} / off", latency[mode][0], latency["off"][0])
        results.detail("tracing.exported", exported(receiver))


def exported(receiver: Receiver) -> dict[str, int]:
    """What reached the receiver in this run: spans per service (a check that it was on)."""
    with receiver.lock:
        counts: dict[str, int] = {}
        for span in receiver.spans:
            counts[span.service] = counts.get(span.service, 0) + 1
        return counts
