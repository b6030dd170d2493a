"""The console's sign-in sessions, and the sign-ins under way (state and PKCE verifier).

Both are kept in this process's memory, behind a lock, not in a table: the console runs as one
gunicorn process (shared/serve.py) of one task (deploy/aws/console.py), so every request of a
browser reaches the memory that holds its session, and a restart merely asks the operators to
sign in again. Nothing here outlives a deploy, so no migration, purge job or cleanup of old rows
is needed; expired entries are dropped as new ones are made.

The browser holds only a random id (secrets.token_urlsafe(32)) in an HttpOnly cookie; the
principal, the CSRF token and the expiry stay here.
"""

from __future__ import annotations

import hmac
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from flask import Request

from shared.auth import Principal

COOKIE = "console_session"
CSRF_HEADER = "X-CSRF-Token"
MAX_SESSION = 8 * 3600.0  # seconds: a working day, however long the access token would last
_ID = re.compile(r"[A-Za-z0-9_-]{43}")  # secrets.token_urlsafe(32)

V = TypeVar("V")


class Expiring(Generic[V]):
    """Values under random keys until their expiry (time.time() seconds), at most `limit` of
    them: the oldest goes first when full, so anonymous callers cannot grow it without end."""

    def __init__(self, limit: int, clock: Callable[[], float] = time.time) -> None:
        self.limit, self.clock = limit, clock
        self._items: dict[str, tuple[float, V]] = {}
        self._lock = threading.Lock()

    def put(self, key: str, value: V, expires_at: float) -> None:
        with self._lock:
            now = self.clock()
            self._items = {k: item for k, item in self._items.items() if item[0] > now}
            while len(self._items) >= self.limit:
                del self._items[next(iter(self._items))]
            self._items[key] = (expires_at, value)

    def get(self, key: str) -> V | None:
        with self._lock:
            item = self._items.get(key)
            if item is not None and item[0] <= self.clock():
                del self._items[key]
                return None
        return item[1] if item is not None else None

    def take(self, key: str) -> V | None:
        """The value, removed whatever it is: a key good for one use."""
        with self._lock:
            item = self._items.pop(key, None)
        return item[1] if item is not None and item[0] > self.clock() else None

    def drop(self, key: str) -> None:
        with self._lock:
            self._items.pop(key, None)

    def __len__(self) -> int:
        with self._lock:
            now = self.clock()
            return sum(1 for expires_at, _ in self._items.values() if expires_at > now)


@dataclass(frozen=True)
class Session:
    principal: Principal
    csrf_token: str
    expires_at: float  # time.time() seconds


def cookie_value(request: Request, name: str) -> str | None:
    """The cookie's value if it has the shape of an id this module makes, else None."""
    value = request.cookies.get(name)
    return value if value is not None and _ID.fullmatch(value) else None


class Sessions:
    """shared.access.Sessions for the console: the session the cookie names, and its CSRF
    token, which a change must send back in X-CSRF-Token (a cookie alone never makes one)."""

    def __init__(self, limit: int = 10_000, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._sessions: Expiring[Session] = Expiring(limit, clock)

    def create(self, principal: Principal, token_expires_at: float) -> tuple[str, Session]:
        """A new session (id and record), ending with the token or after MAX_SESSION."""
        session = Session(principal, secrets.token_urlsafe(32),
                          min(token_expires_at, self.clock() + MAX_SESSION))
        session_id = secrets.token_urlsafe(32)
        self._sessions.put(session_id, session, session.expires_at)
        return session_id, session

    def session(self, request: Request) -> Session | None:
        session_id = cookie_value(request, COOKIE)
        return self._sessions.get(session_id) if session_id else None

    def end(self, request: Request) -> None:
        session_id = cookie_value(request, COOKIE)
        if session_id:
            self._sessions.drop(session_id)

    def principal(self, request: Request) -> Principal | None:
        session = self.session(request)
        return session.principal if session else None

    def csrf_ok(self, request: Request) -> bool:
        session, sent = self.session(request), request.headers.get(CSRF_HEADER, "")
        return session is not None and hmac.compare_digest(
            sent.encode("utf-8", "surrogateescape"), session.csrf_token.encode("ascii"))

    def __len__(self) -> int:
        return len(self._sessions)
