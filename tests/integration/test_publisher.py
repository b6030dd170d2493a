"""The publisher finds the topic without sns:CreateTopic, against LocalStack: the ARN
it builds is the provisioned topic's, events reach the topic's subscribers, and a topic that does
not exist is refused clearly and stays missing."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from sqlalchemy import select

from deploy.local import localstack
from deploy.local.localstack import free_port
from shared import aws, db
from shared.outbox import Outbox, Relay
from shared.publisher import Publisher, error_code, sts_absent
from shared.topology import physical
from tests.support import probe
from tests.support.messages import bodies, ping, receive_all

TOPOLOGY = probe.topology(fifo_visibility=4, max_receives=4)
TOPIC = TOPOLOGY.topic.name


class NoCreateTopic:
    """The SNS client as a task role sees it: everything but CreateTopic."""

    def __init__(self, sns: Any) -> None:
        self._sns = sns

    def __getattr__(self, name: str) -> Any:
        if name == "create_topic":
            raise AssertionError("the publisher called CreateTopic, which task roles may not")
        return getattr(self._sns, name)


def topic_names(sns: Any) -> set[str]:
    pages = sns.get_paginator("list_topics").paginate()
    return {t["TopicArn"].rsplit(":", 1)[-1] for page in pages for t in page["Topics"]}


def test_the_built_arn_is_the_provisioned_topic_s(sqs, sns, settings, probe_stack):
    by_default = Publisher(sqs, NoCreateTopic(sns), TOPOLOGY, probe_stack.env)
    assert by_default.target(TOPIC) == probe_stack.report.topic_arn
    # as the runtime builds it: its own STS client, from the settings
    configured = Publisher(sqs, NoCreateTopic(sns), TOPOLOGY, probe_stack.env,
                           sts=aws.client("sts", settings, 5))
    assert configured.target(TOPIC) == probe_stack.report.topic_arn


def test_the_relay_publishes_to_the_topic_without_creating_it(sqs, sns, probe_stack):
    event = ping("g", 1)
    with db.session_factory(probe_stack.engine)() as session, session.begin():
        Outbox(probe.outbox, TOPOLOGY).add(session, event)
    publisher = Publisher(sqs, NoCreateTopic(sns), TOPOLOGY, probe_stack.env)
    relay = Relay(probe_stack.engine, probe.outbox, publisher)
    while relay.run_once():
        pass
    fanned = receive_all(sqs, probe_stack.queue("probe-all").url, 1)
    assert [b["event_id"] for b in bodies(fanned)] == [event.event_id]


def test_a_missing_topic_is_refused_clearly_and_not_created(sqs, sns, probe_stack):
    with db.session_factory(probe_stack.engine)() as session, session.begin():
        Outbox(probe.outbox, TOPOLOGY).add(session, ping("g", 1))
    with probe_stack.engine.connect() as conn:
        rows = conn.execute(select(probe.outbox)
                            .where(probe.outbox.c.destination == TOPIC)).all()
    gone = f"{probe_stack.env}-{uuid.uuid4().hex[:4]}"  # an environment nobody provisioned
    publisher = Publisher(sqs, NoCreateTopic(sns), TOPOLOGY, gone)
    with pytest.raises(ClientError) as caught:
        publisher.send(TOPIC, rows)
    assert error_code(caught.value) == "NotFound"  # not the rows' fault: the relay backs off
    assert f"{publisher.target(TOPIC)} does not exist" in str(caught.value)
    assert physical(gone, TOPIC) not in topic_names(sns)


@pytest.fixture(scope="module")
def sqs_and_sns_only(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A LocalStack started with SQS and SNS alone, `SERVICES=sqs,sns`: no STS."""
    if os.environ.get("STACK") == "containers":
        from tests.support.containers import localstack_container
        with localstack_container("sqs", "sns") as url:
            yield url
        return
    url = f"http://127.0.0.1:{free_port()}"
    state = tmp_path_factory.mktemp("localstack-no-sts")
    proc = localstack.start(url, state, state / "localstack.log", services=("sqs", "sns"))
    try:
        localstack.wait_healthy(url, proc, timeout=120)
        yield url
    finally:
        localstack.stop_group(proc.pid)


def test_without_sts_the_topic_is_found_by_name(sqs_and_sns_only: str) -> None:
    """Its real refusal of STS is told apart from a denial, and the publisher finds the topic by
    name; one that does not exist is still not created."""
    kwargs: dict[str, Any] = {"endpoint_url": sqs_and_sns_only, "region_name": "us-east-1",
                              "aws_access_key_id": "test", "aws_secret_access_key": "test"}
    sns, sts = boto3.client("sns", **kwargs), boto3.client("sts", **kwargs)
    with pytest.raises(ClientError) as refused:
        sts.get_caller_identity()
    assert sts_absent(refused.value)
    env = "nosts"
    arn = sns.create_topic(Name=physical(env, TOPIC))["TopicArn"]  # as provisioning would
    assert Publisher(None, NoCreateTopic(sns), TOPOLOGY, env, sts=sts).target(TOPIC) == arn
    with pytest.raises(ClientError) as missing:
        Publisher(None, NoCreateTopic(sns), TOPOLOGY, "other", sts=sts).target(TOPIC)
    assert error_code(missing.value) == "NotFound"
    assert physical("other", TOPIC) not in topic_names(sns)
