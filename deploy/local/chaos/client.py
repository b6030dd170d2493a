"""HTTP to the services' public APIs, with the retries a careful client makes: a 5xx or a lost
connection is retried with the same Idempotency-Key, so a retry never doubles a request."""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

import requests

RETRIES = 8


class Api:
    def __init__(self, urls: dict[str, str]) -> None:
        self.urls = urls
        self._local = threading.local()
        self.retried: Counter[str] = Counter()  # why a request had to be sent again
        self._lock = threading.Lock()
        self.closed = False  # set when the run stops: requests in flight give up at once

    @property
    def http(self) -> requests.Session:
        if not hasattr(self._local, "session"):
            self._local.session = requests.Session()
        session: requests.Session = self._local.session
        return session

    def call(self, method: str, service: str, path: str, body: Any = None,
             key: str | None = None, params: dict[str, str] | None = None) -> requests.Response:
        """One request; retried on a 5xx or a connection error (counted in `retried`)."""
        headers = {"Idempotency-Key": key} if key else {}
        for attempt in range(RETRIES):
            if self.closed:
                raise RuntimeError("the run is stopping")
            try:
                reply = self.http.request(method, self.urls[service] + path, json=body,
                                          params=params, headers=headers, timeout=60)
            except requests.RequestException as exc:
                self._count(f"{type(exc).__name__}")
            else:
                if reply.status_code < 500 or attempt == RETRIES - 1:
                    return reply
                self._count(f"http {reply.status_code}")
            time.sleep(min(8.0, 0.25 * 2 ** attempt))
        raise RuntimeError(f"{method} {service}{path}: no answer after {RETRIES} attempts")

    def _count(self, why: str) -> None:
        with self._lock:
            self.retried[why] += 1

    def post(self, service: str, path: str, body: Any = None, key: str | None = None
             ) -> requests.Response:
        return self.call("POST", service, path, body, key)

    def get(self, service: str, path: str, **params: str) -> Any:
        reply = self.call("GET", service, path, params=params or None)
        if reply.status_code != 200:
            raise RuntimeError(f"GET {service}{path}: {reply.status_code} {reply.text[:200]}")
        return reply.json()
