"""The assignment pipeline end to end: real processes, HTTP, LocalStack."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from deploy.local.client import ProblemError
from shared.envelope import Envelope, new_id
from tests.support.messages import depth, wait_for
from tests.support.school import School

KEYWORDS = ["queue", "fifo", "group", "order"]


@pytest.fixture(scope="module")
def school(assignment_stack) -> School:
    return School(assignment_stack.urls, token=assignment_stack.admin())


def assignment(school: School, **fields: Any) -> str:
    return school.assignment(**({"course_id": "c1", "title": "Ordering essay", "max_score": 100,
                                 "keywords": KEYWORDS} | fields))


def student() -> str:
    return "st-" + uuid.uuid4().hex[:8]


def test_resubmissions_are_graded_in_version_order(school: School) -> None:
    task, who = assignment(school), student()
    texts = ["a queue", "a queue with fifo", "a queue with fifo group order"]
    assert [school.submit(task, who, t)["version"] for t in texts] == [1, 2, 3]
    rows = school.graded(task, who, 3)
    assert [r["version"] for r in rows] == [1, 2, 3]
    assert [r["score"] for r in rows] == [25, 50, 100]
    stamps = [r["graded_at"] for r in rows]
    assert stamps == sorted(stamps) and len(set(stamps)) == 3


def test_a_failing_group_holds_back_only_its_own_student(school: School) -> None:
    task, held, free = assignment(school), student(), student()
    school.grader_faults([held])
    try:
        for version in range(3):
            school.submit(task, held, f"queue {'fifo ' * version}")
            school.submit(task, free, f"queue {'fifo ' * version}")
        school.graded(task, free, 3, timeout=30)
        assert [r["status"] for r in school.submissions(task, held)] == ["received"] * 3
    finally:
        school.grader_faults([])
    rows = school.graded(task, held, 3)
    stamps = [r["graded_at"] for r in rows]
    assert stamps == sorted(stamps) and [r["score"] for r in rows] == [25, 50, 50]


def test_identical_content_from_another_student_is_flagged(school: School) -> None:
    task = assignment(school)
    essay = "Queues keep order within a group, and FIFO groups run in parallel. " * 5
    first, copier = student(), student()
    school.submit(task, first, essay)
    [original] = school.graded(task, first, 1)
    school.submit(task, copier, essay)
    [copy] = school.graded(task, copier, 1)
    assert (original["flagged"], original["plagiarism_score"]) == (False, 0.0)
    assert (copy["flagged"], copy["plagiarism_score"]) == (True, 1.0)


def test_a_redelivered_submission_grades_once(school: School, sqs, assignment_stack) -> None:
    task, who = assignment(school), student()
    accepted = school.submit(task, who, "queue fifo")
    [before] = school.graded(task, who, 1)
    queue = assignment_stack.report.queues["assignment-submissions.fifo"].url
    again = Envelope("submission.received", 1, {
        "submission_id": accepted["id"], "assignment_id": task, "student_id": who,
        "version": 1, "content": "queue fifo group order"}, "assignment")
    for _ in range(2):
        sqs.send_message(QueueUrl=queue, MessageBody=again.body(),
                         MessageAttributes=again.attributes(),
                         MessageGroupId=f"{task}:{who}", MessageDeduplicationId=new_id())
    wait_for(lambda: depth(sqs, queue) == 0, 30, "both deliveries consumed")
    assert school.submissions(task, who) == [before]  # same score, same graded_at


def test_a_late_submission_loses_ten_percent(school: School) -> None:
    past = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    late_task, on_time_task, who = assignment(school, due_at=past), assignment(school), student()
    school.submit(late_task, who, "queue fifo group order")
    school.submit(on_time_task, who, "queue fifo group order")
    assert school.graded(late_task, who, 1)[0]["score"] == 90
    assert school.graded(on_time_task, who, 1)[0]["score"] == 100


BAD: list[tuple[str, str, Any, int]] = [
    ("POST", "/assignments", {"course_id": "c", "title": "T", "max_score": 0}, 422),
    ("POST", "/assignments", {"course_id": "c", "title": "T", "max_score": 1,
                              "keywords": [f"k{i}" for i in range(51)]}, 422),
    ("POST", "/assignments", {"course_id": "c", "title": "T", "max_score": 1,
                              "keywords": ["x" * 51]}, 422),
    ("POST", "/assignments", {"course_id": "c", "title": "T" * 201, "max_score": 1}, 422),
    ("POST", "/assignments", {"course_id": "c", "title": "T", "max_score": 1,
                              "due_at": "2026-12-01T10:00:00"}, 422),
    ("POST", "/assignments", "nope", 400),
    ("GET", "/assignments/nope", None, 404),
    ("POST", "/assignments/nope/submissions", {"student_id": "s", "content": "x"}, 404),
    ("GET", "/assignments/nope/submissions", None, 404),
]


@pytest.mark.parametrize(("method", "path", "body", "status"), BAD)
def test_bad_input_is_a_4xx_problem(school: School, method: str, path: str, body: Any,
                                    status: int) -> None:
    kwargs: dict[str, Any] = ({"data": body, "headers": {"Content-Type": "text/plain"}}
                              if isinstance(body, str) else {"body": body})
    reply = school.send(method, "assignment", path, **kwargs)
    assert reply.status_code == status, reply.text
    assert reply.headers["Content-Type"] == "application/problem+json"


def test_content_over_100_kb_is_refused(school: School) -> None:
    task = assignment(school)
    for content in ("é" * (51 * 1024), "x" * (300 * 1024)):  # 102 KB in UTF-8; over the body cap
        with pytest.raises(ProblemError) as refused:
            school.submit(task, student(), content)
        assert refused.value.status == 413, refused.value.reply.text
        assert refused.value.reply.headers["Content-Type"] == "application/problem+json"
    with pytest.raises(ProblemError) as invalid:
        school.submit(task, "s", "")
    assert invalid.value.status == 422 and "content" in invalid.value.body["errors"]
