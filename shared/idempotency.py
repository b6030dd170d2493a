"""HTTP idempotency: a retry with the same Idempotency-Key and body gets the first response, its
status and body; the same key with another body is refused as invalid, a 422. Keys
are kept for a retention, then purged (`purge`)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, Table, delete, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from shared.errors import Invalid

MAX_KEY = 200
# The header as an OpenAPI parameter, for every route that honours it (`@blp.doc(parameters=...)`).
OPENAPI_PARAMETER = {"in": "header", "name": "Idempotency-Key", "required": False,
                     "schema": {"type": "string", "maxLength": MAX_KEY},
                     "description": "A retry with the same key and body returns the first "
                                    "response; another body with the same key is a 422."}


def fingerprint(route: str, body: Any) -> str:
    canonical = json.dumps([route, body], sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def scoped(key: str | None, actor: str | None) -> str | None:
    """The stored form of a caller's key: its digest with the caller's `sub`, so one caller's
    key never replays another's response (the column holds the 64 hex digits)."""
    if key is None:
        return None
    return hashlib.sha256(f"{actor or ''}\n{key}".encode()).hexdigest()


@dataclass(frozen=True)
class IdempotencyKeys:
    table: Table

    @staticmethod
    def check(key: str | None) -> str | None:
        if key is not None and not 1 <= len(key) <= MAX_KEY:
            raise Invalid("Invalid Idempotency-Key header.",
                          {"Idempotency-Key": [f"must be 1 to {MAX_KEY} characters"]})
        return key

    def replay(self, session: Session, key: str, request_hash: str
               ) -> tuple[int, dict[str, Any]] | None:
        """The stored first response for this key, (status, body), or None if the key is new."""
        row = session.execute(select(self.table).where(self.table.c.key == key)).first()
        if row is None:
            return None
        if row.request_hash != request_hash:
            raise Invalid("This Idempotency-Key was used with a different request body.",
                          {"Idempotency-Key": ["already used with another body"]})
        return row.status_code, row.body

    def remember(self, session: Session, key: str, request_hash: str, status: int,
                 body: dict[str, Any]) -> None:
        """Store the response (a JSON-native body) in the request's transaction: both commit,
        or neither."""
        session.execute(insert(self.table).values(
            key=key, request_hash=request_hash, status_code=status, body=body,
            created_at=datetime.now(UTC)))


def respond_idempotent(sessions: sessionmaker[Session], keys: IdempotencyKeys, key: str | None,
                       route: str, body: dict[str, Any], status: int,
                       work: Callable[[Session], dict[str, Any]]
                       ) -> tuple[dict[str, Any], int]:
    """Run `work` in one transaction with the key's response stored beside its effects, and
    return the response as (body, status), the tuple a Flask view returns: `status` for a new
    request, the stored status for a retry.

    A retry with the key gets the stored response. When a concurrent request with the same key
    commits first, our insert of the key fails: answer with what it answered. Any other
    IntegrityError is the caller's conflict to explain.
    """
    digest = fingerprint(route, body) if key else ""
    try:
        with sessions.begin() as session:
            if key and (stored := keys.replay(session, key, digest)):
                return stored[1], stored[0]
            result = work(session)
            if key:
                keys.remember(session, key, digest, status, result)
        return result, status
    except IntegrityError:
        if key:
            with sessions() as session:
                if stored := keys.replay(session, key, digest):
                    return stored[1], stored[0]
        raise


def purge(engine: Engine, table: Table, older_than: timedelta, *, batch: int = 1000) -> int:
    """Delete the keys stored longer ago than `older_than` (a retry after that is a new
    request), `batch` rows a transaction so no lock is held long; return how many went."""
    cutoff = datetime.now(UTC) - older_than
    old = select(table.c.key).where(table.c.created_at < cutoff).limit(batch)
    deleted = 0
    while True:
        with engine.begin() as conn:
            gone = int(conn.execute(delete(table).where(table.c.key.in_(old))).rowcount or 0)
        deleted += gone
        if gone < batch:
            return deleted
