"""The provisioner meets a queue encrypted with a customer-managed KMS key, as the AWS stacks
build them. AWS then reports SqsManagedSseEnabled as false; LocalStack reports it as
true whatever the key, so this is checked against a stand-in that answers as AWS does."""

from __future__ import annotations

from typing import Any

from shared.provision import Provisioner, Report
from shared.topology import QueueSpec

KEY = "arn:aws:kms:eu-west-1:111122223333:key/0f8e7d6c-0000-4000-8000-000000000001"


class AwsLikeQueue:
    """One queue's attributes, read and set as SQS does."""

    def __init__(self, **attributes: str) -> None:
        self.attributes = attributes
        self.set_calls: list[dict[str, str]] = []

    def get_queue_attributes(self, QueueUrl: str, AttributeNames: list[str]) -> dict[str, Any]:
        return {"Attributes": dict(self.attributes)}

    def set_queue_attributes(self, QueueUrl: str, Attributes: dict[str, str]) -> None:
        self.set_calls.append(Attributes)
        self.attributes.update(Attributes)


def converge(queue: AwsLikeQueue, want: dict[str, str]) -> Report:
    report = Report()
    Provisioner(queue, None, "prod")._converge("https://sqs/111122223333/prod-q", want, report)
    return report


def test_a_kms_key_is_never_replaced_by_sse_sqs() -> None:
    queue = AwsLikeQueue(KmsMasterKeyId=KEY, SqsManagedSseEnabled="false",
                         VisibilityTimeout="30")
    report = converge(queue, {"SqsManagedSseEnabled": "true", "VisibilityTimeout": "60"})
    assert queue.set_calls == [{"VisibilityTimeout": "60"}]  # what differs, but the encryption
    assert queue.attributes["KmsMasterKeyId"] == KEY
    assert report.changes == ["set VisibilityTimeout on prod-q"]


def test_an_unencrypted_queue_still_gets_sse_sqs() -> None:
    queue = AwsLikeQueue(SqsManagedSseEnabled="false")
    converge(queue, {"SqsManagedSseEnabled": "true"})
    assert queue.set_calls == [{"SqsManagedSseEnabled": "true"}]


def test_the_dlq_s_redrive_allow_policy_compares_by_content() -> None:
    spec = QueueSpec("q", "probe", 3, 30)
    assert spec.dlq_name == "q-dlq"
    queue = AwsLikeQueue(RedriveAllowPolicy='{"sourceQueueArns": ["arn:q"], '
                                            '"redrivePermission": "byQueue"}')
    converge(queue, {"RedriveAllowPolicy": '{"redrivePermission": "byQueue", '
                                           '"sourceQueueArns": ["arn:q"]}'})
    assert queue.set_calls == []
