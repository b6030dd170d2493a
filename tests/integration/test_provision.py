"""The real topology (shared.topology), provisioned on LocalStack."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from botocore.exceptions import ClientError

from shared.envelope import Envelope
from shared.provision import Provisioner, queue_missing
from shared.topology import TOPOLOGY, QueueSpec, TopicSpec, Topology, physical
from tests.support.messages import bodies, receive_all

LONE = Topology(TopicSpec("lone-events"), (QueueSpec("lone", "probe", 3, 30),))


def attributes(sqs, url):
    return sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]


def test_every_queue_has_its_attributes_and_dlq(sqs, settings, provisioned):
    assert set(provisioned.queues) == {q.name for q in TOPOLOGY.queues}
    for spec in TOPOLOGY.queues:
        ref = provisioned.queues[spec.name]
        main, dlq = attributes(sqs, ref.url), attributes(sqs, ref.dlq_url)
        redrive = json.loads(main["RedrivePolicy"])
        assert redrive["deadLetterTargetArn"] == ref.dlq_arn
        assert int(redrive["maxReceiveCount"]) == spec.redrive_max_receives
        assert main["VisibilityTimeout"] == str(spec.visibility_timeout)
        assert main["MessageRetentionPeriod"] == str(4 * 24 * 3600)
        assert main["ReceiveMessageWaitTimeSeconds"] == "20"
        assert dlq["MessageRetentionPeriod"] == str(14 * 24 * 3600)
        assert main["SqsManagedSseEnabled"] == dlq["SqsManagedSseEnabled"] == "true"
        # the DLQ admits its own source queue only, as on AWS
        assert json.loads(dlq["RedriveAllowPolicy"]) == {
            "redrivePermission": "byQueue", "sourceQueueArns": [ref.arn]}
        assert (main.get("FifoQueue") == "true") == spec.fifo == (dlq.get("FifoQueue") == "true")
        if spec.fifo:  # high-throughput FIFO
            assert (main["DeduplicationScope"], main["FifoThroughputLimit"]) == (
                "messageGroup", "perMessageGroupId")
        assert ref.url.endswith("/" + physical(settings.school_env, spec.name))
        assert ref.dlq_url.endswith("/" + physical(settings.school_env, spec.dlq_name))


def test_subscriptions_are_raw_and_filtered(sns, provisioned):
    subs = sns.list_subscriptions_by_topic(TopicArn=provisioned.topic_arn)["Subscriptions"]
    by_queue = {s["Endpoint"]: s["SubscriptionArn"] for s in subs}
    assert set(by_queue) == {provisioned.queues[n].arn for n in ("notifications", "analytics")}
    notifications = sns.get_subscription_attributes(
        SubscriptionArn=by_queue[provisioned.queues["notifications"].arn])["Attributes"]
    analytics = sns.get_subscription_attributes(
        SubscriptionArn=by_queue[provisioned.queues["analytics"].arn])["Attributes"]
    assert notifications["RawMessageDelivery"] == analytics["RawMessageDelivery"] == "true"
    assert set(json.loads(notifications["FilterPolicy"])["event_type"]) == set(
        TOPOLOGY.queue("notifications").filter_events or ())
    assert "FilterPolicy" not in analytics


def test_a_second_run_changes_nothing(sqs, sns, settings, provisioned):
    again = Provisioner(sqs, sns, settings.school_env).run()
    assert again.changes == []
    assert {n: r.url for n, r in again.queues.items()} == {
        n: r.url for n, r in provisioned.queues.items()}


def test_the_topic_fans_out_by_event_type(sqs, sns, provisioned):
    confirmed = Envelope("enrollment.confirmed", 1, {"enrollment_id": "e", "student_id": "s",
                                                     "course_id": "c"}, "enrollment")
    created = Envelope("course.created", 1, {"course_id": "c"}, "enrollment")
    for event in (confirmed, created):
        sns.publish(TopicArn=provisioned.topic_arn, Message=event.body(),
                    MessageAttributes=event.attributes())
    everything = receive_all(sqs, provisioned.queues["analytics"].url, 2)
    assert {b["event_type"] for b in bodies(everything)} == {"enrollment.confirmed",
                                                              "course.created"}
    assert everything[0]["MessageAttributes"]["correlation_id"]["StringValue"]  # raw delivery
    filtered = receive_all(sqs, provisioned.queues["notifications"].url, 2, timeout=5)
    assert [b["event_type"] for b in bodies(filtered)] == ["enrollment.confirmed"]


def test_localstack_s_missing_queue_error_is_recognised_by_its_code(sqs, settings):
    with pytest.raises(ClientError) as caught:
        sqs.get_queue_url(QueueName=physical(settings.school_env, "never-provisioned"))
    assert queue_missing(caught.value)


def test_a_deleted_queue_is_created_again(sqs, sns, settings):
    env = f"{settings.school_env}-{uuid.uuid4().hex[:4]}"
    first = Provisioner(sqs, sns, env, LONE).run()
    sqs.delete_queue(QueueUrl=first.queues["lone"].url)
    again = Provisioner(sqs, sns, env, LONE).run()
    assert f"created queue {physical(env, 'lone')}" in again.changes
    assert f"created queue {physical(env, 'lone-dlq')}" not in again.changes


class RefusingSqs:
    """GetQueueUrl refuses with the given error; any queue it is then asked to create exists."""

    def __init__(self, code: str, message: str) -> None:
        self.error = {"Code": code, "Message": message, "Type": "Sender"}
        self.created: list[str] = []

    def get_queue_url(self, QueueName: str) -> dict[str, str]:  # noqa: N803
        raise ClientError({"Error": self.error}, "GetQueueUrl")

    def create_queue(self, QueueName: str, Attributes: dict[str, str]  # noqa: N803
                     ) -> dict[str, str]:
        self.created.append(QueueName)
        return {"QueueUrl": f"http://sqs/{QueueName}"}

    def get_queue_attributes(self, QueueUrl: str, AttributeNames: list[str]  # noqa: N803
                             ) -> dict[str, Any]:
        return {"Attributes": {"QueueArn": "arn:aws:sqs:us-east-1:1:" + QueueUrl.rsplit("/")[-1]}}

    def set_queue_attributes(self, QueueUrl: str, Attributes: dict[str, str]  # noqa: N803
                             ) -> None:
        pass


class FakeSns:
    def create_topic(self, Name: str, Attributes: dict[str, str]) -> dict[str, str]:  # noqa: N803
        return {"TopicArn": f"arn:aws:sns:us-east-1:1:{Name}"}


@pytest.mark.parametrize("code", ["AWS.SimpleQueueService.NonExistentQueue",
                                  "QueueDoesNotExist"])
def test_a_missing_queue_is_told_by_the_error_code_not_its_text(code):
    """No LocalStack needed: the codes SQS's two protocols give, with a message saying
    nothing, still mean "create it"."""
    sqs = RefusingSqs(code, "")
    report = Provisioner(sqs, FakeSns(), "t", LONE).run()
    assert sqs.created == ["t-lone-dlq", "t-lone"]
    assert {"created queue t-lone-dlq", "created queue t-lone"} <= set(report.changes)


def test_another_error_that_mentions_a_missing_queue_is_raised():
    sqs = RefusingSqs("AccessDenied", "not authorized to perform sqs:GetQueueUrl on "
                                      "QueueDoesNotExist-probe (NonExistentQueue)")
    with pytest.raises(ClientError, match="AccessDenied"):
        Provisioner(sqs, FakeSns(), "t", LONE).run()
    assert sqs.created == []

