"""`make bench`: the emulator's raw limits, each consumer's rate, SQS + SNS calls per
hop, idle receives and the API's latency, measured side by side in one run on one LocalStack of
its own. Prints a table (median and min-max of --runs runs) and writes var/bench/bench-<db>.json
and var/bench/bench-<db>.png. DB=postgres runs it on PostgreSQL."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import access, api, consumers, grading, hops, raw, school, tracing
from bench.report import Results, chart, table, write_json
from bench.session import Bench, BenchError, say
from deploy.local.client import ProblemError
from shared.settings import ROOT, Settings

PARTS = ("raw", "consumers", "grading", "hops", "idle", "api", "access", "tracing")
STACK_PARTS = {"hops", "idle", "api"}


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="make bench", description=__doc__,
                                epilog='e.g. make bench BENCH_ARGS="--runs 1 --only raw,api"')
    p.add_argument("--runs", type=int, default=3, help="runs of every part (default 3)")
    p.add_argument("--only", default=",".join(PARTS),
                   help=f"comma-separated parts to run (default all: {','.join(PARTS)})")
    p.add_argument("--raw-messages", type=int, default=3000, help="batch figures (3000)")
    p.add_argument("--raw-one", type=int, default=300, help="one-by-one loop (300)")
    p.add_argument("--analytics", type=int, default=2000, help="analytics messages (2000)")
    p.add_argument("--payment", type=int, default=1000, help="payment messages per case (1000)")
    p.add_argument("--students", type=int, default=200, help="grading students (200)")
    p.add_argument("--versions", type=int, default=3, help="grading versions each (3)")
    p.add_argument("--processes", type=int, default=2, help="grading worker processes (2)")
    p.add_argument("--burst", type=int, default=200, help="enrollments in the burst (200)")
    p.add_argument("--serial", type=int, default=10, help="enrollments one at a time (10)")
    p.add_argument("--idle-seconds", type=float, default=60, help="idle window (60 s)")
    p.add_argument("--requests", type=int, default=200, help="timed POSTs and sends (200)")
    p.add_argument("--out", type=Path, default=ROOT / "var" / "bench", help="var/bench")
    args = p.parse_args(argv)
    args.parts = [part for part in args.only.split(",") if part]
    unknown = set(args.parts) - set(PARTS)
    if unknown or not args.parts or args.runs < 1:
        p.error(f"--only takes parts of {', '.join(PARTS)} (got {args.only!r}); --runs >= 1")
    return args


def run_queue_parts(bench: Bench, args: argparse.Namespace, results: Results, run: int) -> None:
    if "raw" in args.parts:
        raw.measure(bench, raw.RawOptions(args.raw_messages, args.raw_one), results)
    if "consumers" in args.parts:
        consumers.measure(bench, consumers.ConsumerOptions(args.analytics, args.payment),
                          results, run)
    if "grading" in args.parts:
        grading.measure(bench, grading.GradingOptions(args.students, args.versions,
                                                      args.processes), results, run)
    if "access" in args.parts:
        access.measure(bench, access.AccessOptions(args.requests), results)
    if "tracing" in args.parts:
        tracing.measure(bench, tracing.TracingOptions(
            args.analytics // 2, args.payment // 2, args.requests), results)


def run_stack_parts(bench: Bench, args: argparse.Namespace, results: Results) -> None:
    hop_opts = hops.HopOptions(args.burst, args.serial, args.idle_seconds)
    api_opts = api.ApiOptions(args.requests)
    students = max(hops.students_needed(hop_opts), api_opts.requests + api_opts.warmup)
    with school.running(bench, students) as the_school:
        for run in range(args.runs):
            say(f"--- run {run + 1} of {args.runs}: the whole school ---")
            hops.measure(the_school, hop_opts, results, set(args.parts))
            if "api" in args.parts:
                api.measure(the_school, api_opts, results)


def meta(args: argparse.Namespace, settings: Settings, seconds: float, load: float
         ) -> dict[str, Any]:
    found = (ROOT / ".venv-localstack").glob("lib/python*/site-packages/localstack_core-*")
    version = next((p.name.removesuffix(".dist-info").split("-")[1] for p in found), "?")
    return {"db": settings.db, "runs": args.runs, "parts": args.parts,
            "date": datetime.now(UTC).isoformat(timespec="seconds"), "cpus": os.cpu_count(),
            "localstack": version, "seconds": round(seconds),
            # Other work on the machine skews every figure: the 1-minute load before and after.
            "load": [round(load, 2), round(os.getloadavg()[0], 2)], "options": {
                k: v for k, v in vars(args).items() if k not in ("parts", "only", "out")}}


def stop_on_sigterm() -> None:
    """SIGTERM ends the bench as Ctrl-C does: through every `finally`, stopping what it began."""
    def handler(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, handler)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    settings = Settings.from_env()
    stop_on_sigterm()
    results, started, load = Results(), time.monotonic(), os.getloadavg()[0]
    say(f"DB={settings.db}, {args.runs} run(s) of: {', '.join(args.parts)}")
    failure = None
    try:
        with Bench.open(settings.db, args.out) as bench:
            if set(args.parts) - STACK_PARTS:
                for run in range(args.runs):
                    say(f"--- run {run + 1} of {args.runs}: queues and consumers ---")
                    run_queue_parts(bench, args, results, run)
            if set(args.parts) & STACK_PARTS:
                run_stack_parts(bench, args, results)
    except (BenchError, ProblemError) as exc:  # ProblemError: an API refused the bench
        failure = str(exc)
    except KeyboardInterrupt:
        say("interrupted: everything the bench started is stopped")
        return 130
    info = meta(args, settings, time.monotonic() - started, load)
    if failure:  # what was measured before the failure is still shown, marked as partial
        info["failed"] = failure
        results.notes["failed"] = f"PARTIAL RESULTS: the run failed: {failure}"
    if results.figures:
        print(table(results, info))
        publish(results, info, args.out / f"bench-{settings.db}")
    if failure:
        say(f"FAILED: {failure}")
        return 1
    return 0


def publish(results: Results, info: dict[str, Any], stem: Path) -> None:
    write_json(results, info, stem.with_suffix(".json"))
    drawn = chart(results, info, stem.with_suffix(".png"))
    say(f"wrote {stem.with_suffix('.json')}" + (f" and {stem.with_suffix('.png')}" if drawn
                                                 else "") + f" in {info['seconds']} s")


if __name__ == "__main__":
    sys.exit(main())
