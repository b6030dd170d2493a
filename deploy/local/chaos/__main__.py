"""`make chaos` / `python -m deploy.local.chaos`: exit 0 when every invariant held, 1 when one
broke, 2 when the run itself could not finish (its stack did not start, for example)."""

from __future__ import annotations

import argparse
import dataclasses
import signal
import sys
from pathlib import Path
from types import FrameType

from deploy.local.chaos import say
from deploy.local.chaos.config import ChaosConfig
from deploy.local.chaos.run import run
from shared.settings import ConfigError


def _interrupt(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    try:
        config = ChaosConfig.from_env()
    except ConfigError as exc:
        print(f"make chaos: {exc}", file=sys.stderr)
        return 2
    parser = argparse.ArgumentParser(prog="python -m deploy.local.chaos", description=__doc__)
    parser.add_argument("--events", type=int, default=config.events,
                        help="enrollments to drive (CHAOS_EVENTS, default 1000)")
    parser.add_argument("--seed", type=int, default=config.seed, help="CHAOS_SEED")
    parser.add_argument("--report", type=Path, help="also write the JSON report here")
    args = parser.parse_args(argv)
    config = dataclasses.replace(config, events=args.events, seed=args.seed)
    for sig in (signal.SIGTERM, signal.SIGINT):  # SIGINT too: a shell may have ignored it
        signal.signal(sig, _interrupt)
    try:
        report = run(config)
    except KeyboardInterrupt:
        say("interrupted: everything the run started has been stopped")
        return 130
    print(report.table(), flush=True)
    path = config.folder / "report.json"
    report.write(path)
    if args.report:
        report.write(args.report)
    say(f"report: {path}")
    if report.error:
        return 2
    return 0 if report.passed else 1


if __name__ == "__main__":
    sys.exit(main())
