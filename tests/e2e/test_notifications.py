"""Notification and analytics end to end: all five services and the SMTP sink as real processes,
events through the SNS topic and the standard queues of LocalStack."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest

from shared.envelope import Envelope, new_id
from shared.events import CATALOGUE
from tests.support.mailbox import Mailbox
from tests.support.messages import receive_all, wait_for
from tests.support.school import School

ESSAY = "event driven systems keep working when one service is down because queues hold work"


@pytest.fixture(scope="module")
def school(school_stack) -> School:
    return School(school_stack.urls, token=school_stack.admin())


@pytest.fixture(scope="module")
def publish(sns, school_stack):  # type: ignore[no-untyped-def]
    """Publish an event to the stack's topic as a producer's relay would."""
    def publish(event_type: str, data: dict[str, Any], event_id: str | None = None,
                version: int | None = None) -> str:
        if version is None:
            envelope = CATALOGUE.new(event_type, data, event_id=event_id or new_id())
        else:  # an older version, as a producer not yet upgraded sent it
            CATALOGUE.validate(event_type, version, data)
            envelope = Envelope(event_type, version, data, "enrollment",
                                event_id=event_id or new_id())
        sns.publish(TopicArn=school_stack.report.topic_arn, Message=envelope.body(),
                    MessageAttributes=envelope.attributes())
        return envelope.event_id
    return publish


def contact(student: str) -> dict[str, str]:
    return {"student_id": student, "name": "Ada Lovelace", "email": f"{student}@example.com"}


def register(publish: Any, student: str) -> str:
    """A student.registered v1, which carried the contact before it became a private message
    (contact.recorded): notification still reads it as the contact."""
    return str(publish("student.registered", contact(student), version=1))


def confirmed(student: str) -> dict[str, str]:
    return {"enrollment_id": new_id(), "student_id": student, "course_id": new_id()}


def test_each_notifying_event_sends_exactly_one_email(school: School, mailbox: Mailbox) -> None:
    student = school.new_student()
    kept, declined = school.course(price_cents=2500), school.course()
    enrollment = school.enroll(student["id"], kept)["id"]
    school.wait_status(enrollment, "active")
    school.cancel(enrollment)
    school.wait_status(enrollment, "cancelled")
    school.wait_status(school.enroll(student["id"], declined, "tok_declined")["id"],
                       "cancelled")
    task = school.assignment(course_id=kept, title="Queues", max_score=10,
                             keywords=["queues", "service"])
    school.submit(task, student["id"], ESSAY)
    sent = school.wait_sent(student["id"], 5)
    assert sorted(n["event_type"] for n in sent) == [
        "enrollment.cancelled", "enrollment.cancelled", "enrollment.confirmed",
        "payment.refunded", "submission.graded"]
    assert all(n["status"] == "sent" and n["to"] == student["email"] for n in sent)
    mails = mailbox.to(student["email"])
    assert sorted(m["X-Event-ID"] for m in mails) == sorted(n["event_id"] for n in sent)
    by_event = {m["X-Event-ID"]: m for m in mails}
    for note in sent:
        mail = by_event[note["event_id"]]
        assert mail["Subject"] == note["subject"] and mail["X-Event-Type"] == note["event_type"]
        assert mail.get_body(("plain",)) is not None and mail.get_body(("html",)) is not None
        assert student["name"] in mail.get_body(("plain",)).get_content()
    refund = next(m for m in mails if m["X-Event-Type"] == "payment.refunded")
    assert "25.00 USD" in refund["Subject"]
    graded = next(m for m in mails if m["X-Event-Type"] == "submission.graded")
    assert graded["Subject"].startswith("Your submission was graded: 10/10")


def test_a_triple_delivery_sends_one_email_and_counts_once(
        school: School, mailbox: Mailbox, publish: Any) -> None:
    student = new_id()
    register(publish, student)
    before = school.summary()
    event_id = new_id()
    data = {"payment_id": new_id(), "enrollment_id": new_id(), "student_id": student,
            "amount_cents": 700, "currency": "GBP"}
    for _ in range(3):
        publish("payment.refunded", data, event_id=event_id)
    wait_for(lambda: school.summary()["duplicates_absorbed"]
             == before["duplicates_absorbed"] + 2, 30, "analytics to absorb 2 duplicates")
    [note] = school.wait_sent(student, 1)
    after = school.summary()
    counted = after["events_by_type"]["payment.refunded"]
    assert counted == before["events_by_type"].get("payment.refunded", 0) + 1
    assert after["revenue_cents_by_currency"]["GBP"] == (
        before["revenue_cents_by_currency"].get("GBP", 0) - 700)
    assert note["event_id"] == event_id
    assert len(mailbox.for_event(event_id)) == 1
    assert len(school.notifications(student)) == 1


def test_an_event_before_its_contact_waits_and_is_sent_when_it_arrives(
        school: School, mailbox: Mailbox, publish: Any, school_stack) -> None:
    student = new_id()
    event_id = publish("enrollment.confirmed", confirmed(student))
    [waiting] = wait_for(lambda: school.notifications(student), 30, "the waiting notification")
    assert (waiting["status"], waiting["to"], waiting["event_id"]) == ("pending", None, event_id)
    assert "waiting_for_contact" in school_stack.log("notification-worker")
    assert mailbox.for_event(event_id) == []
    register(publish, student)
    [sent] = school.wait_sent(student, 1)
    assert sent["to"] == f"{student}@example.com"
    [mail] = mailbox.for_event(event_id)
    assert f"{student}@example.com" in mail["To"]


def test_a_poison_message_is_dead_lettered_while_the_worker_goes_on(
        school: School, publish: Any, sqs, school_stack) -> None:
    queues = school_stack.report.queues["notifications"]
    started = time.monotonic()
    sqs.send_message(QueueUrl=queues.url, MessageBody="{not json",
                     MessageAttributes={"event_type": {"DataType": "String",
                                                       "StringValue": "enrollment.confirmed"}})
    [dead] = receive_all(sqs, queues.dlq_url, 1, timeout=20)
    took = time.monotonic() - started
    attributes = {k: v["StringValue"] for k, v in dead["MessageAttributes"].items()}
    assert attributes["dlq_reason"] == "broken_json" and attributes["dlq_error"]
    assert attributes["source_queue"] == "notifications"
    assert attributes["event_type"] == "enrollment.confirmed"  # the original attributes kept
    assert dead["Body"] == "{not json" and took < 10
    student = new_id()
    register(publish, student)
    publish("enrollment.confirmed", confirmed(student))
    school.wait_sent(student, 1)  # the worker went on


def test_with_the_smtp_server_down_the_email_waits_and_is_sent_later(
        school: School, mailbox: Mailbox, publish: Any) -> None:
    mailbox.stop()
    try:
        student = new_id()
        register(publish, student)
        event_id = publish("enrollment.confirmed", confirmed(student))
        [failing] = wait_for(lambda: [n for n in school.notifications(student)
                                      if n["attempts"] >= 2], 40, "two failed SMTP attempts")
        assert failing["status"] == "pending" and failing["last_error"]
    finally:
        mailbox.start()
    [sent] = school.wait_sent(student, 1)
    assert sent["event_id"] == event_id and sent["attempts"] >= 3
    assert len(mailbox.for_event(event_id)) == 1


def test_notifications_need_a_student_id(school: School) -> None:
    reply = school.send("GET", "notification", "/notifications")
    assert reply.status_code == 422
    assert reply.headers["Content-Type"] == "application/problem+json"
    assert "student_id" in json.dumps(reply.json()["errors"])
    assert school.notifications("nobody-" + uuid.uuid4().hex) == []
