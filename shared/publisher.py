"""Publishing outbox rows to SQS and SNS: batch calls within SQS's limits, and what each call
made of its rows (accepted, refused for now, refused for ever). The relay (shared/outbox.py)
decides what happens to the rows."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from shared import telemetry
from shared.envelope import MAX_MESSAGE_BYTES, message_size
from shared.topology import Topology, physical

log = logging.getLogger(__name__)


class OutboxRow(Protocol):
    """The columns of an outbox row (shared.tables) that publishing reads: a SQLAlchemy Row of
    the outbox, or a unit test's stand-in."""

    @property
    def id(self) -> int: ...
    @property
    def body(self) -> str: ...
    @property
    def attributes(self) -> str: ...
    @property
    def group_id(self) -> str | None: ...


class RowToSend(OutboxRow, Protocol):
    """A row as a batch call sends it."""

    @property
    def dedup_id(self) -> str | None: ...


class RowToPlan(OutboxRow, Protocol):
    """A row as batch planning sorts it, by destination."""

    @property
    def destination(self) -> str: ...


PlannedRow = TypeVar("PlannedRow", bound=RowToPlan)

BATCH = 10  # the most SendMessageBatch and PublishBatch accept in one call

# A batch call's entries may add up to at most 256 KiB, bodies and attributes together, on both
# SendMessageBatch and PublishBatch (`BatchRequestTooLong` otherwise): a relay that filled a batch
# by count alone retried six 100 KB submissions for ever.
MAX_BATCH_BYTES = MAX_MESSAGE_BYTES
# Error codes that concern the request's content, not SQS's health: a batch refused with one is
# split into single calls, and a single row refused with one is set aside as dead. Every other
# error (throttling, a missing queue, credentials, the network) is the relay's to back off on.
CONTENT_ERRORS = frozenset({
    "BatchRequestTooLong", "RequestTooLong", "MessageTooLong", "InvalidParameterValue",
    "InvalidParameter", "InvalidMessageContents", "InvalidAttributeName", "InvalidAttributeValue",
    "InvalidBatchEntryId", "BatchEntryIdsNotDistinct", "TooManyEntriesInBatchRequest",
    "ValidationError",
})


@dataclass
class SendResult:
    """What one call made of its rows: accepted, refused for ever, or refused for now."""

    sent: set[int] = field(default_factory=set)
    dead: dict[int, str] = field(default_factory=dict)
    deferred: dict[int, str] = field(default_factory=dict)
    ids: dict[int, str] = field(default_factory=dict)  # row -> the MessageId SQS or SNS gave

    def merge(self, other: SendResult) -> None:
        self.sent |= other.sent
        self.ids |= other.ids
        self.dead |= other.dead
        self.deferred |= other.deferred


def error_code(exc: ClientError) -> str:
    """`AWS.SimpleQueueService.BatchRequestTooLong`, `InvalidParameterValueException` and
    `InvalidParameterValue` as the plain code: SQS's query and JSON protocols spell them so."""
    code = str(exc.response.get("Error", {}).get("Code", "")).rsplit(".", 1)[-1]
    return code.removesuffix("Exception")


def missing_topic(exc: ClientError, arn: str) -> ClientError:
    """SNS's NotFound, saying which topic is missing and what to do: the relay never creates
    it, and backs off until someone provisions it."""
    error = {**exc.response.get("Error", {}),
             "Message": f"topic {arn} does not exist: provision the topology (`school provision`, "
                        f"or the messaging stack on AWS); the relay does not create topics"}
    return ClientError({**exc.response, "Error": error}, exc.operation_name)


def row_size(row: OutboxRow) -> int:
    return message_size(row.body, json.loads(row.attributes))


def sts_beside(client: Any) -> Any:
    """An STS client for the region and endpoint of another client (the SNS one).

    Only for a Publisher built without an STS client (the runtime passes its own). An endpoint
    botocore chose by itself (AWS, or AWS_ENDPOINT_URL) is left for it to choose for STS too; an
    endpoint given explicitly is an emulator's, which serves every service at one address.
    Credentials come from the default chain.
    """
    session = boto3.session.Session()
    region = client.meta.region_name
    chosen = session.client(client.meta.service_model.service_name,
                            region_name=region).meta.endpoint_url
    endpoint = None if client.meta.endpoint_url == chosen else client.meta.endpoint_url
    return session.client("sts", region_name=region, endpoint_url=endpoint,
                          config=client.meta.config)


def sts_absent(exc: BotoCoreError | ClientError) -> bool:
    """Whether STS is simply not served where the client points: no endpoint answers, or the
    endpoint does not implement it (HTTP 501: LocalStack without `sts` in SERVICES)."""
    if isinstance(exc, BotoCoreError):
        return True
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)) == 501


def topic_arn(identity: dict[str, Any], region: str, name: str) -> str:
    """`arn:<partition>:sns:<region>:<account>:<name>` from an STS GetCallerIdentity answer (its
    `Arn` gives the partition, `Account` the account)."""
    partition = str(identity.get("Arn", "")).split(":")[1:2]
    account = identity.get("Account")
    if not partition or not partition[0] or not account or not region:
        raise ValueError(f"cannot build the ARN of topic {name!r} from the caller identity "
                         f"{identity!r} in region {region!r}")
    return f"arn:{partition[0]}:sns:{region}:{account}:{name}"


class Publisher:
    """Sends outbox rows to SNS or SQS in batches and sorts out what each call made of them.

    `sts`: the client whose GetCallerIdentity gives the topic's account and partition; by
    default one beside the SNS client (`sts_beside`).
    """

    def __init__(self, sqs: Any, sns: Any, topology: Topology, env: str, *,
                 sts: Any = None) -> None:
        self.sqs, self.sns, self.topology, self.env = sqs, sns, topology, env
        self._sts = sts
        self._targets: dict[str, str] = {}

    def target(self, destination: str) -> str:
        """Queue URL or topic ARN of a logical destination, looked up once."""
        if destination not in self._targets:
            name = physical(self.env, destination)
            if destination == self.topology.topic.name:
                self._targets[destination] = self.topic_arn(name)
            else:
                self._targets[destination] = self.sqs.get_queue_url(QueueName=name)["QueueUrl"]
        return self._targets[destination]

    def topic_arn(self, name: str) -> str:
        """The topic's ARN, built rather than asked of SNS, so no role needs sns:CreateTopic.

        CreateTopic needs a permission to create, and against a missing topic it creates an
        empty one, without subscriptions, that swallows every event. The ARN is built from the
        caller's account and partition (STS GetCallerIdentity) and the SNS client's region. We
        chose that over an ARN given in configuration because GetCallerIdentity needs no IAM
        permission (no policy can deny it), and because every launcher would otherwise have to
        carry one more variable, and publishing would break wherever one forgot it: the CDK
        stack, `make up`, the tests, `make chaos`, compose. The ARN is the one the CDK stack's
        policy names (the stack's own partition, region and account) and the one LocalStack's
        CreateTopic returns; tests/deploy/test_stacks.py and tests/integration/test_publisher.py
        check both. The topic must be in the caller's account and the SNS client's region, which
        holds here because one set of credentials deploys all the stacks. A topic that does
        not exist fails PublishBatch with NotFound, and the relay backs off (`_call`).

        An emulator started with SQS and SNS alone (`SERVICES=sqs,sns`) has no STS: there the
        topic is looked up by name with ListTopics, which the emulator does not restrict. On
        AWS STS always answers, so a task role never needs sns:ListTopics either.
        """
        sts = self._sts if self._sts is not None else sts_beside(self.sns)
        try:
            identity = sts.get_caller_identity()
        except (BotoCoreError, ClientError) as exc:
            if not sts_absent(exc):
                raise  # throttled, expired credentials...: the relay backs off and asks again
            log.warning("STS is not there (%s): looking topic %s up by name", exc, name)
            return self._listed_topic(name)
        try:
            return topic_arn(identity, self.sns.meta.region_name, name)
        except ValueError as exc:  # a ClientError, so the relay backs off and says why
            raise ClientError({"Error": {"Code": "InvalidCallerIdentity", "Message": str(exc)}},
                              "GetCallerIdentity") from exc

    def _listed_topic(self, name: str) -> str:
        for page in self.sns.get_paginator("list_topics").paginate():
            for topic in page.get("Topics", []):
                if topic["TopicArn"].rsplit(":", 1)[-1] == name:
                    return str(topic["TopicArn"])
        raise ClientError({"Error": {"Code": "NotFound", "Message": (
            f"topic {name} does not exist: provision the topology (`school provision`); the "
            "relay does not create topics")}}, "ListTopics")

    def send(self, destination: str, rows: Sequence[RowToSend]) -> SendResult:
        """One batch call; a batch refused for its content as a whole is retried row by row.

        Raises BotoCoreError or ClientError when the failure is not the rows' own.
        """
        try:
            reply = self._call(destination, rows)
        except ClientError as exc:
            code = error_code(exc)
            if code not in CONTENT_ERRORS:
                raise
            if len(rows) == 1:
                return SendResult(dead={rows[0].id: f"{code}: {exc}"[:1000]})
            result = SendResult()
            for row in rows:
                result.merge(self.send(destination, [row]))
            return result
        accepted = reply.get("Successful", [])
        result = SendResult(sent={int(ok["Id"]) for ok in accepted},
                            ids={int(ok["Id"]): str(ok.get("MessageId")) for ok in accepted})
        for failed in reply.get("Failed", []):
            reason = f"{failed.get('Code')}: {failed.get('Message', '')}"[:1000]
            # SenderFault: the entry itself is wrong and will be refused again (SQS API
            # reference, BatchResultErrorEntry); otherwise it is SQS's trouble, try later.
            bucket = result.dead if failed.get("SenderFault") else result.deferred
            bucket[int(failed["Id"])] = reason
        return result

    def tracing(self, destination: str, rows: Sequence[RowToSend]
                ) -> AbstractContextManager[list[Any]]:
        """The `send` spans of one batch call (shared.telemetry.sending)."""
        topic = destination == self.topology.topic.name
        return telemetry.sending(list(rows), destination, physical(self.env, destination),
                                 "aws.sns" if topic else "aws_sqs",
                                 "PublishBatch" if topic else "SendMessageBatch")

    def _call(self, destination: str, rows: Sequence[RowToSend]) -> dict[str, Any]:
        target = self.target(destination)
        if destination == self.topology.topic.name:
            entries = [{"Id": str(r.id), "Message": r.body,
                        "MessageAttributes": json.loads(r.attributes)} for r in rows]
            try:
                reply: dict[str, Any] = self.sns.publish_batch(TopicArn=target,
                                                               PublishBatchRequestEntries=entries)
            except ClientError as exc:
                if error_code(exc) != "NotFound":
                    raise
                raise missing_topic(exc, target) from exc
        else:
            reply = self.sqs.send_message_batch(QueueUrl=target,
                                                Entries=[self._sqs_entry(r) for r in rows])
        return reply

    @staticmethod
    def _sqs_entry(row: RowToSend) -> dict[str, Any]:
        entry = {"Id": str(row.id), "MessageBody": row.body,
                 "MessageAttributes": json.loads(row.attributes)}
        if row.group_id is not None:
            entry |= {"MessageGroupId": row.group_id, "MessageDeduplicationId": row.dedup_id}
        return entry


def plan_batches(rows: Sequence[PlannedRow], max_bytes: int = MAX_BATCH_BYTES
                 ) -> list[tuple[str, list[PlannedRow]]]:
    """Split pending rows (in id order) into batch calls that cannot reorder a group.

    A batch holds at most 10 rows adding up to at most `max_bytes`. A FIFO group contributes at
    most one row per batch call: if an entry of a batch failed while a later entry of the same
    group succeeded, the group would be out of order. Rows without a group (the topic) fill
    batches freely.
    """
    batches: list[tuple[str, list[PlannedRow]]] = []
    open_batch: dict[str, list[PlannedRow]] = {}
    sizes: dict[str, int] = {}
    groups_in: dict[str, set[str]] = {}
    for row in rows:
        batch = open_batch.get(row.destination)
        groups = groups_in.setdefault(row.destination, set())
        size = row_size(row)
        if (batch is None or len(batch) == BATCH or sizes[row.destination] + size > max_bytes
                or (row.group_id and row.group_id in groups)):
            batch = open_batch[row.destination] = []
            sizes[row.destination] = 0
            groups.clear()
            batches.append((row.destination, batch))
        batch.append(row)
        sizes[row.destination] += size
        if row.group_id:
            groups.add(row.group_id)
    return batches
