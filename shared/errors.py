"""The errors a service's commands raise: what went wrong in the domain's terms, with no HTTP in
them. The web layer (shared.web) maps each kind to a status and renders problem+json, so a
command can be called from a route, a test or a script alike."""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    """A request the domain refuses, with a message the caller can act on."""

    def __init__(self, detail: str, errors: dict[str, Any] | None = None) -> None:
        super().__init__(detail)
        self.detail, self.errors = detail, errors


class NotFound(DomainError):
    """The record the request names does not exist."""


class Conflict(DomainError):
    """The request does not fit the record's current state (a full course, a second seat)."""


class Invalid(DomainError):
    """The request is well-formed but breaks a rule (a reused Idempotency-Key, for one)."""


class TooLarge(Invalid):
    """A field is larger than the service accepts."""
