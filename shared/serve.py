"""Process entry points shared by the Procfile and the container image:
`python -m shared.serve api <service>` runs the API under gunicorn on the service's port;
`python -m shared.serve worker <service>` runs its worker;
`python -m shared.serve migrate <service>` upgrades its database (run before a new task serves).

gunicorn refuses a request it cannot or will not parse (a request line over LIMIT_REQUEST_LINE
bytes, a header field over LIMIT_REQUEST_FIELD_SIZE, more than LIMIT_REQUEST_FIELDS headers, a
malformed line) before the Flask app sees it, and answers in text/html. ProblemWorker answers
those in application/problem+json like every other error; the limits stay bounded."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from gunicorn import util
from gunicorn.http import errors
from gunicorn.workers.gthread import ThreadWorker

from shared.settings import CONSOLE, PORTS, SERVICES
from shared.web import PROBLEM, TITLES, problem_body

# gunicorn's limits, written out because the docs and the tests state them: its defaults, but
# for a header field, which may be 16 KB so that an overlong Authorization header reaches the
# access check and is answered as a bad token (401), like every other malformed one.
LIMIT_REQUEST_LINE = 4094  # bytes of "METHOD /path?query HTTP/1.1": a URL of about 4 KB
LIMIT_REQUEST_FIELDS = 100  # header fields
LIMIT_REQUEST_FIELD_SIZE = 16384  # bytes of one "Name: value" header line
# gunicorn's access log line with the path instead of the whole request line: a query string can
# carry what no log may keep (the sign-in callback's one-time code).
ACCESS_LOG_FORMAT = '%(h)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(b)s %(L)ss "%(a)s"'

# gunicorn's parse errors and what they mean to a client (as in gunicorn's Worker.handle_error).
_REFUSALS: list[tuple[type[Exception], int, str]] = [
    (errors.LimitRequestLine, 414,
     f"The request line (method, URL and version) is longer than {LIMIT_REQUEST_LINE} bytes."),
    (errors.LimitRequestHeaders, 431,
     f"A header field is longer than {LIMIT_REQUEST_FIELD_SIZE} bytes, or there are more than "
     f"{LIMIT_REQUEST_FIELDS} of them."),
    (errors.UnsupportedTransferCoding, 501, "The Transfer-Encoding is not supported."),
    (errors.ExpectationFailed, 417, "The Expect header cannot be met."),
    (errors.ConfigurationProblem, 500, "The server is misconfigured; it has been logged."),
    (errors.InvalidResponseHeader, 500, "An unexpected error occurred; it has been logged."),
    (errors.InvalidResponseHeaderName, 500, "An unexpected error occurred; it has been logged."),
    (errors.ForbiddenProxyRequest, 403, "The request is forbidden."),
    (errors.ParseException, 400, "The request is not valid HTTP/1.1."),
]


def _status(exc: BaseException) -> tuple[int, str]:
    return next(((code, text) for kind, code, text in _REFUSALS if isinstance(exc, kind)),
                (500, "An unexpected error occurred; it has been logged."))


def refusal(exc: BaseException) -> bytes:
    """The whole HTTP response gunicorn sends for a request it refused, as problem+json."""
    status, detail = _status(exc)
    body = json.dumps(problem_body(status, detail)).encode()
    head = (f"HTTP/1.1 {status} {TITLES.get(status, 'Error')}\r\nConnection: close\r\n"
            f"Content-Type: {PROBLEM}\r\nContent-Length: {len(body)}\r\n\r\n")
    return head.encode("latin-1") + body


class ProblemWorker(ThreadWorker):  # type: ignore[misc]
    """gunicorn's threaded worker, answering the requests it refuses in problem+json."""

    def handle_error(self, req: Any, client: Any, addr: Any, exc: BaseException) -> None:
        if _status(exc)[0] < 500:
            self.log.warning("Invalid request from ip=%s: %s", (addr or ("",))[0], exc)
        else:  # not the client's fault: logged with the traceback, as gunicorn does
            self.log.exception("Error handling request")
        try:
            util.write_nonblock(client, refusal(exc))
        except OSError:
            self.log.debug("Failed to send error message.")


def port(service: str) -> int:
    """The contract's port, unless `<SERVICE>_PORT` says otherwise (tests use free ports)."""
    return int(os.environ.get(f"{service.upper()}_PORT") or PORTS[service])


def migrate(service: str) -> int:
    """Upgrade the service's database to the newest revision; non-zero, with why, on failure."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    from shared import bootstrap, db
    from shared.settings import ConfigError, Settings
    try:
        url = db.database_url(service, Settings.from_env())
        shown = make_url(url).render_as_string(hide_password=True)
        print(f"migrating the {service} database at {shown}", flush=True)
        bootstrap.migrate(service, url)
    except (ConfigError, SQLAlchemyError, OSError) as exc:
        print(f"migrate {service}: {exc}", file=sys.stderr)
        return 1
    print(f"the {service} database is at the newest revision", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shared.serve", description=__doc__)
    parser.add_argument("role", choices=("api", "worker", "migrate"))
    parser.add_argument("service", choices=(*SERVICES, CONSOLE))
    args = parser.parse_args(argv)
    if args.role == "migrate":
        return migrate(args.service)
    if args.role == "worker":
        from shared import bootstrap
        return bootstrap.worker(args.service)
    gunicorn = [sys.executable, *gunicorn_args(args.service,
                                               f"shared.bootstrap:api({args.service!r})")]
    os.execv(sys.executable, gunicorn)
    return 0  # not reached: execv replaces this process


def gunicorn_args(service: str, app: str, on_port: int | None = None) -> list[str]:
    """`-m gunicorn ...`: the service's API process, serving the WSGI app `app` on its port
    (or `on_port`)."""
    host = os.environ.get("BIND_HOST", "127.0.0.1")
    return ["-m", "gunicorn", "--bind", f"{host}:{on_port or port(service)}",
            # The console in one process: its lock keeps its own DLQ listings and
            # redrives from hiding messages from each other (services/console/queues.py).
            "--workers", "1" if service == CONSOLE else
            os.environ.get("WEB_CONCURRENCY", "2"), "--threads", "4",
            "--worker-class", "shared.serve.ProblemWorker",
            "--limit-request-line", str(LIMIT_REQUEST_LINE),
            "--limit-request-fields", str(LIMIT_REQUEST_FIELDS),
            "--limit-request-field_size", str(LIMIT_REQUEST_FIELD_SIZE),
            "--graceful-timeout", "20", "--access-logfile", "-",
            "--access-logformat", ACCESS_LOG_FORMAT, "--no-control-socket", app]


if __name__ == "__main__":
    raise SystemExit(main())
