"""The messaging stack, generated from shared/topology.py: the same topic, queues, DLQs, names
and redrive counts as `make up` provisions locally, plus what only AWS has: queue and topic
policies that refuse requests without TLS, and CloudWatch alarms."""

from __future__ import annotations

from aws_cdk import Duration, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from shared import topology as t
from shared.topology import TOPOLOGY, QueueSpec, Topology, physical

# A message waiting longer than this on a main queue means its consumer is down or behind.
OLDEST_MESSAGE_ALARM_SECONDS = 300


def construct_name(name: str) -> str:
    """`payment-requests.fifo` -> `PaymentRequestsFifo` (a stable construct id)."""
    return "".join(part.capitalize() for part in name.replace(".", "-").split("-"))


class MessagingStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, *, env_name: str,
                 topology: Topology = TOPOLOGY, **kwargs: object) -> None:
        super().__init__(scope, construct_id, **kwargs)  # type: ignore[arg-type]
        self.topic = sns.Topic(self, "Topic", topic_name=physical(env_name, topology.topic.name),
                               enforce_ssl=True)
        for spec in topology.queues:
            self._queue(env_name, spec)

    def _queue(self, env_name: str, spec: QueueSpec) -> None:
        dlq = sqs.Queue(
            self, construct_name(spec.dlq_name), queue_name=physical(env_name, spec.dlq_name),
            fifo=spec.fifo or None, encryption=sqs.QueueEncryption.SQS_MANAGED, enforce_ssl=True,
            retention_period=Duration.seconds(t.DLQ_RETENTION_SECONDS))
        queue = sqs.Queue(
            self, construct_name(spec.name), queue_name=physical(env_name, spec.name),
            fifo=spec.fifo or None, encryption=sqs.QueueEncryption.SQS_MANAGED, enforce_ssl=True,
            retention_period=Duration.seconds(t.QUEUE_RETENTION_SECONDS),
            receive_message_wait_time=Duration.seconds(t.LONG_POLL_SECONDS),
            visibility_timeout=Duration.seconds(spec.visibility_timeout),
            dead_letter_queue=sqs.DeadLetterQueue(max_receive_count=spec.redrive_max_receives,
                                                  queue=dlq))
        # Further SQS attributes of the spec (the provisioner sets them on the queue as they are);
        # CloudFormation's queue properties carry the same names.
        cfn_queue = queue.node.default_child
        if not isinstance(cfn_queue, sqs.CfnQueue):
            raise TypeError(f"queue {spec.name}: expected its default child to be a CfnQueue, "
                            f"got {type(cfn_queue).__name__}; cannot set {spec.sqs_attributes}")
        for key, value in spec.sqs_attributes.items():
            cfn_queue.add_property_override(key, int(value) if value.isdigit() else value)
        if spec.subscribed:
            policy = None if spec.filter_events is None else {
                "event_type": sns.SubscriptionFilter.string_filter(
                    allowlist=sorted(spec.filter_events))}
            self.topic.add_subscription(subscriptions.SqsSubscription(
                queue, raw_message_delivery=True, filter_policy=policy))
        base = construct_name(spec.name)
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
