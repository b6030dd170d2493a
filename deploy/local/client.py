"""The one HTTP client of the school's public APIs: `make demo`, the end-to-end tests, the bench
and the chaos run all call the services through it.

`send` is one request, whatever it answers (for tests that look at a refusal itself); `call`
expects one status and raises ProblemError (the status and the problem+json body) on any other;
the named calls (students, courses, enrollments, assignments, submissions, payments,
notifications, the analytics summary, the simulator's switches) are built on `call`. A service
that does not answer at all is Unreachable. A subclass may retry by overriding `exchange`
(deploy/local/chaos/client.py).

Every request carries the client's access token (`token`), if it has one; `as_(token)` is the
same client acting as someone else."""

from __future__ import annotations

import copy
import threading
import uuid
from collections.abc import Mapping
from typing import Any

import requests

from shared.serve import port
from shared.settings import SERVICES


class Unreachable(Exception):
    """Nothing answered at the service's address (it is not running, or runs elsewhere)."""


class ProblemError(Exception):
    """A service answered with another status than the one expected (an error is
    application/problem+json): `status`, the parsed `body` (None if not JSON) and the `reply`."""

    def __init__(self, method: str, url: str, expected: int, reply: requests.Response) -> None:
        self.status = reply.status_code
        self.reply = reply
        try:
            self.body: Any = reply.json()
        except ValueError:
            self.body = None
        super().__init__(f"{method} {url} answered {self.status}, expected {expected}: "
                         f"{reply.text[:300]}")


def base_urls(host: str = "127.0.0.1") -> dict[str, str]:
    """Each service's base URL at its contract port, or at `<SERVICE>_PORT` when that is set."""
    return {service: f"http://{host}:{port(service)}" for service in SERVICES}


class Client:
    """The services at `urls` (service -> base URL; the contract's ports by default). Safe to
    share between threads: each thread has its own HTTP session."""

    def __init__(self, urls: Mapping[str, str] | None = None, timeout: float = 30,
                 trust_env: bool = True, token: str | None = None) -> None:
        self.urls = dict(base_urls() if urls is None else urls)
        self.timeout = timeout
        self.trust_env = trust_env  # False: no proxy or netrc lookups (the bench times calls)
        self.token = token  # the caller's access token, sent as Authorization: Bearer
        self._local = threading.local()

    def as_(self, token: str | None) -> Client:
        """This client (its URLs, timeouts and kind), acting with another access token."""
        other = copy.copy(self)
        other.token = token
        other._local = threading.local()
        return other

    @property
    def http(self) -> requests.Session:
        """This thread's session (requests' Session is not thread-safe)."""
        if not hasattr(self._local, "session"):
            self._local.session = requests.Session()
            self._local.session.trust_env = self.trust_env
        session: requests.Session = self._local.session
        return session

    def close(self) -> None:
        """Close this thread's session (its pooled connections)."""
        if hasattr(self._local, "session"):
            self._local.session.close()
            del self._local.session

    # --- requests --------------------------------------------------------------------------------

    def send(self, method: str, service: str, path: str, body: Any = None, *,
             data: str | bytes | None = None, params: Mapping[str, str] | None = None,
             key: str | None = None, correlation_id: str | None = None,
             headers: Mapping[str, str | bytes] | None = None) -> requests.Response:
        """One request, whatever it answers: `body` as JSON (or `data` as is), with an
        Idempotency-Key and an X-Correlation-ID when given. Unreachable if nothing answers."""
        url = self.urls[service] + path
        sent: dict[str, str | bytes] = dict(headers or {})
        if self.token and not any(name.lower() == "authorization" for name in sent):
            sent["Authorization"] = f"Bearer {self.token}"
        if key:
            sent["Idempotency-Key"] = key
        if correlation_id:
            sent["X-Correlation-ID"] = correlation_id
        try:
            return self.exchange(method, url, json=body, data=data, params=params,
                                 headers=sent)
        except requests.ConnectionError as exc:
            raise Unreachable(f"cannot reach the {service} service at {url}") from exc

    def exchange(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        """The HTTP exchange itself (a subclass may retry it)."""
        return self.http.request(method, url, timeout=self.timeout, **kwargs)

    def call(self, method: str, service: str, path: str, expect: int = 200, body: Any = None,
             **kwargs: Any) -> Any:
        """`send`, expecting the status `expect`: the JSON it answered (None if empty);
        ProblemError on any other status."""
        reply = self.send(method, service, path, body, **kwargs)
        if reply.status_code != expect:
            raise ProblemError(method, self.urls[service] + path, expect, reply)
        return reply.json() if reply.content else None

    # --- the calls -------------------------------------------------------------------------------

    def ready(self, service: str) -> None:
        self.call("GET", service, "/readyz")

    def register(self, name: str, email: str) -> dict[str, Any]:
        """A new student: {id, name, email}."""
        return dict(self.call("POST", "enrollment", "/students", 201,
                              {"name": name, "email": email}))

    def new_student(self, prefix: str = "Student") -> dict[str, Any]:
        """A new student with a unique name (`<prefix> <tag>`) and email."""
        tag = uuid.uuid4().hex[:10]
        return self.register(f"{prefix} {tag}", f"{prefix[0].lower()}{tag}@example.com")

    def create_course(self, title: str, capacity: int, price_cents: int,
                      currency: str = "USD") -> dict[str, Any]:
        return dict(self.call("POST", "enrollment", "/courses", 201, {
            "title": title, "capacity": capacity, "price_cents": price_cents,
            "currency": currency}))

    def seats_taken(self, course_id: str) -> int:
        return int(self.call("GET", "enrollment", f"/courses/{course_id}")["seats_taken"])

    def enroll(self, student_id: str, course_id: str, token: str = "tok_ok",
               key: str | None = None, correlation_id: str | None = None) -> dict[str, Any]:
        """POST /enrollments (202): the enrollment, pending its payment."""
        return dict(self.call("POST", "enrollment", "/enrollments", 202, {
            "student_id": student_id, "course_id": course_id, "payment_token": token},
            key=key, correlation_id=correlation_id))

    def enrollment(self, enrollment_id: str) -> dict[str, Any]:
        return dict(self.call("GET", "enrollment", f"/enrollments/{enrollment_id}"))

    def cancel(self, enrollment_id: str) -> dict[str, Any]:
        """POST /enrollments/<id>/cancel (202): the enrollment, cancelling."""
        return dict(self.call("POST", "enrollment", f"/enrollments/{enrollment_id}/cancel",
                              202))

    def payments(self, enrollment_id: str) -> list[dict[str, Any]]:
        return list(self.call("GET", "payment", "/payments",
                              params={"enrollment_id": enrollment_id}))

    def create_assignment(self, **fields: Any) -> dict[str, Any]:
        """POST /assignments: course_id, title, max_score, and keywords or due_at if wanted."""
        return dict(self.call("POST", "assignment", "/assignments", 201, fields))

    def submit(self, assignment_id: str, student_id: str, content: str,
               key: str | None = None) -> dict[str, Any]:
        """POST a submission (202): {id, version, status, ...}."""
        return dict(self.call("POST", "assignment", f"/assignments/{assignment_id}/submissions",
                              202, {"student_id": student_id, "content": content}, key=key))

    def submissions(self, assignment_id: str, student_id: str | None = None
                    ) -> list[dict[str, Any]]:
        """The assignment's submissions (of one student if given), in version order."""
        params = {"student_id": student_id} if student_id is not None else None
        return list(self.call("GET", "assignment", f"/assignments/{assignment_id}/submissions",
                              params=params))

    def notifications(self, student_id: str) -> list[dict[str, Any]]:
        return list(self.call("GET", "notification", "/notifications",
                              params={"student_id": student_id}))

    def summary(self) -> dict[str, Any]:
        return dict(self.call("GET", "analytics", "/analytics/summary"))

    # --- the simulator's switches (SCHOOL_SIMULATOR_CONTROLS) ------------------------------------

    def gateway(self) -> dict[str, Any]:
        """The simulated payment gateway's switches (404 when the controls are off)."""
        return dict(self.call("GET", "payment", "/simulator/gateway"))

    def gateway_outage(self, on: bool) -> dict[str, Any]:
        """Turn the simulated gateway's outage on or off (tok_down payments fail while on)."""
        return dict(self.call("PUT", "payment", "/simulator/gateway", body={"outage": on}))

    def grader_faults(self, student_ids: list[str]) -> dict[str, Any]:
        """The grader fails every submission of these students (none: an empty list)."""
        return dict(self.call("PUT", "assignment", "/simulator/grader",
                              body={"student_ids": student_ids}))
