"""How the publisher finds the topic: its ARN built from the caller's identity, never
with CreateTopic, and a missing topic refused clearly. Fakes only; the same against LocalStack is
in tests/integration/test_publisher.py."""

from __future__ import annotations

import json
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from shared.publisher import Publisher, error_code, sts_beside, topic_arn
from shared.topology import TOPOLOGY

TOPIC = TOPOLOGY.topic.name
IDENTITY = {"UserId": "AROAEXAMPLE:task", "Account": "123456789012",
            "Arn": "arn:aws-cn:sts::123456789012:assumed-role/payment-task/abc"}


@dataclass(frozen=True)
class FakeRow:
    id: int
    body: str = '{"event_type": "payment.succeeded"}'
    attributes: str = "{}"
    group_id: str | None = None
    dedup_id: str | None = None


class FakeSts:
    def __init__(self, identity: dict[str, str] = IDENTITY) -> None:
        self.identity, self.calls = identity, 0

    def get_caller_identity(self) -> dict[str, str]:
        self.calls += 1
        return self.identity


class FakeSns:
    """Publishes, or refuses with `refuse`; has no create_topic, as the task role may not."""

    def __init__(self, refuse: str | None = None) -> None:
        self.meta = SimpleNamespace(region_name="cn-north-1")
        self.refuse = refuse
        self.published_to: list[str] = []

    def publish_batch(self, TopicArn: str, PublishBatchRequestEntries: list[Any]  # noqa: N803
                      ) -> dict[str, Any]:
        if self.refuse:
            raise ClientError({"Error": {"Code": self.refuse, "Message": "Topic does not exist",
                                         "Type": "Sender"}}, "PublishBatch")
        self.published_to.append(TopicArn)
        return {"Successful": [{"Id": e["Id"]} for e in PublishBatchRequestEntries]}


def test_the_topic_arn_is_built_from_the_caller_identity_once() -> None:
    sts, sns = FakeSts(), FakeSns()
    publisher = Publisher(None, sns, TOPOLOGY, "prod", sts=sts)
    for row_id in (1, 2):
        assert publisher.send(TOPIC, [FakeRow(row_id)]).sent == {row_id}
    assert sns.published_to == ["arn:aws-cn:sns:cn-north-1:123456789012:prod-school-events"] * 2
    assert sts.calls == 1  # looked up once, like a queue's URL


@pytest.mark.parametrize("code", ["NotFound", "NotFoundException"])
def test_a_missing_topic_is_refused_clearly_and_not_created(code: str) -> None:
    publisher = Publisher(None, FakeSns(refuse=code), TOPOLOGY, "prod", sts=FakeSts())
    with pytest.raises(ClientError) as caught:
        publisher.send(TOPIC, [FakeRow(1)])
    assert error_code(caught.value) == "NotFound"  # not a content error: the relay backs off
    message = str(caught.value)
    assert "arn:aws-cn:sns:cn-north-1:123456789012:prod-school-events does not exist" in message
    assert "school provision" in message


def test_other_refusals_of_the_topic_pass_unchanged() -> None:
    publisher = Publisher(None, FakeSns(refuse="Throttling"), TOPOLOGY, "prod", sts=FakeSts())
    with pytest.raises(ClientError) as caught:
        publisher.send(TOPIC, [FakeRow(1)])
    assert caught.value.response["Error"] == {"Code": "Throttling", "Message":
                                              "Topic does not exist", "Type": "Sender"}


@pytest.mark.parametrize("identity, region", [
    ({"Arn": "arn:aws:iam::123456789012:root"}, "us-east-1"),  # no account
    ({"Account": "123456789012", "Arn": "not-an-arn"}, "us-east-1"),  # no partition
    (IDENTITY, ""),  # a client without a region
])
def test_an_arn_that_cannot_be_built_is_an_error(identity: dict[str, str], region: str) -> None:
    with pytest.raises(ValueError, match="cannot build the ARN of topic 'prod-school-events'"):
        topic_arn(identity, region, "prod-school-events")


def test_the_default_sts_client_follows_the_sns_client(monkeypatch: pytest.MonkeyPatch) -> None:
    """An emulator's explicit endpoint is kept; an endpoint botocore chose is left to it."""
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL_STS", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL_SNS", raising=False)
    session = boto3.session.Session()
    emulated = session.client("sns", region_name="us-east-1", endpoint_url="http://127.0.0.1:4566")
    assert sts_beside(emulated).meta.endpoint_url == "http://127.0.0.1:4566"
    on_aws = session.client("sns", region_name="eu-west-1")
    sts = sts_beside(on_aws)
    assert (sts.meta.endpoint_url, sts.meta.region_name) == (
        "https://sts.eu-west-1.amazonaws.com", "eu-west-1")


def test_queues_are_still_found_by_url() -> None:
    class FakeSqs:
        def get_queue_url(self, QueueName: str) -> dict[str, str]:  # noqa: N803
            return {"QueueUrl": f"https://sqs/{QueueName}"}

        def send_message_batch(self, QueueUrl: str, Entries: list[Any]  # noqa: N803
                               ) -> dict[str, Any]:
            assert QueueUrl == "https://sqs/prod-notifications"
            assert json.loads(Entries[0]["MessageBody"])
            return {"Successful": [{"Id": e["Id"]} for e in Entries]}

    sts = FakeSts()
    publisher = Publisher(FakeSqs(), FakeSns(), TOPOLOGY, "prod", sts=sts)
    assert publisher.send("notifications", [FakeRow(7)]).sent == {7}
    assert sts.calls == 0


class NoSts:
    """An emulator started with SERVICES=sqs,sns: STS is not there."""

    def get_caller_identity(self) -> dict[str, str]:
        raise ClientError({"Error": {"Code": "InternalFailure",
                                     "Message": "Service 'sts' is not enabled"},
                           "ResponseMetadata": {"HTTPStatusCode": 501}}, "GetCallerIdentity")


class ListingSns(FakeSns):
    def __init__(self, names: list[str]) -> None:
        super().__init__()
        self.names = names

    def get_paginator(self, operation: str) -> Any:
        assert operation == "list_topics"
        pages = [{"Topics": [{"TopicArn": f"arn:aws:sns:us-east-1:000000000000:{name}"}]}
                 for name in self.names]
        return SimpleNamespace(paginate=lambda: iter(pages))


def test_without_sts_the_topic_is_found_by_name() -> None:
    sns = ListingSns(["prod-other", f"prod-{TOPIC}-old", f"prod-{TOPIC}"])
    publisher = Publisher(None, sns, TOPOLOGY, "prod", sts=NoSts())
    assert publisher.target(TOPIC) == f"arn:aws:sns:us-east-1:000000000000:prod-{TOPIC}"


def test_without_sts_a_missing_topic_is_not_found_and_not_created() -> None:
    publisher = Publisher(None, ListingSns(["prod-other"]), TOPOLOGY, "prod", sts=NoSts())
    with pytest.raises(ClientError) as caught:
        publisher.target(TOPIC)
    assert error_code(caught.value) == "NotFound"
    assert "school provision" in str(caught.value)


class ThrottledSts:
    def get_caller_identity(self) -> dict[str, str]:
        raise ClientError({"Error": {"Code": "Throttling", "Message": "Rate exceeded"},
                           "ResponseMetadata": {"HTTPStatusCode": 400}}, "GetCallerIdentity")


def test_a_refusal_by_sts_is_raised_not_hidden_behind_list_topics() -> None:
    publisher = Publisher(None, ListingSns([f"prod-{TOPIC}"]), TOPOLOGY, "prod",
                          sts=ThrottledSts())
    with pytest.raises(ClientError) as caught:
        publisher.target(TOPIC)
    assert error_code(caught.value) == "Throttling"


def test_an_identity_without_an_account_is_a_client_error_the_relay_backs_off_on() -> None:
    publisher = Publisher(None, FakeSns(), TOPOLOGY, "prod", sts=FakeSts({"Arn": "arn:aws:x"}))
    with pytest.raises(ClientError) as caught:
        publisher.target(TOPIC)
    assert error_code(caught.value) == "InvalidCallerIdentity"
