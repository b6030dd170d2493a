"""The synthesized messaging stack, deployed by CloudFormation: LocalStack's, on a LocalStack of
its own with CloudFormation, CloudWatch, SSM and KMS besides SQS and SNS (the other stacks need
ECS and RDS, which LocalStack's community edition does not have). What CloudFormation builds from
the template must be what `make up` provisions from the topology, and must behave like it.

The template encrypts the topic and the queues with the messaging key (SSE-KMS), which it
imports from the platform stack, with the SQS endpoint's id. The platform stack needs EC2 and ECS
beyond the community edition, so a stand-in is deployed first: the platform template's own
messaging key and alias, with the exports the messaging template imports (the endpoint's id a
made-up one). LocalStack creates the key and the queues that name it, and the topic fans out to
them; it neither encrypts with the key nor enforces the key policy, so the SNS grant that AWS
needs for the fan-out is asserted in the template (tests/deploy/test_security.py), not here."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from deploy.aws.messaging import DATA_KEY_REUSE_SECONDS, sqs_endpoint_export
from deploy.local.localstack import free_port
from shared.provision import Provisioner
from shared.publisher import Publisher
from shared.topology import TOPOLOGY, physical
from tests.deploy.conftest import ENV
from tests.support.messages import wait_for

pytestmark = pytest.mark.integration
SERVICES = ("sqs", "sns", "cloudformation", "cloudwatch", "ssm", "kms")
STACK = f"School-{ENV}-messaging"


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if os.environ.get("STACK") == "containers":
        from tests.support.containers import localstack_container
        with localstack_container(*SERVICES) as url:
            yield url
        return
    from deploy.local import localstack
    url = f"http://127.0.0.1:{free_port()}"
    state = tmp_path_factory.mktemp("localstack-cfn")
    proc = localstack.start(url, state, state / "localstack.log", services=SERVICES)
    try:
        localstack.wait_healthy(url, proc, timeout=120)
        yield url
    finally:
        localstack.stop_group(proc.pid)


@pytest.fixture(scope="module")
def clients(endpoint: str) -> dict[str, Any]:
    kwargs = {"endpoint_url": endpoint, "region_name": "us-east-1",
              "aws_access_key_id": "test", "aws_secret_access_key": "test"}
    return {name: boto3.client(name, **kwargs) for name in SERVICES}  # type: ignore[call-overload]


@pytest.fixture(scope="module")
def deployed(clients: dict[str, Any], assembly_dir: Path) -> dict[str, Any]:
    """Deploy the template as `cdk deploy` would, after the bootstrap stack's version parameter
    that every CDK template checks."""
    clients["ssm"].put_parameter(Name="/cdk-bootstrap/hnb659fds/version", Value="30",
                                 Type="String", Overwrite=True)
    messaging = (assembly_dir / f"{STACK}.template.json").read_text()
    create(clients, f"School-{ENV}-platform", json.dumps(platform_stand_in(
        json.loads((assembly_dir / f"School-{ENV}-platform.template.json").read_text()),
        messaging)))
    create(clients, STACK, messaging)
    return clients


def platform_stand_in(platform: dict[str, Any], messaging: str) -> dict[str, Any]:
    """What the messaging template needs of the platform template: the messaging key and its
    alias as the platform template defines them, and the outputs it imports."""
    [(alias_id, alias)] = [(k, r) for k, r in platform["Resources"].items()
                           if r["Type"] == "AWS::KMS::Alias"
                           and r["Properties"]["AliasName"] == f"alias/school-{ENV}-messaging"]
    key_id = alias["Properties"]["TargetKeyId"]["Fn::GetAtt"][0]
    imported = set(re.findall(r'"Fn::ImportValue": "([^"]+)"', messaging))
    outputs = {}
    for name, output in platform["Outputs"].items():
        export = output.get("Export", {}).get("Name")
        if export == sqs_endpoint_export(ENV):
            outputs[name] = {"Value": "vpce-0123456789abcdef0", "Export": {"Name": export}}
        elif export in imported:
            outputs[name] = output
    assert {o["Export"]["Name"] for o in outputs.values()} == imported
    return {"Resources": {key_id: platform["Resources"][key_id], alias_id: alias},
            "Outputs": outputs}


def create(clients: dict[str, Any], stack_name: str, body: str) -> None:
    cfn = clients["cloudformation"]
    cfn.create_stack(StackName=stack_name, TemplateBody=body)

    def settled() -> dict[str, Any] | None:
        stack: dict[str, Any] = cfn.describe_stacks(StackName=stack_name)["Stacks"][0]
        return None if stack["StackStatus"].endswith("IN_PROGRESS") else stack

    stack = wait_for(settled, 120, f"{stack_name} to settle")
    if stack["StackStatus"] != "CREATE_COMPLETE":
        events = cfn.describe_stack_events(StackName=stack_name)["StackEvents"][:10]
        pytest.fail(f"{stack_name}: {stack['StackStatus']}: "
                    + "; ".join(f"{e['LogicalResourceId']} {e['ResourceStatus']} "
                                f"{e.get('ResourceStatusReason', '')}" for e in events))


def url(clients: dict[str, Any], name: str) -> str:
    found: str = clients["sqs"].get_queue_url(QueueName=physical(ENV, name))["QueueUrl"]
    return found


def receive(clients: dict[str, Any], name: str, wait: int = 2) -> list[dict[str, Any]]:
    reply = clients["sqs"].receive_message(QueueUrl=url(clients, name), WaitTimeSeconds=wait,
                                           MaxNumberOfMessages=10,
                                           MessageAttributeNames=["All"])
    messages: list[dict[str, Any]] = reply.get("Messages", [])
    return messages


def events(messages: list[dict[str, Any]]) -> list[str]:
    return [json.loads(m["Body"])["event_type"] for m in messages]


def test_every_queue_refuses_plain_http(deployed: dict[str, Any]) -> None:
    for spec in TOPOLOGY.queues:
        for name in (spec.name, spec.dlq_name):
            policy = json.loads(deployed["sqs"].get_queue_attributes(
                QueueUrl=url(deployed, name), AttributeNames=["Policy"])["Attributes"]["Policy"])
            assert {"Effect": "Deny", "Condition": {"Bool": {"aws:SecureTransport": "false"}}
                    }.items() <= next(s for s in policy["Statement"]
                                      if s["Effect"] == "Deny").items(), name


def test_the_topic_and_every_queue_name_the_stack_s_rotated_key(
        deployed: dict[str, Any]) -> None:
    kms = deployed["kms"]
    key = kms.describe_key(KeyId=f"alias/school-{ENV}-messaging")["KeyMetadata"]
    assert key["KeyManager"] == "CUSTOMER" and key["KeyState"] == "Enabled"
    assert kms.get_key_rotation_status(KeyId=key["KeyId"])["KeyRotationEnabled"] is True
    for spec in TOPOLOGY.queues:
        for name in (spec.name, spec.dlq_name):
            attrs = deployed["sqs"].get_queue_attributes(
                QueueUrl=url(deployed, name), AttributeNames=["All"])["Attributes"]
            assert attrs["KmsMasterKeyId"] == key["Arn"], name
            assert attrs["KmsDataKeyReusePeriodSeconds"] == str(DATA_KEY_REUSE_SECONDS), name
    topic = topic_arn(deployed)
    attrs = deployed["sns"].get_topic_attributes(TopicArn=topic)["Attributes"]
    assert attrs["KmsMasterKeyId"] == key["Arn"]


def test_each_dlq_admits_only_its_own_source_queue(deployed: dict[str, Any]) -> None:
    for spec in TOPOLOGY.queues:
        attrs = deployed["sqs"].get_queue_attributes(
            QueueUrl=url(deployed, spec.dlq_name), AttributeNames=["All"])["Attributes"]
        source = deployed["sqs"].get_queue_attributes(
            QueueUrl=url(deployed, spec.name), AttributeNames=["QueueArn"])["Attributes"]
        assert json.loads(attrs["RedriveAllowPolicy"]) == {
            "redrivePermission": "byQueue", "sourceQueueArns": [source["QueueArn"]]}


def topic_arn(clients: dict[str, Any]) -> str:
    """As the relay finds it (here by name: this LocalStack has no STS)."""
    publisher = Publisher(clients["sqs"], clients["sns"], TOPOLOGY, ENV)
    return publisher.topic_arn(physical(ENV, TOPOLOGY.topic.name))


def test_the_topic_fans_out_raw_and_filtered(deployed: dict[str, Any]) -> None:
    topic = topic_arn(deployed)  # encrypted with the key: fan-out to the encrypted queues
    for event_type in ("enrollment.confirmed", "submission.received"):
        deployed["sns"].publish(TopicArn=topic, Message=json.dumps({"event_type": event_type}),
                                MessageAttributes={"event_type": {"DataType": "String",
                                                                  "StringValue": event_type}})
    counted: list[str] = []
    wait_for(lambda: counted.extend(events(receive(deployed, "analytics"))) or len(counted) >= 2,
             30, "both events in analytics")
    notified = events(receive(deployed, "notifications"))
    assert sorted(counted) == ["enrollment.confirmed", "submission.received"]
    assert notified == ["enrollment.confirmed"]  # raw delivery: the body is the event itself


def test_a_fifo_message_received_too_often_moves_to_its_dlq(deployed: dict[str, Any]) -> None:
    """The safety net: receives that never reach a handler (the consumer counts its own attempts
    against the much smaller retry budget)."""
    [spec] = [q for q in TOPOLOGY.queues if q.name == "payment-requests.fifo"]
    deployed["sqs"].send_message(QueueUrl=url(deployed, spec.name), MessageBody="{}",
                                 MessageGroupId="s-1", MessageDeduplicationId="d-1")
    receives = 0
    for _ in range(spec.redrive_max_receives + 2):
        for message in receive(deployed, spec.name, wait=0):
            receives += 1  # not deleted: made visible again at once, as a failure would
            deployed["sqs"].change_message_visibility(
                QueueUrl=url(deployed, spec.name), ReceiptHandle=message["ReceiptHandle"],
                VisibilityTimeout=0)
    assert receives == spec.redrive_max_receives
    assert len(receive(deployed, spec.dlq_name)) == 1


def test_alarms_exist_for_every_queue_and_dlq(deployed: dict[str, Any]) -> None:
    alarms = deployed["cloudwatch"].describe_alarms()["MetricAlarms"]
    watched = {(a["MetricName"], a["Dimensions"][0]["Value"]) for a in alarms}
    assert watched == ({("ApproximateAgeOfOldestMessage", physical(ENV, q.name))
                        for q in TOPOLOGY.queues}
                       | {("ApproximateNumberOfMessagesVisible", physical(ENV, q.dlq_name))
                          for q in TOPOLOGY.queues})


def test_make_up_s_provisioner_finds_the_same_queues(deployed: dict[str, Any]) -> None:
    """The provisioner compares every attribute it sets (retention, long polling, visibility,
    encryption, redrive target and count, FIFO) and changes only what differs. Against the
    deployed stack it changes nothing but the two subscribed queues' policies, which on AWS also
    deny requests without TLS. (Last in this module: it rewrites those two policies.)"""
    report = Provisioner(deployed["sqs"], deployed["sns"], ENV).run()
    assert sorted(report.changes) == sorted(
        f"set Policy on {physical(ENV, q.name)}" for q in TOPOLOGY.queues if q.subscribed)
