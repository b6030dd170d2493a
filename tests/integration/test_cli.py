"""`school status`, `school dlq list` and `school dlq redrive`, run as the console script."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import insert

from shared import db
from shared.envelope import Envelope
from shared.outbox_admin import OUTBOX
from shared.topology import TOPOLOGY, physical
from tests.support.messages import depth, receive_all, wait_for

SCHOOL = str(Path(sys.executable).parent / "school")


def school(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SCHOOL, *args], capture_output=True, text=True, timeout=120,
                          env=os.environ.copy())


def dead_letter(sqs, url: str, reason: str) -> Envelope:
    event = Envelope("refund.requested", 1, {"enrollment_id": "e1", "student_id": "s1",
                                             "amount_cents": 100, "currency": "USD"},
                     "enrollment")
    sqs.send_message(QueueUrl=url, MessageBody=event.body(), MessageGroupId="s1",
                     MessageDeduplicationId=event.event_id,
                     MessageAttributes=event.attributes() | {
                         "dlq_reason": {"DataType": "String", "StringValue": reason}})
    return event


def test_status_lists_every_queue_and_dlq(sqs, settings, provisioned):
    ref = provisioned.queues["assignment-submissions.fifo"]
    dead_letter(sqs, ref.dlq_url, "invalid_data")
    try:
        result = school("status")
        assert result.returncode == 0, result.stderr
        queues = result.stdout.split("\n\n")[0]
        lines = {line.split()[0]: line.split()[1:] for line in queues.splitlines()[1:]}
        for spec in TOPOLOGY.queues:
            assert physical(settings.school_env, spec.name) in lines
            assert physical(settings.school_env, spec.dlq_name) in lines
        visible, in_flight, oldest = lines[physical(settings.school_env, ref.spec.dlq_name)]
        assert (visible, in_flight) == ("1", "0") and oldest.endswith("s")
    finally:
        receive_all(sqs, ref.dlq_url, 1)


def test_dlq_list_shows_why_and_keeps_the_messages(sqs, provisioned):
    ref = provisioned.queues["enrollment-payment-results.fifo"]
    event = dead_letter(sqs, ref.dlq_url, "permanent_failure")
    try:
        result = school("dlq", "list", "enrollment-payment-results.fifo")
        assert result.returncode == 0, result.stderr
        listed = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
        assert [(m["dlq_reason"], m["event_type"]) for m in listed] == [
            ("permanent_failure", "refund.requested")]
        assert event.event_id in listed[0]["body"]
        wait_for(lambda: depth(sqs, ref.dlq_url) == 1, 10, "the message to stay in the DLQ")
    finally:
        receive_all(sqs, ref.dlq_url, 1)


def test_dlq_list_shows_every_message_of_a_fifo_dlq_and_keeps_their_order(sqs, provisioned):
    """A regression: a FIFO group is locked once its first messages are received, so the listing
    showed 20 of 21. Now every message is listed, and each group keeps its order."""
    ref = provisioned.queues["payment-requests.fifo"]
    sent = [dead_letter(sqs, ref.dlq_url, "retries_exhausted") for _ in range(15)]
    for i in range(6):
        sqs.send_message(QueueUrl=ref.dlq_url, MessageBody=f'{{"n": {i}}}',
                         MessageGroupId=f"other{i}",
                         MessageDeduplicationId=f"o{i}-{sent[0].event_id}")
    try:
        result = school("dlq", "list", "payment-requests.fifo")
        assert result.returncode == 0, result.stderr
        listed = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
        assert len(listed) == 21 and "21 message(s) in" in result.stdout
        in_group = [m["body"] for m in listed if m["group_id"] == "s1"]
        assert [json.loads(b)["event_id"] for b in in_group] == [e.event_id for e in sent]
        wait_for(lambda: depth(sqs, ref.dlq_url) == 21, 10, "every message to stay in the DLQ")
        again = receive_all(sqs, ref.dlq_url, 21)
        assert [json.loads(m["Body"])["event_id"] for m in again
                if m["Attributes"]["MessageGroupId"] == "s1"] == [e.event_id for e in sent]
    finally:
        receive_all(sqs, ref.dlq_url, 21, timeout=5)


def test_status_shows_dead_outbox_rows_and_retry_hands_them_back(provisioned, database_url):
    db.migrate("enrollment", database_url)
    engine = db.make_engine(database_url)
    event, now = Envelope("course.created", 1, {}, "enrollment"), datetime.now(UTC)
    with engine.begin() as conn:
        conn.execute(insert(OUTBOX).values(
            destination="school-events", dedup_id=event.event_id, event_id=event.event_id,
            event_type=event.event_type, body=event.body(), attributes="{}", created_at=now,
            attempts=1, last_error="InvalidParameterValue: x", dead_at=now))
    engine.dispose()
    env = {"ENROLLMENT_DATABASE_URL": database_url}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([SCHOOL, *args], capture_output=True, text=True, timeout=120,
                              env=os.environ | env)

    def outbox_line(stdout: str) -> list[str]:
        outbox = stdout.split("\n\n")[1]
        return next(line.split() for line in outbox.splitlines() if line.startswith("enroll"))

    status = run("status")
    assert status.returncode == 0, status.stderr
    assert outbox_line(status.stdout)[:4] == ["enrollment", "0", "0", "1"]
    listed = run("outbox", "list", "enrollment")
    assert "InvalidParameterValue: x" in listed.stdout and "1 dead row(s)" in listed.stdout
    retried = run("outbox", "retry", "enrollment")
    assert "1 dead row(s) of enrollment handed back" in retried.stdout, retried.stderr
    assert outbox_line(run("status").stdout)[:4] == ["enrollment", "1", "0", "0"]


def test_fifo_redrive_brings_back_messages_the_queue_has_seen(sqs, provisioned):
    """The realistic case: the DLQ holds messages that went through the queue minutes ago,
    under the same deduplication ids, in order within their group."""
    ref = provisioned.queues["payment-requests.fifo"]
    events = [dead_letter(sqs, ref.url, "-") for _ in range(3)]
    for message in receive_all(sqs, ref.url, 3):  # consumed once: the queue knows these ids
        sqs.send_message(QueueUrl=ref.dlq_url, MessageBody=message["Body"], MessageGroupId="s1",
                         MessageDeduplicationId=message["Attributes"]["MessageDeduplicationId"],
                         MessageAttributes=message["MessageAttributes"])
    result = school("dlq", "redrive", "payment-requests.fifo")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 message(s) moved" in result.stdout
    moved = receive_all(sqs, ref.url, 3)
    assert [json.loads(m["Body"])["event_id"] for m in moved] == [e.event_id for e in events]
    assert all("dlq_reason" not in m["MessageAttributes"] for m in moved)
    assert depth(sqs, ref.dlq_url) == 0


def test_standard_redrive_uses_the_move_task(sqs, provisioned):
    ref = provisioned.queues["analytics"]
    sqs.send_message(QueueUrl=ref.dlq_url, MessageBody='{"event_id": "x"}')
    result = school("dlq", "redrive", "analytics")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "completed: 1 message(s) moved" in result.stdout
    assert [m["Body"] for m in receive_all(sqs, ref.url, 1)] == ['{"event_id": "x"}']


def test_an_unknown_queue_is_a_clear_error() -> None:
    result = school("dlq", "redrive", "no-such-queue")
    assert result.returncode == 2
    assert "invalid choice" in result.stderr and "payment-requests.fifo" in result.stderr


def test_provision_creates_the_topology_once(sqs, settings, localstack_endpoint):
    env_name = f"{settings.school_env}-prov"

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run([SCHOOL, "provision"], capture_output=True, text=True, timeout=120,
                              env=os.environ | {"SCHOOL_ENV": env_name})

    first = run()
    assert first.returncode == 0, first.stderr
    assert f"created queue {physical(env_name, 'payment-requests-dlq.fifo')}" in first.stdout
    urls = sqs.list_queues(QueueNamePrefix=env_name)["QueueUrls"]
    assert len(urls) == 2 * len(TOPOLOGY.queues)
    second = run()
    assert second.returncode == 0 and "nothing to change" in second.stdout, second.stdout
