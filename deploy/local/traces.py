"""`make traces`: see the traces of a local stack, with nothing to install.

An OTLP/HTTP receiver on 127.0.0.1:4318 (protobuf, as the services' exporters send it). Each
trace is printed as a tree once no span of it has arrived for a few seconds; with `--svg DIR`
it is also drawn as a waterfall, one SVG file per trace. Start it, then the stack with the
endpoint set:

    make traces                                                      # one terminal
    OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318 make up        # another
    make demo                                                        # a third

The end-to-end tests use the same receiver (tests/e2e/test_tracing.py).
"""

from __future__ import annotations

import argparse
import gzip
import html
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

KINDS = {1: "internal", 2: "server", 3: "client", 4: "producer", 5: "consumer"}
COLOURS = {"enrollment": "#4e79a7", "payment": "#f28e2b", "assignment": "#59a14f",
           "notification": "#b07aa1", "analytics": "#76b7b2"}


def value(v: Any) -> Any:
    kind = v.WhichOneof("value")
    return getattr(v, kind) if kind else None


def attrs(pairs: Any) -> dict[str, Any]:
    return {kv.key: value(kv.value) for kv in pairs}


@dataclass(frozen=True)
class Span:
    service: str
    process: str | None
    name: str
    kind: str
    trace_id: str
    span_id: str
    parent_id: str
    start: int  # ns since the epoch
    end: int
    attributes: dict[str, Any]
    events: tuple[tuple[str, dict[str, Any]], ...]
    status: int  # 0 unset, 1 ok, 2 error

    @property
    def event_names(self) -> list[str]:
        return [name for name, _ in self.events]

    @property
    def database(self) -> bool:
        return "db.system" in self.attributes or self.name == "connect"


@dataclass
class Receiver:
    """Every span and metric point received, with its resource's service.name."""

    spans: list[Span] = field(default_factory=list)
    points: list[tuple[str, str, dict[str, Any], Any]] = field(default_factory=list)
    arrived: dict[str, float] = field(default_factory=dict)  # trace id -> last span's arrival
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take_traces(self, body: bytes) -> None:
        request = ExportTraceServiceRequest.FromString(body)
        spans = []
        for resource_spans in request.resource_spans:
            resource = attrs(resource_spans.resource.attributes)
            for scope in resource_spans.scope_spans:
                for s in scope.spans:
                    spans.append(Span(
                        resource.get("service.name", "?"), resource.get("school.process"),
                        s.name, KINDS.get(s.kind, str(s.kind)), s.trace_id.hex(), s.span_id.hex(),
                        s.parent_span_id.hex(), s.start_time_unix_nano, s.end_time_unix_nano,
                        attrs(s.attributes),
                        tuple((e.name, attrs(e.attributes)) for e in s.events), s.status.code))
        now = time.monotonic()
        with self.lock:
            self.spans += spans
            self.arrived |= {s.trace_id: now for s in spans}

    def take_metrics(self, body: bytes) -> None:
        request = ExportMetricsServiceRequest.FromString(body)
        points = []
        for resource_metrics in request.resource_metrics:
            service = attrs(resource_metrics.resource.attributes).get("service.name", "?")
            for scope in resource_metrics.scope_metrics:
                for metric in scope.metrics:
                    data = getattr(metric, metric.WhichOneof("data"))
                    for point in data.data_points:
                        if hasattr(point, "bucket_counts"):  # a histogram: its count
                            figure: Any = point.count
                        else:
                            figure = value_of(point)
                        points.append((service, metric.name, attrs(point.attributes), figure))
        with self.lock:
            self.points += points

    def trace(self, trace_id: str) -> list[Span]:
        with self.lock:
            return sorted((s for s in self.spans if s.trace_id == trace_id),
                          key=lambda s: s.start)

    def metric(self, service: str, name: str) -> list[tuple[dict[str, Any], Any]]:
        with self.lock:
            return [(a, v) for s, n, a, v in self.points if s == service and n == name]

    def forget(self, trace_id: str) -> None:
        """Drop a trace's spans (`make traces` keeps only what it has not printed yet)."""
        with self.lock:
            self.spans = [s for s in self.spans if s.trace_id != trace_id]

    def settled(self, quiet: float) -> list[str]:
        """Trace ids no span has arrived for in `quiet` seconds; each is returned once."""
        now = time.monotonic()
        with self.lock:
            done = [t for t, at in self.arrived.items() if now - at >= quiet]
            for trace_id in done:
                del self.arrived[trace_id]
        return done


def value_of(point: Any) -> Any:
    return point.as_int if point.WhichOneof("value") == "as_int" else point.as_double


@contextmanager
def receiving(host: str = "127.0.0.1", port: int = 0) -> Iterator[tuple[Receiver, str]]:
    """Run a receiver (on a free port by default); yields it and its endpoint, the value for
    OTEL_EXPORTER_OTLP_ENDPOINT."""
    receiver = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            try:
                if self.path == "/v1/traces":
                    receiver.take_traces(body)
                    reply = ExportTraceServiceResponse().SerializeToString()
                elif self.path == "/v1/metrics":
                    receiver.take_metrics(body)
                    reply = ExportMetricsServiceResponse().SerializeToString()
                else:
                    self.send_error(404, "only /v1/traces and /v1/metrics are served")
                    return
            except Exception as exc:  # a body that is not OTLP protobuf: say so, keep serving
                self.send_error(400, f"not an OTLP protobuf export: {exc}")
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True, name="otlp-receiver")
    thread.start()
    try:
        yield receiver, f"http://{host}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


# --- showing a trace ---------------------------------------------------------------------------

def shown(spans: list[Span], every: bool = False) -> list[tuple[int, Span]]:
    """The spans in tree order, with their depth; database spans only if `every`."""
    children: dict[str, list[Span]] = {}
    ids = {s.span_id for s in spans}
    for span in sorted(spans, key=lambda s: s.start):
        parent = span.parent_id if span.parent_id in ids else ""
        children.setdefault(parent, []).append(span)
    ordered: list[tuple[int, Span]] = []

    def walk(parent: str, depth: int) -> None:
        for span in children.get(parent, []):
            keep = every or not span.database
            if keep:
                ordered.append((depth, span))
            walk(span.span_id, depth + 1 if keep else depth)
    walk("", 0)
    return ordered


def describe(span: Span) -> str:
    outcome = span.attributes.get("school.outcome")
    events = [n for n in span.event_names if n != "exception"]
    extra = f" [{outcome}]" if outcome and outcome != "handled" else ""
    if not extra and events:
        extra = f" [{', '.join(events)}]"
    event = span.attributes.get("school.event_type")
    return f"{span.name}{f' ({event})' if event else ''}{extra}"


def tree(spans: list[Span], every: bool = False) -> str:
    """A trace as text: each span's start and duration, its process and what it did."""
    start = min(s.start for s in spans)
    root = min(spans, key=lambda s: s.start)
    services = sorted({s.service for s in spans})
    lines = [f"trace {root.trace_id}: {describe(root)}, {len(spans)} spans, "
             f"{(max(s.end for s in spans) - start) / 1e9:.3f} s, {', '.join(services)}"]
    for depth, span in shown(spans, every):
        lines.append(f"  {(span.start - start) / 1e6:8.1f} ms {(span.end - span.start) / 1e6:7.1f}"
                     f" ms  {span.service + '/' + (span.process or '?'):20} "
                     f"{'  ' * depth}{describe(span)}")
    return "\n".join(lines)


def svg(spans: list[Span], every: bool = False) -> str:
    """A trace as a waterfall: one bar a span, coloured by service, on a shared time axis."""
    rows = shown(spans, every)
    start = min(s.start for s in spans)
    total = max(max(s.end for s in spans) - start, 1)
    label_width, bar_width, row, top = 430, 560, 22, 46
    width, height = label_width + bar_width + 200, top + row * len(rows) + 40
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'font-family="DejaVu Sans, Arial, sans-serif" font-size="12">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="10" y="20" font-size="14" font-weight="bold">'
           f'{html.escape(tree(spans, every).splitlines()[0])}</text>']
    for tick in range(0, 6):
        x = label_width + bar_width * tick / 5
        at = total * tick / 5 / 1e9
        out.append(f'<line x1="{x:.1f}" y1="{top - 12}" x2="{x:.1f}" y2="{height - 30}" '
                   f'stroke="#e4e4e4"/>')
        out.append(f'<text x="{x:.1f}" y="{top - 16}" text-anchor="middle" fill="#666">'
                   f'{f"{at:.2f} s" if total >= 2e9 else f"{at * 1000:.0f} ms"}</text>')
    for index, (depth, span) in enumerate(rows):
        y = top + index * row
        x = label_width + bar_width * (span.start - start) / total
        w = max(bar_width * (span.end - span.start) / total, 2)
        colour = COLOURS.get(span.service, "#9c9c9c")
        stroke = ' stroke="#d62728" stroke-width="2"' if span.status == 2 else ""
        out.append(f'<text x="{10 + 12 * depth}" y="{y + 14}">'
                   f'{html.escape(describe(span)[:60])}</text>')
        out.append(f'<rect x="{x:.1f}" y="{y + 3}" width="{w:.1f}" height="14" rx="2" '
                   f'fill="{colour}"{stroke}/>')
        out.append(f'<text x="{x + w + 4:.1f}" y="{y + 14}" fill="#444">'
                   f'{html.escape(span.service)}/{span.process or "?"} '
                   f'{(span.end - span.start) / 1e6:.1f} ms</text>')
    legend_y = height - 12
    for index, (service, colour) in enumerate(COLOURS.items()):
        out.append(f'<rect x="{10 + 120 * index}" y="{legend_y - 10}" width="12" height="12" '
                   f'fill="{colour}"/><text x="{26 + 120 * index}" y="{legend_y}">{service}</text>')
    out.append(f'<text x="{10 + 120 * len(COLOURS)}" y="{legend_y}" fill="#d62728">'
               f'red outline: error status</text></svg>')
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.local.traces", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=4318, help="default 4318, OTLP/HTTP's")
    parser.add_argument("--quiet", type=float, default=3.0,
                        help="print a trace once no span of it arrived for this long (s)")
    parser.add_argument("--svg", type=Path, help="also draw each trace into DIR/<trace>.svg")
    parser.add_argument("--all", action="store_true", help="show database spans too")
    args = parser.parse_args(argv)
    if args.svg:
        args.svg.mkdir(parents=True, exist_ok=True)
    try:
        with receiving(port=args.port) as (receiver, endpoint):
            print(f"[traces] receiving OTLP/HTTP at {endpoint}; start the stack with "
                  f"OTEL_EXPORTER_OTLP_ENDPOINT={endpoint} (Ctrl-C stops)", flush=True)
            while True:
                time.sleep(0.5)
                for trace_id in receiver.settled(args.quiet):
                    spans = receiver.trace(trace_id)
                    receiver.forget(trace_id)  # a late span of it starts a trace of its own
                    if all(s.database for s in spans):
                        continue
                    print(tree(spans, args.all) + "\n", flush=True)
                    if args.svg:
                        path = args.svg / f"{trace_id}.svg"
                        path.write_text(svg(spans, args.all))
                        print(f"[traces] drawn: {path}", flush=True)
    except OSError as exc:
        print(f"[traces] cannot listen on port {args.port}: {exc}; is another receiver "
              f"running? (--port)", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        with receiver.lock:
            counted = Counter(s.service for s in receiver.spans)
        print(f"\n[traces] stopped; spans received per service: {dict(counted)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
