"""The messaging stack, generated from shared/topology.py: the same topic, queues, DLQs, names
and redrive counts as `make up` provisions locally, plus what only AWS has:

- encryption of the topic and every queue and DLQ with a customer-managed KMS key (rotated
  yearly; made by `messaging_key` in the platform stack), whose key policy lets SNS use it to
  deliver from the topic to the encrypted queues;
- queue and topic policies that refuse requests without TLS, and queue policies that refuse the
  services' task roles unless they come through the VPC's SQS endpoint (platform stack);
- on each DLQ a RedriveAllowPolicy that admits its own source queue only;
- CloudWatch alarms."""

from __future__ import annotations

from typing import Any

from aws_cdk import Duration, Fn, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from shared import topology as t
from shared.provision import redrive_allow_policy
from shared.topology import TOPOLOGY, QueueSpec, Topology, physical

# A message waiting longer than this on a main queue means its consumer is down or behind.
OLDEST_MESSAGE_ALARM_SECONDS = 300
# How long SQS reuses a data key from KMS before it asks for a new one (60 s to 24 h; AWS's
# default is 5 min). SQS calls KMS once per period for each queue and each principal that sends
# or receives, and KMS bills each call and throttles them per account; an hour cuts those calls
# twelvefold against the default while a data key still protects at most an hour of one queue's
# messages, and the key itself is rotated every year.
DATA_KEY_REUSE_SECONDS = 3600


def messaging_key(scope: Construct, env_name: str, topology: Topology = TOPOLOGY) -> kms.Key:
    """The customer-managed key of the topic and every queue and DLQ, rotated yearly.

    It lives in the platform stack, which is deployed first: the service stacks grant their
    roles its use, and the messaging stack encrypts with it, so an existing deployment can
    deploy the services (the grants) before the messaging stack switches the queues to the key,
    and no running task ever meets a queue it may not use."""
    key = kms.Key(scope, "MessagingKey", alias=f"alias/school-{env_name}-messaging",
                  enable_key_rotation=True,
                  description=f"school {env_name}: encrypts the event topic and every queue "
                              f"and DLQ")
    # SNS encrypts what it delivers to an encrypted queue with the queue's key: without this
    # grant the fan-out to the queues fails on AWS, and nothing reports it to the publisher.
    # Only for deliveries from our topic (an ARN built from its name: the topic is in another
    # stack, and a reference would make the topic and the key depend on each other).
    key.add_to_resource_policy(iam.PolicyStatement(
        sid="TopicDeliversToEncryptedQueues",
        principals=[iam.ServicePrincipal("sns.amazonaws.com")],
        actions=["kms:GenerateDataKey", "kms:Decrypt"], resources=["*"],
        conditions={"ArnEquals": {"aws:SourceArn": Stack.of(scope).format_arn(
            service="sns", resource=physical(env_name, topology.topic.name))}}))
    return key


def task_role_name(env_name: str, service: str) -> str:
    """The name of a service's task role (service stack); the queue policies refer to the roles
    by this name, as the service stacks are deployed after this one."""
    return f"school-{env_name}-{service}-task"


def sqs_endpoint_export(env_name: str) -> str:
    """The export of the platform stack that names the VPC's SQS interface endpoint."""
    return f"school-{env_name}-sqs-endpoint"


def construct_name(name: str) -> str:
    """`payment-requests.fifo` -> `PaymentRequestsFifo` (a stable construct id)."""
    return "".join(part.capitalize() for part in name.replace(".", "-").split("-"))


class MessagingStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, *, env_name: str,
                 topology: Topology = TOPOLOGY, key: kms.IKey | None = None,
                 **kwargs: object) -> None:
        super().__init__(scope, construct_id, **kwargs)  # type: ignore[arg-type]
        self.env_name = env_name
        topic_name = physical(env_name, topology.topic.name)
        # The platform stack's key in the app; a stack built alone (a test's) makes its own.
        self.key = key or messaging_key(self, env_name, topology)
        self.topic = sns.Topic(self, "Topic", topic_name=topic_name, enforce_ssl=True,
                               master_key=self.key)
        self.endpoint = Fn.import_value(sqs_endpoint_export(env_name))
        for spec in topology.queues:
            self._queue(env_name, spec)

    def _queue(self, env_name: str, spec: QueueSpec) -> None:
        def encrypted_queue(name: str, **props: Any) -> sqs.Queue:
            return sqs.Queue(self, construct_name(name), queue_name=physical(env_name, name),
                             fifo=spec.fifo or None, enforce_ssl=True,
                             encryption=sqs.QueueEncryption.KMS, encryption_master_key=self.key,
                             data_key_reuse=Duration.seconds(DATA_KEY_REUSE_SECONDS), **props)

        dlq = encrypted_queue(spec.dlq_name,
                              retention_period=Duration.seconds(t.DLQ_RETENTION_SECONDS))
        queue = encrypted_queue(
            spec.name, retention_period=Duration.seconds(t.QUEUE_RETENTION_SECONDS),
            receive_message_wait_time=Duration.seconds(t.LONG_POLL_SECONDS),
            visibility_timeout=Duration.seconds(spec.visibility_timeout),
            dead_letter_queue=sqs.DeadLetterQueue(max_receive_count=spec.redrive_max_receives,
                                                  queue=dlq))
        # The DLQ admits its own source queue only, named by its ARN (a reference would make
        # the two queues depend on each other).
        self._cfn(dlq, spec.dlq_name).add_property_override(
            "RedriveAllowPolicy", redrive_allow_policy(self.queue_arn(spec.name)))
        for each in (queue, dlq):
            self._only_through_the_endpoint(each)
        # Further SQS attributes of the spec (the provisioner sets them on the queue as they are);
        # CloudFormation's queue properties carry the same names.
        cfn_queue = self._cfn(queue, spec.name)
        for key, value in spec.sqs_attributes.items():
            cfn_queue.add_property_override(key, int(value) if value.isdigit() else value)
        base = construct_name(spec.name)
        if spec.subscribed:
            self._subscribe(base, spec, queue)
        queue.metric_approximate_age_of_oldest_message(period=Duration.minutes(1)).create_alarm(
            self, f"{base}OldestMessage", threshold=OLDEST_MESSAGE_ALARM_SECONDS,
            evaluation_periods=3,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            alarm_description=f"{spec.name}: a message has waited over "
                              f"{OLDEST_MESSAGE_ALARM_SECONDS} s (consumer {spec.consumer})")
        dlq.metric_approximate_number_of_messages_visible(period=Duration.minutes(1)).create_alarm(
            self, f"{base}DlqNotEmpty", threshold=0, evaluation_periods=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            alarm_description=f"{spec.dlq_name} holds messages: `school dlq list {spec.name}`")

    def _subscribe(self, base: str, spec: QueueSpec, queue: sqs.Queue) -> None:
        """The topic delivers to the queue, raw, through the filter of the spec. Written out
        rather than with aws_sns_subscriptions.SqsSubscription, which would also grant SNS the
        key for deliveries from any topic: the key policy above grants it for ours only."""
        added = queue.add_to_resource_policy(iam.PolicyStatement(
            sid="TopicDelivers", principals=[iam.ServicePrincipal("sns.amazonaws.com")],
            actions=["sqs:SendMessage"], resources=[queue.queue_arn],
            conditions={"ArnEquals": {"aws:SourceArn": self.topic.topic_arn}}))
        policy = None if spec.filter_events is None else {
            "event_type": sns.SubscriptionFilter.string_filter(
                allowlist=sorted(spec.filter_events))}
        subscription = sns.Subscription(
            self, f"{base}Subscription", topic=self.topic, endpoint=queue.queue_arn,
            protocol=sns.SubscriptionProtocol.SQS, raw_message_delivery=True,
            filter_policy=policy)
        if added.policy_dependable is not None:  # the queue admits the topic before it sends
            subscription.node.add_dependency(added.policy_dependable)

    def queue_arn(self, name: str) -> str:
        return self.format_arn(service="sqs", resource=physical(self.env_name, name))

    @staticmethod
    def _cfn(queue: sqs.Queue, name: str) -> sqs.CfnQueue:
        cfn_queue = queue.node.default_child
        if not isinstance(cfn_queue, sqs.CfnQueue):
            raise TypeError(f"queue {name}: expected its default child to be a CfnQueue, got "
                            f"{type(cfn_queue).__name__}; cannot set its further properties")
        return cfn_queue

    def _only_through_the_endpoint(self, queue: sqs.Queue) -> None:
        """The services' task roles reach the queue only through the VPC's SQS endpoint: a
        stolen task credential used from elsewhere is refused. Other principals (SNS delivering
        from the topic, an operator's role) are not concerned by this statement."""
        queue.add_to_resource_policy(iam.PolicyStatement(
            sid="TaskRolesOnlyThroughTheVpcEndpoint", effect=iam.Effect.DENY,
            principals=[iam.AnyPrincipal()], actions=["sqs:*"], resources=[queue.queue_arn],
            conditions={
                "StringNotEquals": {"aws:SourceVpce": self.endpoint},
                "ArnLike": {"aws:PrincipalArn": self.format_arn(
                    service="iam", region="", resource="role",
                    resource_name=task_role_name(self.env_name, "*"))}}))
