"""How a route calls a command: every route of every service is parse, call, respond, and the
call is one of three kinds.

- `read(rt, query, ...)`: a query in a session of its own;
- `command(rt, action, ...)`: an action in one transaction with the request's correlation id,
  so its changes and the events it writes to the outbox commit together; its events name the
  caller (`actor`);
- `idempotent(rt, keys, ...)`: such an action behind an Idempotency-Key (docs/services/),
  which is the caller's own: two callers' equal keys never meet.

`resource(blp, rt, ...)` declares the POST and GET of a resource that is created and read back.

A command raises a shared.errors.DomainError, which the web layer answers as problem+json."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from flask import g, request
from flask_smorest import Blueprint
from marshmallow import Schema
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from shared.access import current
from shared.errors import Conflict
from shared.handling import Producer
from shared.idempotency import IdempotencyKeys, respond_idempotent, scoped

if TYPE_CHECKING:
    from shared.runtime import Runtime


def read(rt: Runtime, query: Callable[..., Any], *args: Any) -> Any:
    with rt.sessions() as session:
        return query(session, *args)


def _producer(rt: Runtime) -> Producer:
    return rt.producer.acting_for(current().actor)


def command(rt: Runtime, action: Callable[..., Any], *args: Any, race: str | None = None,
            **body: Any) -> Any:
    """`action` in one transaction; an IntegrityError is a concurrent request that committed
    the same thing first: a conflict, explained by `race`."""
    try:
        with rt.writer.begin() as session:
            return action(session, _producer(rt), g.correlation_id, *args, **body)
    except IntegrityError:
        raise Conflict(race or "A concurrent request changed the same record; read it and "
                               "try again.") from None


def idempotent(rt: Runtime, keys: IdempotencyKeys, response: Schema, status: int, race: str,
               action: Callable[..., Any], *args: Any, **body: Any) -> tuple[dict[str, Any], int]:
    """`command(rt, action, *args, **body)` behind the request's Idempotency-Key, answered with
    `status` and the result as `response` dumps it; that dump is what a retry with the key gets.

    The key is bound to the method, the path and `body`. An IntegrityError that is not a race for
    the same key (which the retry's answer settles) is a concurrent request that committed the
    same thing first: a conflict, explained by `race`."""
    key = scoped(keys.check(request.headers.get("Idempotency-Key")), current().actor)
    producer = _producer(rt)

    def work(session: Session) -> dict[str, Any]:
        return dict(response.dump(action(session, producer, g.correlation_id, *args, **body)))

    try:
        return respond_idempotent(rt.writer, keys, key, f"{request.method} {request.path}", body,
                                  status, work)
    except IntegrityError:
        raise Conflict(race) from None


Rule = Callable[[Callable[..., Any]], Any]  # shared.access.allow(...) or public


def resource(blp: Blueprint, rt: Runtime, path: str, name: str, body: Schema,
             out: type[Schema], create: Callable[..., Any], get: Callable[[Session, str], Any],
             *, who_creates: Rule, who_reads: Rule) -> None:
    """The two routes of a resource a client creates and reads back: `POST path` runs the
    command `create` with the parsed `body` and answers 201, `GET path/<name>_id` runs the
    query `get`; both answer with `out`. Each has its access rule."""

    def post(parsed: dict[str, Any]) -> Any:
        return command(rt, create, **parsed)

    def get_one(**path_args: str) -> Any:
        return read(rt, get, path_args[f"{name}_id"])

    blp.route(path, methods=["POST"], endpoint=f"post_{name}")(
        who_creates(blp.arguments(body)(blp.response(201, out)(post))))
    blp.route(f"{path}/<id:{name}_id>", endpoint=f"get_{name}")(
        who_reads(blp.response(200, out)(get_one)))
