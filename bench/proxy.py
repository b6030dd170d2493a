"""A counting HTTP proxy between the services and LocalStack: every SQS and SNS API call is
counted by action, and ReceiveMessage also by queue. Counted, not estimated.

SQS speaks its JSON protocol (the action is the `X-Amz-Target: AmazonSQS.<Action>` header, the
queue the `QueueUrl` of the JSON body); SNS its query protocol (`Action=` in the form body). The
service is the one the request is signed for (the SigV4 credential scope). The Host header is
passed on unchanged, so LocalStack hands out queue URLs that point at the proxy again."""

from __future__ import annotations

import contextlib
import http.client
import json
import re
import threading
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
              "trailers", "transfer-encoding", "upgrade", "content-length"}
SCOPE = re.compile(r"Credential=[^/]+/\d{8}/[^/]+/([^/]+)/aws4_request")
UPSTREAM_TIMEOUT = 90  # above the 20 s long poll; a frozen LocalStack holds a call this long


@dataclass
class Counts:
    actions: Counter[str] = field(default_factory=Counter)  # "sqs:ReceiveMessage": 12
    receives: Counter[str] = field(default_factory=Counter)  # queue name: ReceiveMessage calls

    def copy(self) -> Counts:
        return Counts(Counter(self.actions), Counter(self.receives))

    def __sub__(self, other: Counts) -> Counts:
        return Counts(self.actions - other.actions, self.receives - other.receives)

    @property
    def total(self) -> int:
        return sum(self.actions.values())


def classify(headers: dict[str, str], body: bytes) -> tuple[str, str | None]:
    """("sqs:ReceiveMessage", queue name) or ("sns:Publish", None) for one request."""
    scope = SCOPE.search(headers.get("authorization", ""))
    service = scope.group(1) if scope else "other"
    target = headers.get("x-amz-target", "")
    if target:
        action = target.rsplit(".", 1)[-1]
        queue = None
        if action == "ReceiveMessage":
            with contextlib.suppress(ValueError, AttributeError):
                queue = str(json.loads(body).get("QueueUrl", "")).rsplit("/", 1)[-1]
        return f"{service}:{action}", queue
    form = parse_qs(body.decode("utf-8", "replace"))
    action = (form.get("Action") or ["?"])[0]
    queue = None
    if action == "ReceiveMessage":  # an SQS client on the query protocol
        queue = (form.get("QueueUrl") or [""])[0].rsplit("/", 1)[-1]
    return f"{service}:{action}", queue


class CountingProxy:
    """`start()` returns the proxy's URL; `snapshot()` the counts so far; `stop()` closes it."""

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.counts = Counts()
        self.lock = threading.Lock()
        self.server: ThreadingHTTPServer | None = None
        self.thread: threading.Thread | None = None

    def start(self) -> str:
        proxy = self

        class Handler(_Forward):
            owner = proxy

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, name="proxy",
                                       daemon=True)
        self.thread.start()
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def count(self, action: str, queue: str | None) -> None:
        with self.lock:
            self.counts.actions[action] += 1
            if queue is not None:
                self.counts.receives[queue] += 1

    def snapshot(self) -> Counts:
        with self.lock:
            return self.counts.copy()


class _Forward(BaseHTTPRequestHandler):
    """One client connection: kept alive, each request forwarded on a kept-alive connection of
    this thread's own to LocalStack."""

    owner: CountingProxy
    protocol_version = "HTTP/1.1"
    upstream_conn: http.client.HTTPConnection | None = None

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (the base's name)
        pass  # a line per call would be noise

    def finish(self) -> None:
        super().finish()
        if self.upstream_conn is not None:
            self.upstream_conn.close()

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        self.forward()

    def do_GET(self) -> None:  # noqa: N802
        self.forward()

    def forward(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        self.owner.count(*classify({k.lower(): v for k, v in headers.items()}, body))
        try:
            status, reason, reply_headers, reply = self.upstream(body, headers)
        except (OSError, http.client.HTTPException):
            status, reason, reply_headers, reply = 502, "Bad Gateway", [], b""
        try:
            self.send_response(status, reason)
            for key, value in reply_headers:
                if key.lower() not in HOP_BY_HOP:
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)
        except OSError:  # the client gave up (its read timeout while LocalStack was frozen)
            self.close_connection = True

    def upstream(self, body: bytes, headers: dict[str, str]
                 ) -> tuple[int, str, list[tuple[str, str]], bytes]:
        """The call on this thread's kept-alive connection; once more on a new one if the old
        one was closed by LocalStack in between (nothing was processed then)."""
        for attempt in (1, 2):
            conn = self.upstream_conn or http.client.HTTPConnection(
                *self.owner.upstream, timeout=UPSTREAM_TIMEOUT)
            self.upstream_conn = conn
            try:
                conn.request(self.command, self.path, body, headers)
                response = conn.getresponse()
                return response.status, response.reason, response.getheaders(), response.read()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                conn.close()
                self.upstream_conn = None
                if attempt == 2:
                    raise
            except (OSError, http.client.HTTPException):
                conn.close()
                self.upstream_conn = None
                raise
        raise AssertionError("not reached")
