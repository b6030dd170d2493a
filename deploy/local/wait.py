"""Waiting is polling with a deadline, never a fixed sleep (STYLE rule 10).

`until` is the one poll loop of the demo, the tests, the bench and the chaos run; the messaging
core in shared/ (relay, consumer, sender) paces its own loops."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def until(check: Callable[[], T], timeout: float, what: str, every: float = 0.25, *,
          tell: Callable[[float], object] | None = None, tell_every: float = 5.0) -> T:
    """Poll `check` every `every` s until it returns something truthy, and return that;
    TimeoutError naming `what` once `timeout` s have passed. While it waits, `tell` (if given)
    hears the seconds elapsed, at most every `tell_every` s: progress for a person."""
    started = time.monotonic()
    told = 0.0
    while True:
        result = check()
        if result:
            return result
        elapsed = time.monotonic() - started
        if elapsed > timeout:
            raise TimeoutError(f"not done after {timeout:.0f} s: {what}")
        if tell is not None and elapsed - told >= tell_every:
            told = elapsed
            tell(elapsed)
        time.sleep(every)
