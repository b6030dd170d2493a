"""The AWS stacks, as synthesized: resources and properties, and each service's permissions,
and the operations console's, checked against the topology itself."""

from __future__ import annotations

import copy
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
from shared.settings import CONSOLE, PORTS, SERVICES
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
    assert set(templates) == {"platform", "identity", "messaging", *SERVICES, CONSOLE}


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
    """The grants a service's task role must hold, computed here from topology and catalogue."""
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
            # sent to the queue directly: its events, and its private ones (never published)
            if event_type in (*spec.events, *spec.private):
                wanted |= {(a, name(spec.name)) for a in ("sqs:SendMessage", "sqs:GetQueueUrl")}
    return wanted


@pytest.mark.parametrize("service", SERVICES)
def test_the_task_role_has_exactly_what_the_topology_gives(
        templates: dict[str, Any], service: str) -> None:
    assert grants(templates[service]) == expected_grants(service)


@pytest.mark.parametrize("stack", ["platform", "identity", "messaging", *SERVICES, CONSOLE])
def test_no_role_may_create_or_manage_topics(templates: dict[str, Any], stack: str) -> None:
    """The relay builds the topic's ARN (STS GetCallerIdentity needs no permission), so
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


@pytest.mark.parametrize("stack", ["platform", "identity", "messaging", *SERVICES, CONSOLE])
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
    """A regression: an outbox row SQS can never accept is set aside as dead and alarms on AWS."""
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
    assert len(paths) == 4 + len(SERVICES)  # the platform, identity, messaging, console stacks
    lint = subprocess.run([str(Path(sys.executable).parent / "cfn-lint"), "--format",
                           "parseable", *paths], capture_output=True, text=True, timeout=300)
    errors = [line for line in lint.stdout.splitlines() if ":E" in line]
    assert errors == [], lint.stdout
    assert lint.returncode & 2 == 0, lint.stdout + lint.stderr  # cfn-lint's "errors" bit


def test_every_fifo_queue_is_high_throughput() -> None:
    """High throughput: deduplication and the throughput quota per message group, not queue."""
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


def collector_config(task: dict[str, Any]) -> dict[str, Any]:
    """A task definition's collector configuration, as the collector reads it from
    AOT_CONFIG_CONTENT (JSON, which is YAML)."""
    [collector] = [c for c in task["Properties"]["ContainerDefinitions"]
                   if c["Name"] == "otel-collector"]
    env = {e["Name"]: flat(e["Value"]) for e in collector["Environment"]}
    config: dict[str, Any] = json.loads(env["AOT_CONFIG_CONTENT"])
    return config


@pytest.mark.parametrize("service", SERVICES)
def test_each_task_sends_traces_to_xray_and_metrics_to_cloudwatch_through_a_collector(
        templates: dict[str, Any], service: str) -> None:
    from deploy.aws.telemetry import ADOT_IMAGE, EMF_WRITE, XRAY_WRITE
    stack = templates[service]
    for task in of_type(stack, "AWS::ECS::TaskDefinition").values():
        containers = {c["Name"]: c for c in task["Properties"]["ContainerDefinitions"]}
        collector = containers["otel-collector"]
        assert collector["Image"] == ADOT_IMAGE and collector["Essential"] is False
        config = collector_config(task)
        assert config["receivers"] == {
            "otlp": {"protocols": {"http": {"endpoint": "127.0.0.1:4318"}}}}
        pipelines = config["service"]["pipelines"]
        # and to the console (test_each_collector_sends_every_trace_to_the_console_too)
        assert pipelines["traces"]["exporters"] == ["awsxray", "otlphttp/console"]
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


# --- The operations console --------------------------------------------------------------------
# Written out here, not imported from deploy/aws/access.py: a widened list there must fail.
CONSOLE_INSPECTS = ("sqs:GetQueueAttributes", "sqs:GetQueueUrl")  # every queue and DLQ
CONSOLE_ON_DLQS = ("sqs:ReceiveMessage", "sqs:ChangeMessageVisibility", "sqs:DeleteMessage")
CONSOLE_ON_QUEUES = ("sqs:SendMessage",)  # the main queues: a redrive's destination
CONSOLE_KMS = ("kms:GenerateDataKey", "kms:Decrypt")  # sending needs a data key; receiving, Decrypt
MESSAGING_KEY = "<the messaging key>"
MAINS = frozenset(name(q.name) for q in TOPOLOGY.queues)
DLQS = frozenset(name(q.dlq_name) for q in TOPOLOGY.queues)


def platform_import(platform: Any, value: Any) -> dict[str, str]:
    """How another stack refers to `value` of the platform stack: an import of its export."""
    [export] = [o["Export"]["Name"] for o in platform.to_json()["Outputs"].values()
                if o["Value"] == value and "Export" in o]
    return {"Fn::ImportValue": export}


def intake_secret_id(platform: Any) -> str:
    """The logical id of the console intake's credential in the platform stack."""
    [(secret_id, _)] = [(sid, r) for sid, r in of_type(platform,
                                                       "AWS::SecretsManager::Secret").items()
                        if r["Properties"]["Name"] == f"school/{ENV}/console/otlp-token"]
    return secret_id


def messaging_key_import(platform: Any) -> dict[str, str]:
    """How another stack refers to the platform's messaging key: an import of its ARN."""
    [alias] = [a["Properties"] for a in of_type(platform, "AWS::KMS::Alias").values()
               if a["Properties"]["AliasName"] == f"alias/school-{ENV}-messaging"]
    return platform_import(platform, {"Fn::GetAtt": [alias["TargetKeyId"]["Fn::GetAtt"][0],
                                                     "Arn"]})


def console_resource(resource: Any, key: dict[str, str]) -> str:
    """What a resource of the console's role names: a queue of this deployment in the stack's
    own partition, region and account (by its name), the messaging key, or "*"; nothing else."""
    if resource == "*" or resource == key:
        return "*" if resource == "*" else MESSAGING_KEY
    parts = topic_arn_parts(resource)
    assert parts[:-1] == ["arn:", {"Ref": "AWS::Partition"}, ":sqs:", {"Ref": "AWS::Region"},
                          ":", {"Ref": "AWS::AccountId"}], resource
    assert isinstance(parts[-1], str) and parts[-1].startswith(":"), resource
    queue: str = parts[-1][1:]
    assert queue in MAINS | DLQS, queue
    return queue


def console_grants(template: Any, key: dict[str, str]) -> set[tuple[str, str]]:
    """(action, what it is on) for every statement of the console's task role, each statement
    checked on its own: Allow, named actions on named resources, the DLQ actions on DLQs only,
    SendMessage on the main queues only, the one "*" for CloudWatch's metrics only."""
    [(role_id, role)] = [(rid, r) for rid, r in of_type(template, "AWS::IAM::Role").items()
                         if r["Properties"].get("RoleName") == f"school-{ENV}-{CONSOLE}-task"]
    # no managed policy and no inline policy on the role itself, no permissions boundary
    assert set(role["Properties"]) <= {"AssumeRolePolicyDocument", "Description", "RoleName",
                                       "Tags"}, role
    granted = set()
    for statement in task_role_statements(template, CONSOLE):
        assert set(statement) <= {"Sid", "Effect", "Action", "Resource"}, statement
        assert statement["Effect"] == "Allow", statement
        actions = statement["Action"] if isinstance(statement["Action"], list) else [
            statement["Action"]]
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [
            statement["Resource"]]
        on = {console_resource(r, key) for r in resources}
        for action in actions:
            assert "*" not in action, statement
            if action in CONSOLE_ON_DLQS:
                assert on <= DLQS, (action, on - DLQS)
            elif action in CONSOLE_ON_QUEUES:
                assert on <= MAINS, (action, on - MAINS)
            elif action in CONSOLE_INSPECTS:
                assert on <= MAINS | DLQS, (action, on)
            elif action in CONSOLE_KMS:
                assert on == {MESSAGING_KEY}, (action, on)
            elif action == "cloudwatch:GetMetricStatistics":
                assert on == {"*"}, (action, on)  # IAM gives it no resource type
            else:
                raise AssertionError(f"the console may not {action}: {statement}")
            granted |= {(action, resource) for resource in on}
    return granted


def expected_console_grants() -> set[tuple[str, str]]:
    return ({(a, q) for a in CONSOLE_INSPECTS for q in MAINS | DLQS}
            | {(a, q) for a in CONSOLE_ON_DLQS for q in DLQS}
            | {(a, q) for a in CONSOLE_ON_QUEUES for q in MAINS}
            | {(a, MESSAGING_KEY) for a in CONSOLE_KMS}
            | {("cloudwatch:GetMetricStatistics", "*")})


def test_the_console_task_role_has_exactly_what_reading_and_redriving_needs(
        templates: dict[str, Any]) -> None:
    key = messaging_key_import(templates["platform"])
    assert console_grants(templates[CONSOLE], key) == expected_console_grants()
    assert len(MAINS) == len(DLQS) == len(TOPOLOGY.queues)


def _grant(statements: list[dict[str, Any]], sid: str, action: str) -> None:
    [statement] = [s for s in statements if s["Sid"] == sid]
    statement["Action"] = [*statement["Action"], action] if isinstance(
        statement["Action"], list) else [statement["Action"], action]


def _on(statements: list[dict[str, Any]], sid: str, resource: Any) -> None:
    [statement] = [s for s in statements if s["Sid"] == sid]
    statement["Resource"] = [*statement["Resource"], resource] if isinstance(
        statement["Resource"], list) else [statement["Resource"], resource]


def _dlq_arn(statements: list[dict[str, Any]]) -> Any:
    [statement] = [s for s in statements if s["Sid"] == "ListAndRedriveTheDlqs"]
    return statement["Resource"][0]


def _main_arn(statements: list[dict[str, Any]]) -> Any:
    [statement] = [s for s in statements if s["Sid"] == "RedriveIntoTheSourceQueues"]
    return statement["Resource"][0]


WIDENINGS = {
    "purge a DLQ": lambda s: _grant(s, "ListAndRedriveTheDlqs", "sqs:PurgeQueue"),
    "send to a DLQ": lambda s: _grant(s, "ListAndRedriveTheDlqs", "sqs:SendMessage"),
    "a move task (its calls bypass the VPC endpoint)": lambda s: _grant(
        s, "ListAndRedriveTheDlqs", "sqs:StartMessageMoveTask"),
    "receive from a main queue": lambda s: _grant(s, "InspectEveryQueue", "sqs:ReceiveMessage"),
    "delete on a main queue": lambda s: _on(s, "ListAndRedriveTheDlqs", _main_arn(s)),
    "send to a DLQ by its ARN": lambda s: _on(s, "RedriveIntoTheSourceQueues", _dlq_arn(s)),
    "a queue action on *": lambda s: _on(s, "ListAndRedriveTheDlqs", "*"),
    "every CloudWatch action": lambda s: _grant(s, "ReadTheQueuesAgeMetrics", "cloudwatch:*"),
    "KMS on every key": lambda s: _on(s, "UseTheMessagingKey", "*"),
    "a key action beyond send and receive": lambda s: _grant(s, "UseTheMessagingKey",
                                                             "kms:Encrypt"),
    "publish to the topic": lambda s: s.append({"Sid": "Publish", "Effect": "Allow",
                                                "Action": "sns:Publish",
                                                "Resource": _main_arn(s)}),
    "read a secret": lambda s: s.append({"Effect": "Allow", "Resource": "*",
                                         "Action": "secretsmanager:GetSecretValue"}),
    "a queue of another deployment": lambda s: _on(s, "InspectEveryQueue", {"Fn::Join": [
        "", ["arn:", {"Ref": "AWS::Partition"}, ":sqs:", {"Ref": "AWS::Region"}, ":",
             {"Ref": "AWS::AccountId"}, ":staging-analytics"]]}),
    "everything but IAM": lambda s: s.append({"Effect": "Allow", "NotAction": "iam:*",
                                              "Resource": "*"}),
}


@pytest.mark.parametrize("widening", WIDENINGS)
def test_the_console_role_check_fails_on_any_wider_grant(templates: dict[str, Any],
                                                         widening: str) -> None:
    """The check above is not vacuous: the synthesized role with one grant more fails it."""
    raw = copy.deepcopy(templates[CONSOLE].to_json())
    key = messaging_key_import(templates["platform"])
    assert console_grants(Template.from_json(raw), key) == expected_console_grants()  # as is
    [policy] = [p for p in raw["Resources"].values() if p["Type"] == "AWS::IAM::Policy"
                and p["Properties"]["PolicyName"].startswith("TaskRole")]
    WIDENINGS[widening](policy["Properties"]["PolicyDocument"]["Statement"])
    with pytest.raises(AssertionError):
        assert console_grants(Template.from_json(raw), key) == expected_console_grants()


def test_the_console_has_no_database_no_sns_no_tracing_and_one_secret(
        templates: dict[str, Any]) -> None:
    """Its one secret is the platform's intake credential, read by its execution role alone
    (tests/deploy/test_credentials.py); it holds no secret of its own."""
    stack = templates[CONSOLE]
    kinds = {r["Type"] for r in stack.to_json()["Resources"].values()}
    assert not {k for k in kinds if k.startswith(
        ("AWS::RDS::", "AWS::SecretsManager::", "AWS::SNS::", "AWS::SQS::", "AWS::XRay::"))}
    intake = platform_import(templates["platform"], {"Ref": intake_secret_id(
        templates["platform"])})
    # no role of the stack (the execution role's included) may do anything of the kind, and
    # Secrets Manager only to read that one secret
    for s in statements(stack):
        assert not [a for a in s["actions"] if a.split(":")[0] in (
            "sns", "rds", "rds-db", "xray", "ssm")], s
        if any(a.startswith("secretsmanager:") for a in s["actions"]):
            assert set(s["actions"]) <= {"secretsmanager:GetSecretValue",
                                         "secretsmanager:DescribeSecret"}, s
            assert s["resources"] == [intake], s
    [task] = of_type(stack, "AWS::ECS::TaskDefinition").values()
    [container] = task["Properties"]["ContainerDefinitions"]
    assert container["Secrets"] == [{"Name": "SCHOOL_OTLP_TOKEN", "ValueFrom": intake}]


def test_the_console_runs_one_task_behind_an_internal_load_balancer_on_8000(
        templates: dict[str, Any]) -> None:
    stack = templates[CONSOLE]
    [service] = [s["Properties"] for s in of_type(stack, "AWS::ECS::Service").values()]
    assert (service["LaunchType"], service["DesiredCount"]) == ("FARGATE", 1)
    # never two at once, even while deploying: one store, one lock (deploy/aws/console.py)
    deployment = service["DeploymentConfiguration"]
    assert (deployment["MinimumHealthyPercent"], deployment["MaximumPercent"]) == (0, 100)
    assert deployment["DeploymentCircuitBreaker"] == {"Enable": True, "Rollback": True}
    assert service["NetworkConfiguration"]["AwsvpcConfiguration"]["AssignPublicIp"] == "DISABLED"
    [target] = service["LoadBalancers"]
    assert (target["ContainerName"], target["ContainerPort"]) == ("api", PORTS[CONSOLE]) == (
        "api", 8000)
    [(group_id, group)] = of_type(stack, "AWS::ElasticLoadBalancingV2::TargetGroup").items()
    assert target["TargetGroupArn"] == {"Ref": group_id}
    assert (group["Properties"]["HealthCheckPath"], group["Properties"]["Matcher"],
            group["Properties"]["Protocol"], group["Properties"]["TargetType"]) == (
        "/healthz", {"HttpCode": "200"}, "HTTP", "ip")
    [listener] = [x["Properties"] for x in
                  of_type(stack, "AWS::ElasticLoadBalancingV2::Listener").values()]
    assert (listener["Port"], listener["Protocol"]) == (80, "HTTP")
    assert listener["DefaultActions"] == [{"TargetGroupArn": {"Ref": group_id},
                                           "Type": "forward"}]
    [(balancer_id, balancer)] = of_type(stack,
                                        "AWS::ElasticLoadBalancingV2::LoadBalancer").items()
    assert listener["LoadBalancerArn"] == {"Ref": balancer_id}
    assert balancer["Properties"]["Scheme"] == "internal"
    assert {"Key": "routing.http.drop_invalid_header_fields.enabled", "Value": "true"} in (
        balancer["Properties"]["LoadBalancerAttributes"])
    # the load balancer admits port 80 from the VPC's own range only, never from anywhere
    [balancer_group] = balancer["Properties"]["SecurityGroups"]
    [ingress] = of_type(stack, "AWS::EC2::SecurityGroup")[
        balancer_group["Fn::GetAtt"][0]]["Properties"]["SecurityGroupIngress"]
    assert (ingress["FromPort"], ingress["ToPort"], ingress["IpProtocol"]) == (80, 80, "tcp")
    assert "CidrBlock" in ingress["CidrIp"]["Fn::ImportValue"]
    assert "0.0.0.0/0" not in json.dumps(of_type(stack, "AWS::EC2::SecurityGroupIngress"))


def test_the_console_task_migrates_its_own_sqlite_store_then_serves(
        templates: dict[str, Any], assembly_dir: Path) -> None:
    stack = templates[CONSOLE]
    [task] = [t["Properties"] for t in of_type(stack, "AWS::ECS::TaskDefinition").values()]
    assert task["RequiresCompatibilities"] == ["FARGATE"]
    [role_id] = [rid for rid, r in of_type(stack, "AWS::IAM::Role").items()
                 if r["Properties"].get("RoleName") == f"school-{ENV}-{CONSOLE}-task"]
    assert task["TaskRoleArn"] == {"Fn::GetAtt": [role_id, "Arn"]}
    [container] = task["ContainerDefinitions"]  # no migrate container, no collector
    assert container["Name"] == "api" and container["Essential"] is True
    assert container["Command"] == ["sh", "-c", "python -m shared.serve migrate console && "
                                                "exec python -m shared.serve api console"]
    assert container["PortMappings"] == [{"ContainerPort": 8000, "Protocol": "tcp"}]
    env = {e["Name"]: e["Value"] for e in container["Environment"]}
    # the identity provider and the console's client (tests/deploy/test_credentials.py), and
    # the addresses whose X-Forwarded-Proto gunicorn believes (tests/deploy/test_edge.py)
    signin = {"OIDC_ISSUER", "OIDC_CLIENT_IDS", "CONSOLE_CLIENT_ID", "FORWARDED_ALLOW_IPS"}
    assert signin <= set(env)
    assert {k: v for k, v in env.items() if k not in signin} == {
        "SCHOOL_ENV": ENV, "AWS_DEFAULT_REGION": {"Ref": "AWS::Region"}, "DB": "sqlite",
        "BIND_HOST": "0.0.0.0", "CONSOLE_PORT": "8000", "LOG_LEVEL": "INFO",
        "CONSOLE_DATABASE_URL": "sqlite:////tmp/school/console.sqlite"}
    [(logs_id, _)] = [(lid, g) for lid, g in of_type(stack, "AWS::Logs::LogGroup").items()
                      if g["Properties"]["LogGroupName"] == f"/school/{ENV}/{CONSOLE}"
                      and g["Properties"]["RetentionInDays"] == 30]
    assert container["LogConfiguration"]["LogDriver"] == "awslogs"
    assert container["LogConfiguration"]["Options"]["awslogs-group"] == {"Ref": logs_id}
    # the one image, built for the console (its user is not root: tests/deploy/test_docker.py)
    assets = json.loads((assembly_dir / f"School-{ENV}-{CONSOLE}.assets.json").read_text())
    [image] = assets["dockerImages"].values()
    assert image["source"]["dockerFile"] == "deploy/docker/Dockerfile"
    assert image["source"]["dockerBuildArgs"] == {"SERVICE": CONSOLE}


# --- Spans to the console on AWS: Cloud Map, the console's port, the collectors' exporter -----
# Written out, not derived from deploy/aws/: a renamed namespace or service must fail here.
NAMESPACE = f"school-{ENV}.internal"
CONSOLE_TRACES = f"http://console.{NAMESPACE}:8000"


def test_the_platform_has_a_private_dns_namespace_in_its_vpc(templates: dict[str, Any]) -> None:
    platform = templates["platform"]
    kinds = {r["Type"] for r in platform.to_json()["Resources"].values()}
    # private only: no public DNS namespace, no HTTP-only one
    assert {k for k in kinds if k.startswith("AWS::ServiceDiscovery::")} == {
        "AWS::ServiceDiscovery::PrivateDnsNamespace"}
    [namespace] = of_type(platform, "AWS::ServiceDiscovery::PrivateDnsNamespace").values()
    [vpc_id] = of_type(platform, "AWS::EC2::VPC")
    assert namespace["Properties"]["Name"] == NAMESPACE
    assert namespace["Properties"]["Vpc"] == {"Ref": vpc_id}


def test_the_console_task_registers_in_the_namespace_as_console(
        templates: dict[str, Any]) -> None:
    platform, stack = templates["platform"], templates[CONSOLE]
    [namespace_id] = of_type(platform, "AWS::ServiceDiscovery::PrivateDnsNamespace")
    namespace = platform_import(platform, {"Fn::GetAtt": [namespace_id, "Id"]})
    [(registry_id, registry)] = of_type(stack, "AWS::ServiceDiscovery::Service").items()
    props = registry["Properties"]
    assert props["Name"] == "console"
    assert props["NamespaceId"] == props["DnsConfig"]["NamespaceId"] == namespace
    # an A record of the task's own address (awsvpc), short-lived: each deployment replaces it
    [record] = props["DnsConfig"]["DnsRecords"]
    assert record["Type"] == "A" and record["TTL"] <= 60
    [service] = [s["Properties"] for s in of_type(stack, "AWS::ECS::Service").values()]
    assert service["ServiceRegistries"] == [{"RegistryArn": {"Fn::GetAtt": [registry_id,
                                                                            "Arn"]}}]


def test_the_console_task_admits_its_port_from_the_vpc_and_its_load_balancer_only(
        templates: dict[str, Any]) -> None:
    platform, stack = templates["platform"], templates[CONSOLE]
    [vpc_id] = of_type(platform, "AWS::EC2::VPC")
    vpc_cidr = platform_import(platform, {"Fn::GetAtt": [vpc_id, "CidrBlock"]})
    [service] = [s["Properties"] for s in of_type(stack, "AWS::ECS::Service").values()]
    [task_group] = service["NetworkConfiguration"]["AwsvpcConfiguration"]["SecurityGroups"]
    [balancer] = of_type(stack, "AWS::ElasticLoadBalancingV2::LoadBalancer").values()
    [balancer_group] = balancer["Properties"]["SecurityGroups"]
    # the group's own rules and the rules other resources add to it
    rules = of_type(stack, "AWS::EC2::SecurityGroup")[task_group["Fn::GetAtt"][0]][
        "Properties"].get("SecurityGroupIngress", [])
    rules += [r["Properties"] for r in of_type(stack, "AWS::EC2::SecurityGroupIngress").values()
              if r["Properties"]["GroupId"] == task_group]
    admitted = sorted(((r["IpProtocol"], r["FromPort"], r["ToPort"],
                        r.get("CidrIp") or r.get("SourceSecurityGroupId")) for r in rules),
                      key=json.dumps)
    assert admitted == sorted([("tcp", 8000, 8000, vpc_cidr),  # the services' collectors
                               ("tcp", 8000, 8000, balancer_group)], key=json.dumps)


@pytest.mark.parametrize("service", SERVICES)
def test_each_collector_sends_every_trace_to_the_console_too(templates: dict[str, Any],
                                                             service: str) -> None:
    """Beside X-Ray, in the one traces pipeline, by the console's name in the namespace: the
    address the console's stack registers. Its metrics stay in CloudWatch."""
    platform, console = templates["platform"], templates[CONSOLE]
    [namespace] = of_type(platform, "AWS::ServiceDiscovery::PrivateDnsNamespace").values()
    [registry] = of_type(console, "AWS::ServiceDiscovery::Service").values()
    [console_task] = of_type(console, "AWS::ECS::TaskDefinition").values()
    [port] = [m["ContainerPort"] for c in console_task["Properties"]["ContainerDefinitions"]
              for m in c.get("PortMappings", [])]
    registered = (f"http://{registry['Properties']['Name']}."
                  f"{namespace['Properties']['Name']}:{port}")
    assert registered == CONSOLE_TRACES
    tasks = of_type(templates[service], "AWS::ECS::TaskDefinition").values()
    assert len(tasks) == 2  # the API's and the worker's
    for task in tasks:
        config = collector_config(task)
        # OTLP/HTTP protobuf, gzipped; no queue or retry settings: the exporter's defaults
        # (deploy/aws/telemetry.py says why); the intake's credential from the collector's
        # environment, which the collector expands (tests/deploy/test_credentials.py)
        assert config["exporters"]["otlphttp/console"] == {
            "endpoint": CONSOLE_TRACES, "compression": "gzip",
            "headers": {"x-school-otlp-token": "${env:SCHOOL_OTLP_TOKEN}"}}
        pipelines = config["service"]["pipelines"]
        assert set(pipelines) == {"traces", "metrics"}
        traces = pipelines["traces"]
        assert (traces["receivers"], traces["processors"]) == (["otlp"], ["batch"])
        assert sorted(traces["exporters"]) == ["awsxray", "otlphttp/console"]
        assert "otlphttp/console" not in pipelines["metrics"]["exporters"]
    # a network path, not an AWS API: the task role has nothing for it (no Cloud Map, no
    # Route 53), only the queues, the topic, the key and the collector's X-Ray and Logs
    for statement in task_role_statements(templates[service], service):
        actions = statement["Action"] if isinstance(statement["Action"], list) else [
            statement["Action"]]
        assert {a.split(":")[0] for a in actions} <= {"sqs", "sns", "kms", "xray", "logs"}, (
            statement)
