"""The seeds' security and audit in the synthesized stacks: customer-managed KMS keys,
VPC endpoints and queue policies bound to them, the CloudTrail trail and its bucket, and the
DLQs' redrive restrictions."""

from __future__ import annotations

from typing import Any

import pytest

from deploy.aws.messaging import DATA_KEY_REUSE_SECONDS
from shared.events import CATALOGUE
from shared.settings import CONSOLE, SERVICES
from shared.topology import TOPOLOGY, physical
from tests.deploy.conftest import ENV
from tests.deploy.test_stacks import of_type, statements, topic_arn_parts


def name(logical: str) -> str:
    return physical(ENV, logical)


def queues_by_name(template: Any) -> dict[str, tuple[str, dict[str, Any]]]:
    return {q["Properties"]["QueueName"]: (logical, q["Properties"])
            for logical, q in of_type(template, "AWS::SQS::Queue").items()}


def the_key(template: Any, alias: str) -> tuple[str, dict[str, Any]]:
    [alias_props] = [a["Properties"] for a in of_type(template, "AWS::KMS::Alias").values()
                     if a["Properties"]["AliasName"] == alias]
    logical = alias_props["TargetKeyId"]["Fn::GetAtt"][0]
    props: dict[str, Any] = of_type(template, "AWS::KMS::Key")[logical]["Properties"]
    return logical, props


def joined(value: Any) -> str:
    """An Fn::Join of literals and pseudo parameters, as one string with ${...} for the latter."""
    if isinstance(value, str):
        return value
    separator, parts = value["Fn::Join"]
    return separator.join(p if isinstance(p, str) else "${" + p["Ref"] + "}" for p in parts)


# --- 1. SSE-KMS with a customer-managed key ----------------------------------------------------

def imports_the_messaging_key(value: Any, key: str) -> bool:
    """An Fn::ImportValue of the platform stack's export of the messaging key's ARN."""
    name = value["Fn::ImportValue"]
    return name.startswith(f"School-{ENV}-platform:") and f"FnGetAtt{key}Arn" in name


def test_every_queue_dlq_and_the_topic_use_the_rotated_messaging_key(
        templates: dict[str, Any]) -> None:
    """The key is the platform stack's (deployed first, so the services' grants can exist
    before the queues use it); the messaging stack imports its ARN."""
    key, props = the_key(templates["platform"], f"alias/school-{ENV}-messaging")
    assert props["EnableKeyRotation"] is True
    messaging = templates["messaging"]
    assert of_type(messaging, "AWS::KMS::Key") == {}
    by_name = queues_by_name(messaging)
    assert len(by_name) == 2 * len(TOPOLOGY.queues)
    for queue_name, (_, queue) in by_name.items():
        assert imports_the_messaging_key(queue["KmsMasterKeyId"], key), queue_name
        assert queue["KmsDataKeyReusePeriodSeconds"] == DATA_KEY_REUSE_SECONDS == 3600
        assert "SqsManagedSseEnabled" not in queue
    [topic] = of_type(messaging, "AWS::SNS::Topic").values()
    assert imports_the_messaging_key(topic["Properties"]["KmsMasterKeyId"], key)


def test_the_key_lets_sns_deliver_to_the_queues_from_our_topic_only(
        templates: dict[str, Any]) -> None:
    _, props = the_key(templates["platform"], f"alias/school-{ENV}-messaging")
    for_sns = [s for s in props["KeyPolicy"]["Statement"]
               if s["Principal"] == {"Service": "sns.amazonaws.com"}]
    [grant] = for_sns  # nothing broader for SNS beside it
    assert grant["Effect"] == "Allow"
    assert sorted(grant["Action"]) == ["kms:Decrypt", "kms:GenerateDataKey"]
    assert topic_arn_parts(grant["Condition"]["ArnEquals"]["aws:SourceArn"]) == [
        "arn:", {"Ref": "AWS::Partition"}, ":sns:", {"Ref": "AWS::Region"}, ":",
        {"Ref": "AWS::AccountId"}, f":{name('school-events')}"]


def expected_kms(service: str) -> set[str]:
    """From the topology and the catalogue themselves: a consumer decrypts what it receives, and
    dead-letters into its DLQ; a producer sends or publishes. Sending needs a data key."""
    consumes = any(q.consumer == service for q in TOPOLOGY.queues)
    sends = consumes or bool(CATALOGUE.produced_by(service))
    return ({"kms:GenerateDataKey", "kms:Decrypt"} if sends
            else {"kms:Decrypt"} if consumes else set())


@pytest.mark.parametrize("service", SERVICES)
def test_each_role_has_exactly_its_kms_actions_on_exactly_the_messaging_key(
        templates: dict[str, Any], service: str) -> None:
    kms = [s for s in statements(templates[service])
           if any(a.startswith("kms:") for a in s["actions"])]
    assert expected_kms(service), "every service consumes a queue"
    [statement] = kms
    assert statement["effect"] == "Allow"
    assert set(statement["actions"]) == expected_kms(service)
    [resource] = statement["resources"]
    # the messaging key, by the platform's export of its ARN: no other key, no wildcard
    key, _ = the_key(templates["platform"], f"alias/school-{ENV}-messaging")
    assert imports_the_messaging_key(resource, key)


def test_the_console_role_may_send_and_receive_with_the_messaging_key_only(
        templates: dict[str, Any]) -> None:
    """It receives from the DLQs (Decrypt) and sends redriven messages back (a data key)."""
    [statement] = [s for s in statements(templates[CONSOLE])
                   if any(a.startswith("kms:") for a in s["actions"])]
    assert statement["effect"] == "Allow"
    assert sorted(statement["actions"]) == ["kms:Decrypt", "kms:GenerateDataKey"]
    [resource] = statement["resources"]
    key, _ = the_key(templates["platform"], f"alias/school-{ENV}-messaging")
    assert imports_the_messaging_key(resource, key)


def test_a_consumer_that_only_receives_gets_only_decrypt() -> None:
    from deploy.aws.access import Access
    assert Access("x", ("q",), (), (), False).kms == ("kms:Decrypt",)
    assert Access("x", ("q",), ("q-dlq",), (), False).kms == ("kms:GenerateDataKey",
                                                             "kms:Decrypt")
    assert Access("x", (), (), (), False).kms == ()


# --- 2. VPC endpoints, and queue policies bound to them ----------------------------------------

def test_the_tasks_reach_aws_through_vpc_endpoints(templates: dict[str, Any]) -> None:
    platform = templates["platform"]
    endpoints = [e["Properties"] for e in of_type(platform, "AWS::EC2::VPCEndpoint").values()]
    interface = {joined(e["ServiceName"]).rsplit(".", 1)[-1] if "ecr" not in joined(
        e["ServiceName"]) else joined(e["ServiceName"]).split("${AWS::Region}.")[-1]
        for e in endpoints if e.get("VpcEndpointType") == "Interface"}
    assert interface == {"sqs", "sns", "sts", "logs", "secretsmanager", "ecr.api", "ecr.dkr",
                         "xray", "monitoring"}
    assert all(e["PrivateDnsEnabled"] is True for e in endpoints
               if e.get("VpcEndpointType") == "Interface")
    [gateway] = [e for e in endpoints if e.get("VpcEndpointType") == "Gateway"]
    assert joined(gateway["ServiceName"]).endswith(".s3")
    outputs = platform.to_json()["Outputs"]
    [export] = [o for o in outputs.values()
                if o.get("Export", {}).get("Name") == f"school-{ENV}-sqs-endpoint"]
    assert "Ref" in export["Value"]


def test_queue_policies_admit_the_task_roles_only_through_the_sqs_endpoint(
        templates: dict[str, Any]) -> None:
    messaging = templates["messaging"]
    guarded: set[str] = set()
    for policy in of_type(messaging, "AWS::SQS::QueuePolicy").values():
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            if statement.get("Sid") != "TaskRolesOnlyThroughTheVpcEndpoint":
                continue
            assert statement["Effect"] == "Deny" and statement["Action"] == "sqs:*"
            condition = statement["Condition"]
            assert condition["StringNotEquals"] == {
                "aws:SourceVpce": {"Fn::ImportValue": f"school-{ENV}-sqs-endpoint"}}
            assert joined(condition["ArnLike"]["aws:PrincipalArn"]) == (
                f"arn:${{AWS::Partition}}:iam::${{AWS::AccountId}}:role/school-{ENV}-*-task")
            guarded.add(statement["Resource"]["Fn::GetAtt"][0])
    assert guarded == set(of_type(messaging, "AWS::SQS::Queue"))


@pytest.mark.parametrize("service", [*SERVICES, CONSOLE])
def test_the_task_role_is_named_as_the_queue_policies_expect(templates: dict[str, Any],
                                                             service: str) -> None:
    """The queue policies' deny (above) then holds for the console's role too: it reaches the
    queues through the VPC's SQS endpoint only."""
    [role] = [
        r for r in of_type(templates[service], "AWS::IAM::Role").values()
        if r["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]["Principal"]
        == {"Service": "ecs-tasks.amazonaws.com"} and "RoleName" in r["Properties"]]
    assert role["Properties"]["RoleName"] == f"school-{ENV}-{service}-task"


def test_sns_still_delivers_to_the_subscribed_queues(templates: dict[str, Any]) -> None:
    messaging = templates["messaging"]
    by_name = queues_by_name(messaging)
    [topic] = of_type(messaging, "AWS::SNS::Topic")
    for spec in [q for q in TOPOLOGY.queues if q.subscribed]:
        logical, _ = by_name[name(spec.name)]
        [policy] = [p["Properties"] for p in of_type(messaging, "AWS::SQS::QueuePolicy").values()
                    if p["Properties"]["Queues"] == [{"Ref": logical}]]
        allows = [s for s in policy["PolicyDocument"]["Statement"] if s["Effect"] == "Allow"]
        assert allows == [{
            "Sid": "TopicDelivers", "Effect": "Allow", "Action": "sqs:SendMessage",
            "Principal": {"Service": "sns.amazonaws.com"},
            "Resource": {"Fn::GetAtt": [logical, "Arn"]},
            "Condition": {"ArnEquals": {"aws:SourceArn": {"Ref": topic}}}}]


# --- 3. The audit trail ------------------------------------------------------------------------

def test_the_trail_records_management_events_and_the_queues_data_events(
        templates: dict[str, Any]) -> None:
    platform = templates["platform"]
    [trail] = [t["Properties"] for t in of_type(platform, "AWS::CloudTrail::Trail").values()]
    assert trail["TrailName"] == f"school-{ENV}-audit"
    assert trail["EnableLogFileValidation"] is True and trail["IsLogging"] is True
    assert trail["IsMultiRegionTrail"] is True
    key, _ = the_key(platform, f"alias/school-{ENV}-audit")
    assert trail["KMSKeyId"] == {"Fn::GetAtt": [key, "Arn"]}
    assert "EventSelectors" not in trail
    selectors = {s["Name"]: s["FieldSelectors"] for s in trail["AdvancedEventSelectors"]}
    assert selectors["Management events"] == [{"Field": "eventCategory",
                                               "Equals": ["Management"]}]
    [data] = [v for k, v in selectors.items() if k.startswith("SQS data events")]
    fields = {f["Field"]: f for f in data}
    assert fields["eventCategory"]["Equals"] == ["Data"]
    assert fields["resources.type"]["Equals"] == ["AWS::SQS::Queue"]
    [prefix] = fields["resources.ARN"]["StartsWith"]
    assert joined(prefix) == (f"arn:${{AWS::Partition}}:sqs:${{AWS::Region}}:"
                              f"${{AWS::AccountId}}:{ENV}-")


def test_the_trail_bucket_is_encrypted_private_tls_only_versioned_and_expires(
        templates: dict[str, Any]) -> None:
    platform = templates["platform"]
    key, key_props = the_key(platform, f"alias/school-{ENV}-audit")
    assert key_props["EnableKeyRotation"] is True
    [(bucket_id, bucket)] = of_type(platform, "AWS::S3::Bucket").items()
    props = bucket["Properties"]
    [rule] = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"] == {
        "SSEAlgorithm": "aws:kms", "KMSMasterKeyID": {"Fn::GetAtt": [key, "Arn"]}}
    assert props["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True, "BlockPublicPolicy": True, "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True}
    assert props["VersioningConfiguration"] == {"Status": "Enabled"}
    [lifecycle] = props["LifecycleConfiguration"]["Rules"]
    assert lifecycle["Status"] == "Enabled" and lifecycle["ExpirationInDays"] == 365
    assert lifecycle["NoncurrentVersionExpiration"] == {"NoncurrentDays": 30}
    assert "Transitions" not in lifecycle  # trail files are under the 128 KiB a transition needs
    [policy] = of_type(platform, "AWS::S3::BucketPolicy").values()
    document = policy["Properties"]["PolicyDocument"]["Statement"]
    assert any(s["Effect"] == "Deny" and s["Condition"] == {"Bool": {
        "aws:SecureTransport": "false"}} for s in document)
    allows = [s for s in document if s["Effect"] == "Allow"]
    assert {s["Sid"] for s in allows} == {"TrailReadsTheAcl", "TrailWritesItsFiles"}
    for statement in allows:
        assert statement["Principal"] == {"Service": "cloudtrail.amazonaws.com"}
        assert joined(statement["Condition"]["StringEquals"]["aws:SourceArn"]) == (
            f"arn:${{AWS::Partition}}:cloudtrail:${{AWS::Region}}:${{AWS::AccountId}}:"
            f"trail/school-{ENV}-audit")
    [writes] = [s for s in allows if s["Action"] == "s3:PutObject"]
    assert writes["Condition"]["StringEquals"]["s3:x-amz-acl"] == "bucket-owner-full-control"
    assert bucket_id in str(writes["Resource"])


def test_the_audit_key_lets_cloudtrail_encrypt_for_this_trail_only(
        templates: dict[str, Any]) -> None:
    _, props = the_key(templates["platform"], f"alias/school-{ENV}-audit")
    for_trail = [s for s in props["KeyPolicy"]["Statement"]
                 if s["Principal"] == {"Service": "cloudtrail.amazonaws.com"}]
    by_sid = {s["Sid"]: s for s in for_trail}
    assert set(by_sid) == {"TrailEncryptsItsFiles", "TrailUsesTheBucketKey",
                           "TrailDescribesTheKey"}
    assert by_sid["TrailEncryptsItsFiles"]["Action"] == "kms:GenerateDataKey*"
    assert by_sid["TrailUsesTheBucketKey"]["Action"] == "kms:Decrypt"  # the bucket key needs it
    assert by_sid["TrailDescribesTheKey"]["Action"] == "kms:DescribeKey"
    trail = (f"arn:${{AWS::Partition}}:cloudtrail:${{AWS::Region}}:${{AWS::AccountId}}:"
             f"trail/school-{ENV}-audit")
    for statement in for_trail:
        assert joined(statement["Condition"]["StringEquals"]["aws:SourceArn"]) == trail
    context = by_sid["TrailEncryptsItsFiles"]["Condition"]["StringLike"]
    assert joined(context["kms:EncryptionContext:aws:cloudtrail:arn"]) == trail


# --- 4. Redrive restrictions -------------------------------------------------------------------

def test_each_dlq_admits_only_its_own_source_queue(templates: dict[str, Any]) -> None:
    by_name = queues_by_name(templates["messaging"])
    for spec in TOPOLOGY.queues:
        _, dlq = by_name[name(spec.dlq_name)]
        policy = dlq["RedriveAllowPolicy"]
        assert policy["redrivePermission"] == "byQueue"
        [source] = policy["sourceQueueArns"]
        assert joined(source) == (f"arn:${{AWS::Partition}}:sqs:${{AWS::Region}}:"
                                  f"${{AWS::AccountId}}:{name(spec.name)}")
        _, main = by_name[name(spec.name)]
        assert "RedriveAllowPolicy" not in main
