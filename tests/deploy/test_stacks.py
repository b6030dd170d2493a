"""The AWS stacks, as synthesized: resources and properties, and each service's permissions
checked against the topology itself (DESIGN section 9)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from aws_cdk import App
from aws_cdk.assertions import Template

from deploy.aws.messaging import MessagingStack
from shared.events import CATALOGUE
from shared.settings import PORTS, SERVICES
from shared.topology import TOPOLOGY, QueueSpec, Topology, physical
from tests.deploy.conftest import ENV

QUEUE_ACTIONS = ("sqs:", "sns:")


def of_type(template: Any, kind: str) -> dict[str, Any]:
    found: dict[str, Any] = template.find_resources(kind)
    return found


def arn_name(resource: Any) -> str:
    """The last part of an ARN, literal or built with Fn::Join: the queue or topic name."""
    if isinstance(resource, dict) and "Fn::Join" in resource:
        resource = "".join(p for p in resource["Fn::Join"][1] if isinstance(p, str))
    assert isinstance(resource, str), resource
    return resource.rsplit(":", 1)[-1]


def statements(template: Any) -> list[dict[str, Any]]:
    found = []
    for policy in of_type(template, "AWS::IAM::Policy").values():
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            actions = statement["Action"]
            resources = statement["Resource"]
            found.append({"actions": actions if isinstance(actions, list) else [actions],
                          "resources": resources if isinstance(resources, list) else [resources],
                          "effect": statement["Effect"]})
    return found


def grants(template: Any) -> set[tuple[str, str]]:
    """(action, queue or topic name) for every SQS and SNS action allowed in the stack."""
    return {(action, arn_name(resource)) for s in statements(template) if s["effect"] == "Allow"
            for action in s["actions"] if action.startswith(QUEUE_ACTIONS)
            for resource in s["resources"]}


def name(logical: str) -> str:
    return physical(ENV, logical)


def test_every_stack_is_synthesized(templates: dict[str, Any]) -> None:
    assert set(templates) == {"platform", "messaging", *SERVICES}


def test_platform_has_a_vpc_over_two_zones_and_a_cluster(templates: dict[str, Any]) -> None:
    platform = templates["platform"]
    platform.resource_count_is("AWS::EC2::VPC", 1)
    platform.resource_count_is("AWS::EC2::Subnet", 4)  # public and private in 2 AZs
    platform.has_resource_properties("AWS::ECS::Cluster", {"ClusterName": f"school-{ENV}"})


def test_queues_match_the_topology(templates: dict[str, Any]) -> None:
    queues = of_type(templates["messaging"], "AWS::SQS::Queue")
    by_name = {q["Properties"]["QueueName"]: (logical, q["Properties"])
               for logical, q in queues.items()}
    assert set(by_name) == {name(n) for spec in TOPOLOGY.queues
                            for n in (spec.name, spec.dlq_name)}
    for spec in TOPOLOGY.queues:
        main_id, main = by_name[name(spec.name)]
        dlq_id, dlq = by_name[name(spec.dlq_name)]
        assert main["RedrivePolicy"] == {"deadLetterTargetArn": {"Fn::GetAtt": [dlq_id, "Arn"]},
                                         "maxReceiveCount": spec.redrive_max_receives}
        assert main["VisibilityTimeout"] == spec.visibility_timeout
        assert main["ReceiveMessageWaitTimeSeconds"] == 20
        assert main["MessageRetentionPeriod"] == 4 * 24 * 3600
        assert dlq["MessageRetentionPeriod"] == 14 * 24 * 3600
        for props in (main, dlq):
            assert "KmsMasterKeyId" in props  # SSE-KMS on AWS (tests/deploy/test_security.py)
            assert props.get("FifoQueue", False) is spec.fifo
            assert "ContentBasedDeduplication" not in props  # the outbox sets dedup ids


def denies_without_tls(policy: dict[str, Any]) -> bool:
    return any(s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport":
                                                                     "false"}}
               for s in policy["PolicyDocument"]["Statement"])


def test_every_queue_and_the_topic_refuse_requests_without_tls(
        templates: dict[str, Any]) -> None:
    messaging = templates["messaging"]
    queues = of_type(messaging, "AWS::SQS::Queue")
    covered = set()
    for policy in of_type(messaging, "AWS::SQS::QueuePolicy").values():
        if denies_without_tls(policy["Properties"]):
            covered |= {ref["Ref"] for ref in policy["Properties"]["Queues"]}
    assert covered == set(queues)
    [topic_policy] = of_type(messaging, "AWS::SNS::TopicPolicy").values()
    assert denies_without_tls(topic_policy["Properties"])


def test_subscriptions_deliver_raw_and_filter_notifications(templates: dict[str, Any]) -> None:
    messaging = templates["messaging"]
    messaging.has_resource_properties("AWS::SNS::Topic", {"TopicName": name("school-events")})
    subs = list(of_type(messaging, "AWS::SNS::Subscription").values())
    assert len(subs) == len([q for q in TOPOLOGY.queues if q.subscribed]) == 2
    assert all(s["Properties"]["RawMessageDelivery"] is True for s in subs)
    filters = [s["Properties"].get("FilterPolicy") for s in subs]
    notifying = TOPOLOGY.queue("notifications").filter_events
    assert notifying is not None
    assert sorted(filters, key=json.dumps) == sorted(
        [None, {"event_type": sorted(notifying)}], key=json.dumps)


def test_alarms_watch_every_dlq_and_every_queue_s_oldest_message(
        templates: dict[str, Any]) -> None:
    alarms = [a["Properties"] for a in of_type(templates["messaging"],
                                               "AWS::CloudWatch::Alarm").values()]
    watched = {(a["MetricName"], a["Dimensions"][0]["Value"]["Fn::GetAtt"][0]) for a in alarms}
    queues = of_type(templates["messaging"], "AWS::SQS::Queue")
    ids = {q["Properties"]["QueueName"]: logical for logical, q in queues.items()}
    assert watched == (
        {("ApproximateAgeOfOldestMessage", ids[name(q.name)]) for q in TOPOLOGY.queues}
        | {("ApproximateNumberOfMessagesVisible", ids[name(q.dlq_name)])
           for q in TOPOLOGY.queues})
    depth = [a for a in alarms if a["MetricName"] == "ApproximateNumberOfMessagesVisible"]
    assert all(a["Threshold"] == 0 and a["ComparisonOperator"] == "GreaterThanThreshold"
               for a in depth)


def expected_grants(service: str) -> set[tuple[str, str]]:
    """What DESIGN section 9 gives a service, computed here from the topology and catalogue."""
    wanted = set()
    for spec in TOPOLOGY.queues:
        if spec.consumer == service:
            wanted |= {(a, name(spec.name)) for a in (
                "sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility",
                "sqs:GetQueueAttributes", "sqs:GetQueueUrl")}
            wanted |= {(a, name(spec.dlq_name)) for a in ("sqs:SendMessage", "sqs:GetQueueUrl")}
    for event_type in CATALOGUE.produced_by(service):
        wanted.add(("sns:Publish", name("school-events")))
        for spec in TOPOLOGY.queues:
            if event_type in spec.events:
                wanted |= {(a, name(spec.name)) for a in ("sqs:SendMessage", "sqs:GetQueueUrl")}
    return wanted


@pytest.mark.parametrize("service", SERVICES)
def test_the_task_role_has_exactly_what_the_topology_gives(
        templates: dict[str, Any], service: str) -> None:
    assert grants(templates[service]) == expected_grants(service)


@pytest.mark.parametrize("stack", ["platform", "messaging", *SERVICES])
def test_no_role_may_create_or_manage_topics(templates: dict[str, Any], stack: str) -> None:
    """Issue 14: the relay builds the topic's ARN (STS GetCallerIdentity needs no permission), so
    no task role holds sns:CreateTopic, nor any SNS action but Publish."""
    for s in statements(templates[stack]):
        if s["effect"] == "Allow":
            assert [a for a in s["actions"] if a.startswith("sns:")] in ([], ["sns:Publish"]), s


def topic_arn_parts(resource: Any) -> list[Any]:
    """An ARN as its Fn::Join parts, literal strings joined where they meet."""
    assert isinstance(resource, dict) and "Fn::Join" in resource, resource
    separator, pieces = resource["Fn::Join"]
    parts: list[Any] = []
    for piece in pieces:
        if isinstance(piece, str) and parts and isinstance(parts[-1], str):
            parts[-1] += separator + piece if separator else piece
        else:
            parts.append(piece)
    return parts


@pytest.mark.parametrize("service", SERVICES)
def test_producers_may_only_publish_and_only_on_the_topic(templates: dict[str, Any],
                                                          service: str) -> None:
    """A producer's one SNS grant is Publish on the topic's ARN in the stack's own partition,
    region and account: the ARN shared/publisher.py builds from the caller's identity."""
    sns_statements = [s for s in statements(templates[service])
                      if any(a.startswith("sns:") for a in s["actions"])]
    if not CATALOGUE.produced_by(service):
        assert sns_statements == []
        return
    [statement] = sns_statements
    assert (statement["effect"], statement["actions"]) == ("Allow", ["sns:Publish"])
    [resource] = statement["resources"]
    assert topic_arn_parts(resource) == [
        "arn:", {"Ref": "AWS::Partition"}, ":sns:", {"Ref": "AWS::Region"}, ":",
        {"Ref": "AWS::AccountId"}, f":{name('school-events')}"]


def test_payment_receives_only_its_own_queue_and_cannot_send_to_submissions(
        templates: dict[str, Any]) -> None:
    payment = grants(templates["payment"])
    assert {q for a, q in payment if a == "sqs:ReceiveMessage"} == {
        name("payment-requests.fifo")}
    assert ("sqs:SendMessage", name("assignment-submissions.fifo")) not in payment
    assert ("sqs:SendMessage", name("enrollment-payment-results.fifo")) in payment
    assert not [g for g in grants(templates["analytics"]) if g[0].startswith("sns:")]


@pytest.mark.parametrize("stack", ["platform", "messaging", *SERVICES])
def test_no_wildcard_actions_and_no_queue_action_on_everything(
        templates: dict[str, Any], stack: str) -> None:
    for s in statements(templates[stack]):
        assert not any("*" in action for action in s["actions"]
                       if action.startswith(QUEUE_ACTIONS)), s
        if any(action.startswith(QUEUE_ACTIONS) for action in s["actions"]):
            assert "*" not in s["resources"], s


@pytest.mark.parametrize("service", SERVICES)
def test_service_stack_runs_api_and_worker_with_migrations_first(
        templates: dict[str, Any], service: str) -> None:
    stack = templates[service]
    stack.has_resource_properties("AWS::ElasticLoadBalancingV2::TargetGroup",
                                  {"HealthCheckPath": "/healthz", "Port": 80})
    stack.resource_count_is("AWS::ECS::Service", 2)
    services = of_type(stack, "AWS::ECS::Service").values()
    assert all(s["Properties"]["DeploymentConfiguration"]["DeploymentCircuitBreaker"]
               == {"Enable": True, "Rollback": True} for s in services)
    tasks = of_type(stack, "AWS::ECS::TaskDefinition").values()
    roles = set()
    for task in tasks:
        containers = {c["Name"]: c for c in task["Properties"]["ContainerDefinitions"]}
        assert containers["migrate"]["Command"] == ["python", "-m", "shared.serve", "migrate",
                                                    service]
        assert containers["migrate"]["Essential"] is False
        [role] = set(containers) - {"migrate", "otel-collector"}
        roles.add(role)
        main = containers[role]
        assert main["Command"] == ["python", "-m", "shared.serve", role, service]
        assert {"Condition": "SUCCESS", "ContainerName": "migrate"} in main["DependsOn"]
        env = {e["Name"]: e["Value"] for e in main["Environment"]}
        assert env["SCHOOL_ENV"] == ENV and env["DB"] == "postgres"
        assert env[f"{service.upper()}_PORT"] == str(PORTS[service])
        assert ("SMTP_HOST" in env) is (service == "notification")
        assert {s["Name"] for s in main["Secrets"]} == {"PGHOST", "PGPORT", "PGUSER",
                                                        "PGPASSWORD"}
        assert main["LogConfiguration"]["LogDriver"] == "awslogs"
        if role == "api":
            assert main["PortMappings"][0]["ContainerPort"] == PORTS[service]
    assert roles == {"api", "worker"}


@pytest.mark.parametrize("service", SERVICES)
def test_each_service_has_its_own_database_and_logs(templates: dict[str, Any],
                                                    service: str) -> None:
    stack = templates[service]
    stack.has_resource_properties("AWS::RDS::DBInstance", {
        "DBName": f"school_{service}", "Engine": "postgres", "StorageEncrypted": True,
        "DBInstanceClass": "db.t4g.micro"})
    [database] = of_type(stack, "AWS::RDS::DBInstance").values()
    assert database["Properties"].get("PubliclyAccessible") in (None, False)
    assert database["DeletionPolicy"] == "Snapshot"
    # reachable only from the service's own tasks: one ingress rule each for the API and worker
    rules = [r["Properties"] for r in of_type(stack, "AWS::EC2::SecurityGroupIngress").values()
             if r["Properties"].get("FromPort") == 5432 or "Endpoint.Port" in json.dumps(r)]
    assert len(rules) == 2 and all("SourceSecurityGroupId" in r for r in rules)
    stack.has_resource_properties("AWS::SecretsManager::Secret", {
        "Name": f"school/{ENV}/{service}/database"})
    [secret] = of_type(stack, "AWS::SecretsManager::Secret").values()
    assert "GenerateSecretString" in secret["Properties"]
    stack.has_resource_properties("AWS::Logs::LogGroup", {
        "LogGroupName": f"/school/{ENV}/{service}", "RetentionInDays": 30})


@pytest.mark.parametrize("service", SERVICES)
def test_the_worker_scales_on_backlog_per_task(templates: dict[str, Any],
                                               service: str) -> None:
    stack = templates[service]
    stack.has_resource_properties("AWS::ApplicationAutoScaling::ScalableTarget",
                                  {"MinCapacity": 1, "MaxCapacity": 10})
    alarms = [a["Properties"] for a in of_type(stack, "AWS::CloudWatch::Alarm").values()
              if "Metrics" in a["Properties"]]
    [queue] = [q.name for q in TOPOLOGY.queues if q.consumer == service]
    assert len(alarms) == 2  # the scale-out and the scale-in alarm
    for alarm in alarms:
        queries = {m["Id"]: m for m in alarm["Metrics"]}
        assert "visible / tasks" in queries[next(i for i in queries if "expr" in i)][
            "Expression"]
        visible = queries["visible"]["MetricStat"]["Metric"]
        assert visible["MetricName"] == "ApproximateNumberOfMessagesVisible"
        assert visible["Dimensions"] == [{"Name": "QueueName", "Value": name(queue)}]


@pytest.mark.parametrize("service", SERVICES)
def test_dead_outbox_rows_alarm(templates: dict[str, Any], service: str) -> None:
    """Issue 12: an outbox row SQS can never accept is set aside as dead and alarms on AWS."""
    stack = templates[service]
    filters = of_type(stack, "AWS::Logs::MetricFilter")
    alarms = [a["Properties"] for a in of_type(stack, "AWS::CloudWatch::Alarm").values()
              if a["Properties"].get("MetricName") == f"{service}-outbox-dead-rows"]
    if not CATALOGUE.produced_by(service):
        assert filters == {} and alarms == []  # no outbox, nothing to watch
        return
    [metric_filter] = [f["Properties"] for f in filters.values()]
    assert metric_filter["FilterPattern"] == '{ $.outcome = "outbox_dead_rows" }'
    [transform] = metric_filter["MetricTransformations"]
    assert transform["MetricValue"] == "$.dead_rows"
    assert transform["MetricName"] == f"{service}-outbox-dead-rows"
    [alarm] = alarms
    assert (alarm["Threshold"], alarm["ComparisonOperator"], alarm["Namespace"]) == (
        0, "GreaterThanThreshold", transform["MetricNamespace"])


def test_cfn_lint_finds_no_errors(assembly_dir: Path) -> None:
    paths = sorted(str(p) for p in assembly_dir.glob("*.template.json"))
    assert len(paths) == 2 + len(SERVICES)
    lint = subprocess.run([str(Path(sys.executable).parent / "cfn-lint"), "--format",
                           "parseable", *paths], capture_output=True, text=True, timeout=300)
    errors = [line for line in lint.stdout.splitlines() if ":E" in line]
    assert errors == [], lint.stdout
    assert lint.returncode & 2 == 0, lint.stdout + lint.stderr  # cfn-lint's "errors" bit


def test_every_fifo_queue_is_high_throughput() -> None:
    """Issue 13: deduplication and the throughput quota per message group, not per queue."""
    template = Template.from_stack(MessagingStack(App(), "Probe", env_name="t1"))
    for spec in TOPOLOGY.queues:
        if spec.fifo:
            template.has_resource_properties("AWS::SQS::Queue", {
                "QueueName": f"t1-{spec.name}", "FifoQueue": True,
                "DeduplicationScope": "messageGroup",
                "FifoThroughputLimit": "perMessageGroupId"})


def test_a_queue_s_further_attributes_reach_its_template() -> None:
    """A spec's extra SQS attributes are not silently dropped."""
    spec = QueueSpec("jobs.fifo", "analytics", 4, 30, events=("student.registered",),
                     group_by=("student_id",),
                     attributes={"DeduplicationScope": "messageGroup", "DelaySeconds": "5"})
    stack = MessagingStack(App(), "Probe", env_name="t1",
                           topology=Topology(topic=TOPOLOGY.topic, queues=(spec,)))
    Template.from_stack(stack).has_resource_properties("AWS::SQS::Queue", {
        "QueueName": "t1-jobs.fifo", "DeduplicationScope": "messageGroup", "DelaySeconds": 5})


def flat(value: Any) -> str:
    """A CloudFormation string value, with every reference in it written as <ref>."""
    if isinstance(value, dict) and "Fn::Join" in value:
        separator, parts = value["Fn::Join"]
        return separator.join(flat(p) for p in parts)
    return value if isinstance(value, str) else "<ref>"


def task_role_statements(template: Any, service: str) -> list[dict[str, Any]]:
    [role_id] = [rid for rid, r in of_type(template, "AWS::IAM::Role").items()
                 if r["Properties"].get("RoleName") == f"school-{ENV}-{service}-task"]
    found = []
    for policy in of_type(template, "AWS::IAM::Policy").values():
        if {"Ref": role_id} in policy["Properties"]["Roles"]:
            found += policy["Properties"]["PolicyDocument"]["Statement"]
    return found


@pytest.mark.parametrize("service", SERVICES)
def test_each_task_sends_traces_to_xray_and_metrics_to_cloudwatch_through_a_collector(
        templates: dict[str, Any], service: str) -> None:
    from deploy.aws.telemetry import ADOT_IMAGE, EMF_WRITE, XRAY_WRITE
    stack = templates[service]
    for task in of_type(stack, "AWS::ECS::TaskDefinition").values():
        containers = {c["Name"]: c for c in task["Properties"]["ContainerDefinitions"]}
        collector = containers["otel-collector"]
        assert collector["Image"] == ADOT_IMAGE and collector["Essential"] is False
        env = {e["Name"]: flat(e["Value"]) for e in collector["Environment"]}
        config = json.loads(env["AOT_CONFIG_CONTENT"])
        assert config["receivers"] == {
            "otlp": {"protocols": {"http": {"endpoint": "127.0.0.1:4318"}}}}
        pipelines = config["service"]["pipelines"]
        assert pipelines["traces"]["exporters"] == ["awsxray"]
        assert pipelines["metrics"]["exporters"] == ["awsemf"]
        emf = config["exporters"]["awsemf"]
        assert (emf["namespace"], emf["log_group_name"]) == (
            f"School/{ENV}/{service}", f"/school/{ENV}/{service}/metrics")
        [main] = set(containers) - {"migrate", "otel-collector"}
        main_env = {e["Name"]: e["Value"] for e in containers[main]["Environment"]}
        assert main_env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://127.0.0.1:4318"
        assert {"Condition": "START", "ContainerName": "otel-collector"} in containers[main][
            "DependsOn"]
    # the task role: X-Ray's two write actions, which IAM accepts only on "*", and writing
    # to the service's own metrics log group; no other X-Ray or Logs action, nothing else on *
    [metrics_group] = [lid for lid, g in of_type(stack, "AWS::Logs::LogGroup").items()
                       if g["Properties"]["LogGroupName"] == f"/school/{ENV}/{service}/metrics"]
    telemetry = {}
    for statement in task_role_statements(stack, service):
        actions = statement["Action"] if isinstance(statement["Action"], list) else [
            statement["Action"]]
        if any(a.startswith(("xray:", "logs:")) for a in actions):
            telemetry[statement["Sid"]] = (sorted(actions), statement["Resource"])
        else:
            assert statement["Resource"] != "*", statement
    assert telemetry == {
        "CollectorSendsTraces": (sorted(XRAY_WRITE), "*"),
        "CollectorWritesMetrics": (sorted(EMF_WRITE), {"Fn::GetAtt": [metrics_group, "Arn"]})}
