"""The school's HTTP client (deploy/local/client.py) with the end-to-end tests' shortcuts: the id
of a new student, course or assignment, and waits for what the workers do."""

from __future__ import annotations

from typing import Any

from deploy.local.client import Client
from tests.support.messages import wait_for


class School(Client):
    def student(self) -> str:
        return str(self.new_student()["id"])

    def course(self, capacity: int = 5, price_cents: int = 4990, currency: str = "USD") -> str:
        return str(self.create_course("Queues 101", capacity, price_cents, currency)["id"])

    def assignment(self, **fields: Any) -> str:
        return str(self.create_assignment(**fields)["id"])

    def wait_status(self, enrollment_id: str, status: str, timeout: float = 40
                    ) -> dict[str, Any]:
        return wait_for(lambda: (e := self.enrollment(enrollment_id))["status"] == status and e,
                        timeout, f"enrollment {enrollment_id} to be {status}")

    def wait_sent(self, student: str, count: int, timeout: float = 40
                  ) -> list[dict[str, Any]]:
        """Wait until `count` notifications of the student are sent; return them all."""
        return wait_for(lambda: (n := self.notifications(student)) and sum(
            x["status"] == "sent" for x in n) >= count and n, timeout,
            f"{count} sent notification(s) for student {student}")

    def graded(self, assignment_id: str, student: str, count: int, timeout: float = 60
               ) -> list[dict[str, Any]]:
        """Wait until the student has `count` submissions, all graded; return them."""
        return wait_for(lambda: (rows := self.submissions(assignment_id, student))
                        and len(rows) == count and all(r["status"] == "graded" for r in rows)
                        and rows, timeout, f"{count} graded submissions of {student}")
