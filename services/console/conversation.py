"""A conversation, from its spans: every event in causal order, who wrote it, who handled it,
when, and how it ended. The page draws it as a sequence diagram; `school trace` prints it as a
tree (`tree`).

Causal order follows `causation_id`: an event comes after the event whose handler wrote it, and
events of the same cause in the order they were written. For each event, every consumer the
topology routes it to is listed, with each attempt of its handler (a `process` span): handled,
retry, duplicate, released (handed back untried) or dead_lettered; a consumer with no attempt
yet is `waiting`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from shared.db import utc
from shared.events import CATALOGUE
from shared.masking import mask_text
from shared.settings import SERVICES
from shared.topology import TOPOLOGY, QueueSpec

CLIENT = "client"


def routes(event_type: str) -> list[QueueSpec]:
    """The queues the topology delivers an event type to (directly, or from the topic)."""
    every = set(TOPOLOGY.on_topic(CATALOGUE.event_types()))  # all the topic carries
    return [q for q in TOPOLOGY.queues
            if event_type in q.sent_here
            or (q.subscribed and event_type in set(q.filter_events or every))]


def _ms(at: datetime, origin: datetime) -> float:
    return round((utc(at) - origin).total_seconds() * 1000, 1)


def assemble(correlation_id: str, rows: Sequence[Any]) -> dict[str, Any] | None:
    """The conversation `correlation_id` from its span rows (Store.conversation), or None when
    no event of it has arrived."""
    created = sorted((r for r in rows if r.kind == "create"), key=lambda r: r.started_at)
    if not created:
        return None
    origin = utc(min(r.started_at for r in rows))
    by_span = {r.span_id: r for r in created}
    events: dict[str, dict[str, Any]] = {}
    for r in created:
        event = events.setdefault(r.event_id, {
            "event_id": r.event_id, "event_type": r.event_type, "producer": r.service,
            "causation_id": r.causation_id, "at": utc(r.started_at).isoformat(),
            "offset_ms": _ms(r.started_at, origin), "destinations": {}, "handlings": {}})
        event["destinations"][r.destination] = {"name": r.destination, "published_ms": None}
    attempts: dict[tuple[str, str], list[Any]] = defaultdict(list)
    for r in sorted(rows, key=lambda r: r.started_at):
        parent = by_span.get(r.parent_id or "")
        if parent is None:
            continue
        if r.kind == "send":
            events[parent.event_id]["destinations"][parent.destination]["published_ms"] = _ms(
                r.started_at, origin)
        elif r.kind == "process":
            attempts[(parent.event_id, r.service)].append(r)
    for event in events.values():
        for spec in routes(event["event_type"]):
            event["handlings"][spec.consumer] = {
                "service": spec.consumer, "queue": spec.name, "outcome": "waiting",
                "attempts": []}
    for (event_id, service), tries in attempts.items():
        handling = events[event_id]["handlings"].setdefault(service, {
            "service": service, "queue": tries[0].destination, "outcome": "waiting",
            "attempts": []})
        handling["attempts"] = [{"outcome": t.outcome, "at": utc(t.started_at).isoformat(),
                                 "offset_ms": _ms(t.started_at, origin),
                                 "duration_ms": round(t.duration_ms, 1),
                                 "detail": _shown(t.detail)}
                                for t in tries]
        handling["outcome"] = _final(t.outcome for t in tries)
    ordered = _causal(list(events.values()))
    requests = sorted((r for r in rows if r.kind == "request"), key=lambda r: r.started_at)
    request = None
    if requests:
        first = requests[0]
        request = {"service": first.service, "name": first.name, "status": first.outcome,
                   "at": utc(first.started_at).isoformat(), "offset_ms": _ms(first.started_at,
                                                                            origin),
                   "duration_ms": round(first.duration_ms, 1)}
    involved = {e["producer"] for e in ordered} | {
        h["service"] for e in ordered for h in e["handlings"]} | (
        {request["service"]} if request else set())
    lanes = ([CLIENT] if request else []) + [s for s in SERVICES if s in involved] + sorted(
        involved - set(SERVICES))
    return {"correlation_id": correlation_id, "started_at": origin.isoformat(),
            "request": request, "lanes": lanes, "events": ordered,
            "outcomes": _count(ordered)}


def _shown(detail: str | None) -> str | None:
    """An attempt's detail is an exception's message or a dead-letter reason, which may quote
    the event it failed on: its payment tokens and emails are masked like a dead letter's."""
    return None if detail is None else mask_text(detail)


def _final(outcomes: Iterable[str]) -> str:
    """A consumer's result for an event: handled (or duplicate, or dead-lettered) once any
    attempt ended so, else the last attempt's (a retry still to come, or released)."""
    seen = list(outcomes)
    for final in ("handled", "dead_lettered", "duplicate"):
        if final in seen:
            return final
    return seen[-1] if seen else "waiting"


def _causal(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Depth-first from the events nothing in the conversation caused, children by time.

    The spans come from whoever can reach the intake, so the walk is a loop, not a recursion,
    and visits each event once: an event that names itself, or a cycle, as its cause is still
    shown, as a root of its own."""
    by_time = sorted(events, key=lambda e: e["offset_ms"])
    ids = {e["event_id"] for e in by_time}
    children: dict[str | None, list[dict[str, Any]]] = defaultdict(list)
    for e in by_time:
        cause = e["causation_id"] if e["causation_id"] in ids else None
        children[cause if cause != e["event_id"] else None].append(e)
    ordered: list[dict[str, Any]] = []
    seen: set[str] = set()
    # the roots first, then what no root leads to (a cycle), each from its earliest event
    for start in [*children[None], *by_time]:
        stack: list[tuple[dict[str, Any], int, dict[str, Any] | None]] = [(start, 0, None)]
        while stack:
            event, depth, cause = stack.pop()
            if event["event_id"] in seen:
                continue
            seen.add(event["event_id"])
            ordered.append(event | {
                "depth": depth, "caused_by": cause["event_type"] if cause else None,
                "destinations": list(event["destinations"].values()),
                "handlings": sorted(event["handlings"].values(),
                                    key=lambda h: _lane_order(h["service"]))})
            stack += [(child, depth + 1, event)
                      for child in reversed(children.get(event["event_id"], []))]
    return ordered


def _lane_order(service: str) -> int:
    return SERVICES.index(service) if service in SERVICES else len(SERVICES)


def _count(events: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for event in events:
        for handling in event["handlings"]:
            for attempt in handling["attempts"]:
                counts[attempt["outcome"]] += 1
            if not handling["attempts"]:
                counts["waiting"] += 1
    return dict(counts)
