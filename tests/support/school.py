"""An HTTP client for the school's services, used by the end-to-end tests."""

from __future__ import annotations

import uuid
from typing import Any

import requests

from tests.support.messages import wait_for


class School:
    def __init__(self, urls: dict[str, str]) -> None:
        self.urls = urls
        self.http = requests.Session()

    def url(self, service: str, path: str) -> str:
        return self.urls[service] + path

    def post(self, service: str, path: str, body: Any = None, **kwargs: Any
             ) -> requests.Response:
        return self.http.post(self.url(service, path), json=body, timeout=30, **kwargs)

    def get(self, service: str, path: str, **kwargs: Any) -> requests.Response:
        return self.http.get(self.url(service, path), timeout=30, **kwargs)

    def student(self) -> str:
        return str(self.register()["id"])

    def register(self) -> dict[str, Any]:
        """A new student: {id, name, email}."""
        tag = uuid.uuid4().hex[:8]
        reply = self.post("enrollment", "/students", {"name": f"Student {tag}",
                                                      "email": f"s{tag}@example.com"})
        assert reply.status_code == 201, reply.text
        body: dict[str, Any] = reply.json()
        return body

    def course(self, capacity: int = 5, price_cents: int = 4990, currency: str = "USD") -> str:
        reply = self.post("enrollment", "/courses", {"title": "Queues 101", "capacity": capacity,
                                                     "price_cents": price_cents,
                                                     "currency": currency})
        assert reply.status_code == 201, reply.text
        return str(reply.json()["id"])

    def enroll(self, student: str, course: str, token: str = "tok_ok",
               key: str | None = None) -> requests.Response:
        headers = {"Idempotency-Key": key} if key else {}
        return self.post("enrollment", "/enrollments", {"student_id": student,
                                                        "course_id": course,
                                                        "payment_token": token},
                         headers=headers)

    def enrollment(self, enrollment_id: str) -> dict[str, Any]:
        reply = self.get("enrollment", f"/enrollments/{enrollment_id}")
        assert reply.status_code == 200, reply.text
        body: dict[str, Any] = reply.json()
        return body

    def wait_status(self, enrollment_id: str, status: str, timeout: float = 40
                    ) -> dict[str, Any]:
        return wait_for(lambda: (e := self.enrollment(enrollment_id))["status"] == status and e,
                        timeout, f"enrollment {enrollment_id} to be {status}")

    def payments(self, enrollment_id: str) -> list[dict[str, Any]]:
        reply = self.get("payment", "/payments", params={"enrollment_id": enrollment_id})
        assert reply.status_code == 200, reply.text
        body: list[dict[str, Any]] = reply.json()
        return body

    def seats_taken(self, course: str) -> int:
        return int(self.get("enrollment", f"/courses/{course}").json()["seats_taken"])

    def notifications(self, student: str) -> list[dict[str, Any]]:
        reply = self.get("notification", "/notifications", params={"student_id": student})
        assert reply.status_code == 200, reply.text
        body: list[dict[str, Any]] = reply.json()
        return body

    def wait_sent(self, student: str, count: int, timeout: float = 40
                  ) -> list[dict[str, Any]]:
        """Wait until `count` notifications of the student are sent; return them all."""
        return wait_for(lambda: (n := self.notifications(student)) and sum(
            x["status"] == "sent" for x in n) >= count and n, timeout,
            f"{count} sent notification(s) for student {student}")

    def summary(self) -> dict[str, Any]:
        reply = self.get("analytics", "/analytics/summary")
        assert reply.status_code == 200, reply.text
        body: dict[str, Any] = reply.json()
        return body

    def assignment(self, **fields: Any) -> str:
        reply = self.post("assignment", "/assignments", fields)
        assert reply.status_code == 201, reply.text
        return str(reply.json()["id"])

    def submit(self, assignment_id: str, student: str, content: str) -> dict[str, Any]:
        reply = self.post("assignment", f"/assignments/{assignment_id}/submissions",
                          {"student_id": student, "content": content})
        assert reply.status_code == 202, reply.text
        body: dict[str, Any] = reply.json()
        return body

    def submissions(self, assignment_id: str, student: str) -> list[dict[str, Any]]:
        reply = self.get("assignment", f"/assignments/{assignment_id}/submissions",
                         params={"student_id": student})
        assert reply.status_code == 200, reply.text
        rows: list[dict[str, Any]] = reply.json()
        return rows

    def graded(self, assignment_id: str, student: str, count: int, timeout: float = 60
               ) -> list[dict[str, Any]]:
        """Wait until the student has `count` submissions, all graded; return them."""
        return wait_for(lambda: (rows := self.submissions(assignment_id, student))
                        and len(rows) == count and all(r["status"] == "graded" for r in rows)
                        and rows, timeout, f"{count} graded submissions of {student}")
