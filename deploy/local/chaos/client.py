"""The school's client (deploy/local/client.py) with the retries a careful client makes: a 5xx or
a lost connection is retried with the same Idempotency-Key, so a retry never doubles a request."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Mapping
from typing import Any

import requests

from deploy.local.client import Client

RETRIES = 8


class Api(Client):
    def __init__(self, urls: Mapping[str, str]) -> None:
        super().__init__(urls, timeout=60)
        self.retried: Counter[str] = Counter()  # why a request had to be sent again
        self._lock = threading.Lock()
        self.closed = False  # set when the run stops: requests in flight give up at once

    def exchange(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        """One request; retried on a 5xx or a connection error (counted in `retried`); the
        last answer, or RuntimeError when none came."""
        for attempt in range(RETRIES):
            if self.closed:
                raise RuntimeError("the run is stopping")
            try:
                reply = super().exchange(method, url, **kwargs)
            except requests.RequestException as exc:
                self._count(f"{type(exc).__name__}")
            else:
                if reply.status_code < 500 or attempt == RETRIES - 1:
                    return reply
                self._count(f"http {reply.status_code}")
            time.sleep(min(8.0, 0.25 * 2 ** attempt))
        raise RuntimeError(f"{method} {url}: no answer after {RETRIES} attempts")

    def _count(self, why: str) -> None:
        with self._lock:
            self.retried[why] += 1
