"""Waiting is polling with a deadline, never a fixed sleep (STYLE rule 10)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def until(check: Callable[[], T], timeout: float, what: str, every: float = 0.25) -> T:
    """Poll `check` until it returns something truthy; TimeoutError naming `what` at the end."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"not done after {timeout:.0f} s: {what}")
        time.sleep(every)


def say(text: str) -> None:
    """Progress for the person at the terminal (command-line output, so print)."""
    print(f"[chaos] {text}", flush=True)
