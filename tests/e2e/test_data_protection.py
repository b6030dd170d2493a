"""Personal data and payment tokens only where they must go, end to end: all
five services and the SMTP sink as real processes on LocalStack.

A saga is run with a planted name, email and payment token, each unique to this run, so that a
search for them finds only what this run put there. A queue of the test's own, subscribed to the
topic exactly as the analytics queue is, sees every event the topic delivers to analytics."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, insert

from services.notification.tables import contacts
from shared.envelope import Envelope, new_id
from shared.provision import filter_policy, topic_send_policy
from shared.topology import TOPOLOGY, physical
from tests.support.messages import receive_all, wait_for
from tests.support.school import School

CONTROL_NAMES = ["Eve\r\nBcc: victim@evil.example", "Eve\nBcc: x@evil.example", "Tab\tName",
                 "Nul\x00", "Del\x7f", "Next\x85Line", "Csi\x9b"]


@pytest.fixture(scope="module")
def school(school_stack: Any) -> School:
    return School(school_stack.urls, token=school_stack.admin())


@pytest.fixture(scope="module")
def listener(sqs: Any, sns: Any, school_stack: Any) -> Iterator[str]:
    """A queue subscribed to the stack's topic with the analytics subscription's own filter
    policy and raw delivery: it receives what the analytics queue receives."""
    env = school_stack.env["SCHOOL_ENV"]
    url = sqs.create_queue(QueueName=physical(env, "listener"))["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"]
    topic = school_stack.report.topic_arn
    sqs.set_queue_attributes(QueueUrl=url, Attributes={
        "Policy": json.dumps(topic_send_policy(arn, topic))})
    attributes = {"RawMessageDelivery": "true"}
    if policy := filter_policy(TOPOLOGY.queue("analytics")):
        attributes["FilterPolicy"] = policy
    subscription = sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn,
                                 Attributes=attributes, ReturnSubscriptionArn=True)
    yield url
    sns.unsubscribe(SubscriptionArn=subscription["SubscriptionArn"])
    sqs.delete_queue(QueueUrl=url)


@pytest.fixture(scope="module")
def planted(school: School, listener: str) -> dict[str, str]:
    """A student with a planted name and email, enrolled twice: paid (tok_ok), then with a
    planted token the gateway declines; then the mail both sagas send has gone out."""
    mark = uuid.uuid4().hex[:12]
    person = {"name": f"Planted Person {mark}", "email": f"planted-{mark}@example.com",
              "token": f"tok_planted_{mark}"}
    reply = school.send("POST", "enrollment", "/students",
                        {"name": person["name"], "email": person["email"]})
    assert reply.status_code == 201, reply.text
    student = reply.json()["id"]
    paid = school.enroll(student, school.course())["id"]
    school.wait_status(paid, "active")
    declined = school.enroll(student, school.course(), person["token"])["id"]
    school.wait_status(declined, "cancelled")
    school.wait_sent(student, 2)
    return person | {"student": student, "paid": paid, "declined": declined}


def test_the_topic_and_so_analytics_carry_no_token_name_or_email(
        school: School, planted: dict[str, str], sqs: Any, listener: str) -> None:
    received = _drain(sqs, listener, planted["student"])
    assert {json.loads(m["Body"])["event_type"] for m in received} >= {
        "student.registered", "enrollment.requested", "payment.succeeded", "payment.failed"}
    for message in received:
        text = message["Body"] + json.dumps(message.get("MessageAttributes", {}))
        for secret in (planted["token"], planted["name"], planted["email"], "payment_token",
                       "tok_ok"):
            assert secret not in text, f"{secret!r} on the topic: {message['Body']}"
    # ... while payment got its token: the planted one was tried, and declined
    [payment] = school.payments(planted["declined"])
    assert (payment["status"], payment["failure_reason"]) == ("failed", "invalid_token")


def _drain(sqs: Any, url: str, student: str) -> list[dict[str, Any]]:
    """The listener's messages about `student`, once its registration and both sagas' ends
    have arrived (standard queues keep no order)."""
    seen: list[dict[str, Any]] = []

    def arrived() -> list[dict[str, Any]] | None:
        seen.extend(receive_all(sqs, url, 1, timeout=2))
        mine = [m for m in seen if json.loads(m["Body"])["data"].get("student_id") == student]
        types = {json.loads(m["Body"])["event_type"] for m in mine}
        return mine if {"student.registered", "payment.failed", "enrollment.confirmed",
                        "enrollment.cancelled"} <= types else None
    return wait_for(arrived, 60, "the planted student's events on the topic")


def test_the_analytics_subscription_is_the_one_the_listener_copies(
        sns: Any, school_stack: Any) -> None:
    """The listener stands for the analytics queue only if analytics' subscription delivers
    the same: raw, with the same filter (none: every event of the topic)."""
    analytics = school_stack.report.queues["analytics"].url.rsplit("/", 1)[-1]
    subscriptions = sns.list_subscriptions_by_topic(TopicArn=school_stack.report.topic_arn)
    [arn] = [s["SubscriptionArn"] for s in subscriptions["Subscriptions"]
             if s["Endpoint"].endswith(f":{analytics}")]
    attributes = sns.get_subscription_attributes(SubscriptionArn=arn)["Attributes"]
    assert attributes["RawMessageDelivery"] == "true"
    assert attributes.get("FilterPolicy") == filter_policy(TOPOLOGY.queue("analytics"))


def test_the_logs_of_every_process_hold_no_planted_email_or_token(
        planted: dict[str, str], school_stack: Any, mailbox: Any) -> None:
    logs = [*Path(school_stack.folder).glob("*.log"),
            *Path(mailbox.folder).parent.glob("smtp-*.log")]
    assert len(logs) >= 11  # the issuer, five APIs, five workers, and the SMTP sink
    mail = mailbox.to(planted["email"])
    assert mail, "the planted student got mail, so the sender and the sink saw the address"
    for log in logs:
        text = log.read_text(errors="replace")
        for secret in (planted["email"], planted["token"]):
            assert secret not in text, f"{secret!r} in {log.name}"
    worker = school_stack.log("notification-worker")
    assert planted["student"] in worker  # the sender logs the student's id instead


@pytest.mark.parametrize("name", CONTROL_NAMES)
def test_a_name_with_a_control_character_is_refused(school: School, name: str) -> None:
    reply = school.send("POST", "enrollment", "/students", {"name": name,
                                                             "email": "eve@example.com"})
    assert reply.status_code == 422, reply.text
    assert reply.headers["Content-Type"] == "application/problem+json"
    assert "must not contain" in json.dumps(reply.json()["errors"]["name"])


def test_a_title_with_a_line_break_is_refused(school: School) -> None:
    reply = school.send("POST", "enrollment", "/courses", {"title": "SQS\r\n101",
                                                            "price_cents": 0, "capacity": 1})
    assert reply.status_code == 422, reply.text
    assert "title" in reply.json()["errors"]


def test_a_name_with_a_line_break_in_an_old_registration_is_poison(
        sqs: Any, school_stack: Any) -> None:
    """A student.registered v1 from before the rule (it carried the contact) whose name holds
    a line break: notification's schema refuses it, and it is dead-lettered with why."""
    queues = school_stack.report.queues["notifications"]
    student = new_id()
    old = Envelope("student.registered", 1, {"student_id": student, "name": CONTROL_NAMES[0],
                                             "email": "eve@example.com"}, "enrollment")
    sqs.send_message(QueueUrl=queues.url, MessageBody=old.body(),
                     MessageAttributes=old.attributes())

    def dead() -> dict[str, Any] | None:
        for message in receive_all(sqs, queues.dlq_url, 1, timeout=2):
            if student in message["Body"]:
                return message
        return None
    message = wait_for(dead, 40, "the old registration in the notifications DLQ")
    assert message["MessageAttributes"]["dlq_reason"]["StringValue"] == "invalid_data"


def test_a_letter_whose_name_cannot_be_a_header_ends_failed(
        school: School, school_stack: Any, sns: Any) -> None:
    """A contact stored before names were checked, with a line break in its name: its letter
    can never be composed, so it ends `failed` with the reason, never pending for ever, and
    the letters of others still go out."""
    stuck, fine = new_id(), new_id()
    engine = create_engine(school_stack.databases["notification"])
    try:
        with engine.begin() as conn:
            conn.execute(insert(contacts), [
                {"student_id": stuck, "name": CONTROL_NAMES[0], "email": "eve@example.com",
                 "registered_at": _now()},
                {"student_id": fine, "name": "Fine Person", "email": f"{fine}@example.com",
                 "registered_at": _now()}])
    finally:
        engine.dispose()
    for student in (stuck, fine):
        event = Envelope("enrollment.confirmed", 1, {"enrollment_id": new_id(),
                                                     "student_id": student,
                                                     "course_id": new_id()}, "enrollment")
        sns.publish(TopicArn=school_stack.report.topic_arn, Message=event.body(),
                    MessageAttributes=event.attributes())
    school.wait_sent(fine, 1)

    def settled() -> dict[str, Any] | None:
        rows = school.notifications(stuck)
        return rows[0] if rows and rows[0]["status"] != "pending" else None
    letter = wait_for(settled, 120, "the uncomposable letter to settle")
    assert letter["status"] == "failed" and letter["last_error"], letter
    assert "sender pass failed" not in school_stack.log("notification-worker"), (
        "a bad row aborted the sender's pass")


def _now() -> datetime:
    return datetime.now(UTC)
