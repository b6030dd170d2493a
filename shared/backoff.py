"""Exponential backoff with full jitter, capped (AWS Architecture Blog, "Exponential Backoff
And Jitter"): spreading retries stops many failing consumers from retrying in lockstep."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Backoff:
    base: float = 2.0
    cap: float = 120.0
    # uniform(0, 1); a test passes a fixed value to see the ceiling itself.
    jitter: Callable[[], float] = field(default=random.random)

    def ceiling(self, attempt: int) -> float:
        """The largest delay for the n-th attempt (1-based): base * 2**(n-1), capped."""
        if attempt < 1:
            raise ValueError(f"attempt counts from 1, got {attempt}")
        return min(self.cap, self.base * 2 ** min(attempt - 1, 60))

    def delay(self, attempt: int) -> float:
        return self.jitter() * self.ceiling(attempt)
