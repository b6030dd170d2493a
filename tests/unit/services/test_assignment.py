"""The assignment service's rules through its commands and handler: assignments, versioned
submissions, grading once per submission, and the simulator's injected faults (in-memory SQLite,
fakes)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, select

from services.assignment import commands, domain
from services.assignment.schemas import MAX_CONTENT_BYTES
from services.assignment.service import SERVICE
from services.assignment.simulator import InjectedFault, failing_for_injected_students
from services.assignment.tables import submissions
from shared.errors import NotFound, TooLarge
from shared.handling import Context, PermanentError
from tests.support.fakes import FakeProducer, event, handle, transaction

CORR = "corr-assignment"
ESSAY = "a queue keeps messages in fifo order for each group of messages it holds"


def assignment(engine: Engine, producer: FakeProducer, due_at: datetime | None = None,
               keywords: tuple[str, ...] = ("queue", "fifo", "group", "dlq")) -> str:
    with transaction(engine) as session:
        return str(commands.create_assignment(
            session, producer, CORR, course_id="crs-1", title="Ordering", max_score=10,
            keywords=list(keywords), due_at=due_at)["id"])


def submit(engine: Engine, producer: FakeProducer, assignment_id: str, student_id: str = "stu-1",
           content: str = ESSAY) -> dict[str, Any]:
    with transaction(engine) as session:
        return commands.submit(session, producer, CORR, assignment_id, student_id, content)


def grade(engine: Engine, producer: FakeProducer) -> Any:
    """Hand the last submission.received to the grading handler; the graded event's data."""
    received = [e for e in producer.emitted if e.event_type == "submission.received"][-1]
    handle(SERVICE, engine, received, producer)
    return producer.emitted[-1]


def stored(engine: Engine, submission_id: str) -> Any:
    with transaction(engine) as session:
        return session.execute(select(submissions).where(
            submissions.c.id == submission_id)).one()


def test_an_assignment_is_created_and_read_back(engine: Engine, producer: FakeProducer) -> None:
    due = datetime(2026, 12, 1, 12, tzinfo=UTC)
    assignment_id = assignment(engine, producer, due_at=due)
    with transaction(engine) as session:
        row = commands.get_assignment(session, assignment_id)
    assert (row["course_id"], row["title"], row["max_score"], row["keywords"]) == (
        "crs-1", "Ordering", 10, ["queue", "fifo", "group", "dlq"])
    assert producer.only("assignment.created").data == {
        "assignment_id": assignment_id, "course_id": "crs-1", "title": "Ordering",
        "max_score": 10, "due_at": due.isoformat()}


def test_an_unknown_assignment_is_not_found(engine: Engine, producer: FakeProducer) -> None:
    with pytest.raises(NotFound, match="no-such-assignment"), transaction(engine) as session:
        commands.get_assignment(session, "no-such-assignment")
    with pytest.raises(NotFound):
        submit(engine, producer, "no-such-assignment")
    with pytest.raises(NotFound), transaction(engine) as session:
        commands.list_submissions(session, "no-such-assignment")
    assert "submission.received" not in producer.types


def test_each_submission_of_a_student_is_their_next_version(engine: Engine,
                                                            producer: FakeProducer) -> None:
    assignment_id = assignment(engine, producer)
    versions = [submit(engine, producer, assignment_id)["version"] for _ in range(3)]
    other = submit(engine, producer, assignment_id, student_id="stu-2")
    assert versions == [1, 2, 3]
    assert other["version"] == 1  # versions count per student
    received = [e for e in producer.emitted if e.event_type == "submission.received"]
    assert [(e.data["student_id"], e.data["version"]) for e in received] == [
        ("stu-1", 1), ("stu-1", 2), ("stu-1", 3), ("stu-2", 1)]
    with transaction(engine) as session:
        listed = commands.list_submissions(session, assignment_id, "stu-1")
    assert [(row.version, row.status) for row in listed] == [(1, "received"), (2, "received"),
                                                             (3, "received")]


def test_content_over_the_limit_is_too_large(engine: Engine, producer: FakeProducer) -> None:
    assignment_id = assignment(engine, producer)
    submit(engine, producer, assignment_id, content="x" * MAX_CONTENT_BYTES)  # the limit itself
    with pytest.raises(TooLarge):
        submit(engine, producer, assignment_id, content="é" * (MAX_CONTENT_BYTES // 2 + 1))
    with transaction(engine) as session:
        assert len(commands.list_submissions(session, assignment_id)) == 1


def test_grading_scores_the_submission_and_emits_submission_graded(
        engine: Engine, producer: FakeProducer) -> None:
    assignment_id = assignment(engine, producer)
    sub = submit(engine, producer, assignment_id)
    received = producer.only("submission.received")
    graded = grade(engine, producer)
    assert graded.event_type == "submission.graded"
    assert graded.data == {"submission_id": sub["id"], "assignment_id": assignment_id,
                           "student_id": "stu-1", "version": 1, "score": 7.5, "max_score": 10,
                           "plagiarism_score": 0.0, "flagged": False}  # 3 of 4 keywords
    assert (graded.correlation_id, graded.causation_id) == (CORR, received.event_id)
    row = stored(engine, sub["id"])
    assert (row.status, row.score, row.plagiarism_score, row.flagged) == (
        "graded", 7.5, 0.0, False)
    assert row.graded_at is not None


def test_a_late_submission_loses_ten_percent(engine: Engine, producer: FakeProducer) -> None:
    past = datetime.now(UTC) - timedelta(days=1)
    assignment_id = assignment(engine, producer, due_at=past)
    submit(engine, producer, assignment_id)
    assert grade(engine, producer).data["score"] == round(7.5 * (1 - domain.LATE_PENALTY), 2)


def test_a_copy_of_another_students_latest_submission_is_flagged(
        engine: Engine, producer: FakeProducer) -> None:
    assignment_id = assignment(engine, producer)
    submit(engine, producer, assignment_id, student_id="stu-1")
    grade(engine, producer)
    submit(engine, producer, assignment_id, student_id="stu-2", content=ESSAY.upper())
    graded = grade(engine, producer)
    assert graded.data["student_id"] == "stu-2"
    assert (graded.data["plagiarism_score"], graded.data["flagged"]) == (1.0, True)


def test_an_already_graded_submission_is_ignored(engine: Engine, producer: FakeProducer) -> None:
    assignment_id = assignment(engine, producer)
    sub = submit(engine, producer, assignment_id)
    grade(engine, producer)
    graded_at = stored(engine, sub["id"]).graded_at
    handle(SERVICE, engine, producer.only("submission.received"), producer)  # a second event
    assert producer.types.count("submission.graded") == 1
    assert stored(engine, sub["id"]).graded_at == graded_at


def test_grading_an_unknown_submission_is_permanent(engine: Engine,
                                                    producer: FakeProducer) -> None:
    ghost = event("submission.received", {"submission_id": "no-such-submission",
                                           "assignment_id": "a-1", "student_id": "stu-1",
                                           "version": 1, "content": "x"})
    with pytest.raises(PermanentError, match="no-such-submission"):
        handle(SERVICE, engine, ghost, producer)
    assert producer.emitted == []


def test_injected_faults_fail_grading_only_for_the_listed_students(
        engine: Engine, producer: FakeProducer) -> None:
    assignment_id = assignment(engine, producer)
    for student_id in ("stu-1", "stu-2"):
        submit(engine, producer, assignment_id, student_id=student_id)
    received = {e.data["student_id"]: e for e in producer.emitted
                if e.event_type == "submission.received"}
    with transaction(engine) as session:
        commands.set_grader_faults(session, ["stu-1", "stu-1", "stu-9"])
    handled: list[str] = []

    def grader(ctx: Context) -> None:
        handled.append(ctx.event.data["student_id"])

    wrapped = failing_for_injected_students(grader)
    with transaction(engine) as session:
        with pytest.raises(InjectedFault, match="stu-1"):
            wrapped(Context(received["stu-1"], session, producer))
        wrapped(Context(received["stu-2"], session, producer))
    assert handled == ["stu-2"]
    with transaction(engine) as session:
        commands.set_grader_faults(session, [])  # switched off: stu-1 is graded again
    with transaction(engine) as session:
        wrapped(Context(received["stu-1"], session, producer))
    assert handled == ["stu-2", "stu-1"]
