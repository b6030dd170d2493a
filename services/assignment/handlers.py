"""The assignment worker's handler: grade each submission, in order per student."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from sqlalchemy import and_, func, select, update

from services.assignment import domain
from services.assignment.tables import assignments, submissions
from shared.db import utc
from shared.handling import Context, PermanentError

log = logging.getLogger(__name__)


def _others_latest(ctx: Context, assignment_id: str, student_id: str) -> list[str]:
    """The latest submission of every other student to the same assignment."""
    latest = (select(submissions.c.student_id, func.max(submissions.c.version).label("v"))
              .where(submissions.c.assignment_id == assignment_id,
                     submissions.c.student_id != student_id)
              .group_by(submissions.c.student_id).subquery())
    rows = ctx.session.execute(select(submissions.c.content).join(latest, and_(
        submissions.c.student_id == latest.c.student_id, submissions.c.version == latest.c.v))
        .where(submissions.c.assignment_id == assignment_id))
    return [r.content for r in rows]


def submission_received(ctx: Context) -> None:
    data = ctx.event.data
    row = ctx.session.execute(select(submissions).where(
        submissions.c.id == data["submission_id"])).first()
    if row is None:
        raise PermanentError(f"no submission {data['submission_id']}")
    if row.status == "graded":  # another event for the same submission graded it already
        log.warning("submission %s is already graded", row.id, extra={"outcome": "ignored"})
        return
    task = ctx.session.execute(select(assignments).where(
        assignments.c.id == row.assignment_id)).one()
    received_at, due_at = (utc(row.received_at), utc(task.due_at) if task.due_at else None)
    score = domain.final_score(row.content, task.keywords, task.max_score,
                               received_at, due_at)
    similarity = domain.plagiarism_score(
        row.content, _others_latest(ctx, row.assignment_id, row.student_id))
    ctx.session.execute(update(submissions).where(submissions.c.id == row.id).values(
        status="graded", score=score, plagiarism_score=similarity,
        flagged=domain.flagged(similarity), graded_at=datetime.now(UTC)))
    ctx.emit("submission.graded", {
        "submission_id": row.id, "assignment_id": row.assignment_id,
        "student_id": row.student_id, "version": row.version, "score": score,
        "max_score": task.max_score, "plagiarism_score": similarity,
        "flagged": domain.flagged(similarity)})
