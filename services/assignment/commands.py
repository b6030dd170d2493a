"""What the assignment API does, one function per request, inside the caller's transaction. A
refusal is a domain error (shared.errors), which the web layer turns into problem+json."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, func, insert, select
from sqlalchemy.orm import Session

from services.assignment.schemas import MAX_CONTENT_BYTES
from services.assignment.tables import assignments, grader_faults, submissions
from shared.envelope import new_id
from shared.errors import NotFound, TooLarge
from shared.handling import Emitter


def create_assignment(session: Session, producer: Emitter, correlation_id: str,
                      created_by: str | None = None, **fields: Any) -> dict[str, Any]:
    """A new assignment, recording the subject of the instructor who created it."""
    row = {"id": new_id(), "created_at": datetime.now(UTC), "created_by": created_by, **fields}
    session.execute(insert(assignments).values(row))
    due_at = row["due_at"].isoformat() if row["due_at"] else None
    producer.emit(session, "assignment.created", {
        "assignment_id": row["id"], "course_id": row["course_id"], "title": row["title"],
        "max_score": row["max_score"], "due_at": due_at}, correlation_id=correlation_id)
    return row


def get_assignment(session: Session, assignment_id: str, creator: str | None = None
                   ) -> dict[str, Any]:
    """An assignment; given a `creator`, only one they created (another's is not found)."""
    row = session.execute(select(assignments).where(assignments.c.id == assignment_id)).first()
    if row is None or (creator is not None and row.created_by != creator):
        raise NotFound(f"No assignment with id {assignment_id!r}.")
    return dict(row._mapping)


def submit(session: Session, producer: Emitter, correlation_id: str, assignment_id: str,
           student_id: str, content: str) -> dict[str, Any]:
    """Store the student's next version as received and ask for grading."""
    size = len(content.encode())
    if size > MAX_CONTENT_BYTES:
        raise TooLarge(f"The content is {size} bytes; at most {MAX_CONTENT_BYTES} "
                       "bytes (100 KB) are accepted.")
    get_assignment(session, assignment_id)
    latest = session.execute(select(func.max(submissions.c.version)).where(
        submissions.c.assignment_id == assignment_id,
        submissions.c.student_id == student_id)).scalar()
    row = {"id": new_id(), "assignment_id": assignment_id, "student_id": student_id,
           "version": (latest or 0) + 1, "content": content, "status": "received",
           "received_at": datetime.now(UTC)}
    session.execute(insert(submissions).values(row))
    producer.emit(session, "submission.received", {
        "submission_id": row["id"], "assignment_id": assignment_id, "student_id": student_id,
        "version": row["version"], "content": content}, correlation_id=correlation_id)
    return {"id": row["id"], "version": row["version"], "status": row["status"]}


def list_submissions(session: Session, assignment_id: str, student_id: str | None = None,
                     creator: str | None = None) -> list[Any]:
    """An assignment's submissions (one student's, if given), by student and version; given a
    `creator`, only of an assignment they created."""
    get_assignment(session, assignment_id, creator)
    statement = select(submissions).where(submissions.c.assignment_id == assignment_id)
    if student_id is not None:
        statement = statement.where(submissions.c.student_id == student_id)
    return list(session.execute(statement.order_by(submissions.c.student_id,
                                                   submissions.c.version)).all())


def set_grader_faults(session: Session, student_ids: list[str]) -> None:
    """Make grading fail transiently for these students (the simulator's switch)."""
    session.execute(delete(grader_faults))
    if student_ids:
        session.execute(insert(grader_faults), [{"student_id": s} for s in
                                                sorted(set(student_ids))])


def grading_fails_for(session: Session, student_id: str) -> bool:
    return session.execute(select(grader_faults).where(
        grader_faults.c.student_id == student_id)).first() is not None
