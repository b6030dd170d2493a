"""The console's HTTP API: the page, its JSON, the redrive buttons' actions, and the OTLP/HTTP
intake the stack's processes export their spans to.

Who may call what: the page and every /api route are an operator's, through
a sign-in session (services/console/signin.py) or a bearer token; an anonymous browser asking
for the page is sent to /login. The page's scripts and styles hold no data and are public. The
intake is for the exporters only: their shared secret in the x-school-otlp-token header."""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flask import Request, Response, request, send_from_directory
from flask_smorest import Blueprint
from marshmallow import Schema, fields
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from services.console import conversation, queues, signin
from services.console.store import MAX_BODY, BadExport, Store, Summary, decode
from shared.access import ANY, allow, machine, public
from shared.auth import OTLP_TOKEN_HEADER
from shared.errors import Invalid, NotFound
from shared.runtime import Runtime
from shared.topology import TOPOLOGY
from shared.web import raw_body

log = logging.getLogger(__name__)
STATIC = Path(__file__).resolve().parent / "static"
PROTOBUF = "application/x-protobuf"


class ConversationSummary(Schema):
    correlation_id = fields.String()
    started_at = fields.DateTime()
    last_at = fields.DateTime()
    first_event = fields.String()
    events = fields.Integer()
    retries = fields.Integer()
    dead_lettered = fields.Integer()


class SearchArgs(Schema):
    q = fields.String(load_default="", metadata={
        "description": "a correlation id, or an enrollment, student, submission (or other) id"})
    limit = fields.Integer(load_default=20, validate=lambda n: 1 <= n <= 200)


class RedriveResult(Schema):
    queue = fields.String()
    dlq = fields.String()
    completed = fields.Boolean()
    moved = fields.Integer(allow_none=True)
    message_id = fields.String()
    result = fields.String()


def _summary(s: Summary) -> dict[str, Any]:
    return s.__dict__


def exporters(secret: str | None) -> Callable[[Request], bool]:
    """The intake's credential check: the exporters' shared secret, compared in constant time.
    Without a secret configured nothing is accepted: an open intake would let anyone write
    conversations an operator then trusts."""
    if not secret:
        log.warning("SCHOOL_OTLP_TOKEN is not set: the span intake /v1/traces refuses every "
                    "export", extra={"outcome": "misconfigured"})
    expected = (secret or "").encode("utf-8")

    def check(req: Request) -> bool:
        sent = req.headers.get(OTLP_TOKEN_HEADER)
        return bool(expected) and sent is not None and hmac.compare_digest(
            sent.encode("utf-8", "surrogateescape"), expected)
    return check


def routes(rt: Runtime) -> list[Blueprint]:
    store = Store(rt.engine)
    view: queues.Queues = rt.resources.queues
    page = Blueprint("console", __name__, description="The operations console")

    @page.route("/")
    @allow(operator=ANY, sign_in="/login")
    @page.doc(responses={200: {"description": "The console's page (HTML)"}})
    def index() -> Response:
        """The console: topology, dead letters and conversations, updated live."""
        return send_from_directory(STATIC, "index.html", max_age=0)

    @page.route("/assets/<path:name>")
    @public
    @page.doc(responses={200: {"description": "A script, style sheet or picture of the page"},
                         404: "NOT_FOUND"})
    def asset(name: str) -> Response:
        """The page's own assets: it loads nothing from elsewhere."""
        return send_from_directory(STATIC, name, max_age=0)

    @page.route("/api/topology")
    @allow(operator=ANY)
    @page.alt_response(503, description="SQS cannot be reached")
    @page.response(200, description="The topic, the queues, the DLQs and the services, with "
                                    "every queue's depth, in-flight count and oldest age")
    def topology() -> Any:
        """The topology as a graph, with every queue's state now."""
        with queues.reaching(rt.settings):
            states = view.states()
        return queues.graph() | {"states": states, "env": rt.settings.school_env}

    @page.route("/api/dlqs")
    @allow(operator=ANY, errors=(409,))
    @page.response(200, description="Every DLQ with its messages")
    def dead_letters() -> Any:
        """Each DLQ's messages: event type, dlq_reason, dlq_error, source queue, age, body."""
        with queues.reaching(rt.settings):
            return {"dlqs": view.dead_letters()}

    @page.route("/api/dlqs/<string:queue>/redrive", methods=["POST"])
    @allow(operator=ANY, errors=(404, 409))
    @page.response(200, RedriveResult)
    def redrive_all(queue: str) -> Any:
        """Move every message of the queue's DLQ back to the queue."""
        with queues.reaching(rt.settings):
            return view.redrive_all(_spec(queue))

    @page.route("/api/dlqs/<string:queue>/messages/<string:message_id>/redrive",
                methods=["POST"])
    @allow(operator=ANY, errors=(404, 409))
    @page.response(200, RedriveResult)
    def redrive_one(queue: str, message_id: str) -> Any:
        """Move one message of the queue's DLQ back to the queue (on FIFO, the first of its
        group only: 409 otherwise)."""
        with queues.reaching(rt.settings):
            return view.redrive_one(_spec(queue), message_id)

    @page.route("/api/conversations")
    @allow(operator=ANY, errors=(422,))
    @page.arguments(SearchArgs, location="query")
    @page.response(200, ConversationSummary(many=True))
    def conversations(args: dict[str, Any]) -> Any:
        """The latest conversations, or those a search names."""
        found = store.search(args["q"], args["limit"]) if args["q"].strip() else store.recent(
            args["limit"])
        return [_summary(s) for s in found]

    @page.route("/api/conversations/<string:correlation_id>")
    @allow(operator=ANY, errors=(404,))
    @page.response(200, description="Every event of the conversation in causal order, who "
                                    "produced it, who handled it, when and how")
    def one_conversation(correlation_id: str) -> Any:
        """One conversation, assembled from its spans."""
        found = conversation.assemble(correlation_id, store.conversation(correlation_id[:64]))
        if found is None:
            raise NotFound(f"no event of conversation {correlation_id!r} has reached the console")
        return found

    @page.before_request
    def larger_exports() -> None:
        # An export of a collector's full batch (8,192 spans) can pass the 1 MiB that every
        # other route allows; the intake takes up to the store's own limit (Flask 3.1's
        # per-request max_content_length, answered with 413 above it).
        if request.endpoint == f"{page.name}.intake":
            request.max_content_length = MAX_BODY

    @page.route("/v1/traces", methods=["POST"])
    @machine(exporters(rt.settings.otlp_token),
             f"For the stack's span exporters only: {OTLP_TOKEN_HEADER} must carry their "
             "shared secret (SCHOOL_OTLP_TOKEN, sent with OTEL_EXPORTER_OTLP_HEADERS).")
    @page.doc(responses={200: {"description": "ExportTraceServiceResponse (protobuf)"},
                         413: "REQUEST_ENTITY_TOO_LARGE", 422: "UNPROCESSABLE_ENTITY"})
    @raw_body
    def intake() -> Response:
        """OTLP/HTTP trace intake (protobuf): where the stack's processes export their spans."""
        if request.mimetype != PROTOBUF:
            raise Invalid(f"an OTLP/HTTP export is sent as Content-Type: {PROTOBUF}")
        try:
            export = decode(request.get_data(), request.headers.get("Content-Encoding"))
        except BadExport as exc:
            raise Invalid(str(exc)) from None
        store.ingest(export)
        return Response(ExportTraceServiceResponse().SerializeToString(), mimetype=PROTOBUF)

    return [page, signin.routes(rt.resources.signin)]


def _spec(queue: str) -> Any:
    try:
        return TOPOLOGY.queue(queue)
    except KeyError as exc:
        raise NotFound(str(exc.args[0])) from None
