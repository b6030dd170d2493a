"""`school`: provision the queues, look at them and their dead-letter queues, redrive them;
follow a conversation in the console; sign in to the local development issuer.

`school login --as <role>` stores a token that `school trace` (the one command that calls the
console or a service over HTTP) sends; SCHOOL_TOKEN, when set, is sent instead. `status`, `dlq`,
`outbox` and `provision` talk to SQS and the databases directly and need no token."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.parse
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from sqlalchemy.exc import SQLAlchemyError

from shared import aws, inspect, outbox_admin
from shared.auth import ROLES
from shared.inspect import queue_state
from shared.masking import mask_body, mask_text
from shared.settings import CONSOLE, PORTS, ConfigError, Settings
from shared.signin import (
    CONSOLE_ROLE,
    LOGIN_HINT,
    TOKEN_ENV,
    TOKEN_FILE_ENV,
    SignInError,
    current_token,
    default_issuer,
    login,
    logout,
    subject,
    token_file,
    who,
)
from shared.topology import TOPOLOGY, QueueSpec, physical

# Attributes the consumer runtime adds when it dead-letters a message (and the mark of a FIFO DLQ
# listing); dropped on redrive.
LISTING_ATTRIBUTE = "dlq_listing"
DLQ_ATTRIBUTES = ("dlq_reason", "dlq_error", "source_queue", LISTING_ATTRIBUTE)


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds:.0f}s" if seconds < 120 else f"{seconds / 60:.0f}m"


def status(settings: Settings, sqs: Any, out: Any = sys.stdout) -> int:
    cloudwatch = None if settings.aws_endpoint_url else aws.client("cloudwatch", settings)
    rows = []
    for spec in TOPOLOGY.queues:
        for name in (spec.name, spec.dlq_name):
            url = _url(sqs, settings, name)
            rows.append(queue_state(sqs, url, settings, cloudwatch))
    width = max(len(r.name) for r in rows)
    print(f"{'queue':<{width}}  {'visible':>7}  {'in flight':>9}  {'oldest':>6}", file=out)
    for r in rows:
        print(f"{r.name:<{width}}  {r.visible:>7}  {r.in_flight:>9}  {_age(r.oldest_age):>6}",
              file=out)
    print(f"\n{'outbox':<{width}}  {'pending':>7}  {'backing off':>11}  {'dead':>4}", file=out)
    for service in outbox_admin.producers():
        with outbox_admin.service_engine(service, settings) as engine:
            if engine is None:
                print(f"{service:<{width}}  {'-':>7}  {'-':>11}  {'-':>4}  (no database yet)",
                      file=out)
                continue
            o = outbox_admin.state(service, engine)
        hint = f"  <- school outbox list {service}" if o.dead else ""
        print(f"{service:<{width}}  {o.pending:>7}  {o.backing_off:>11}  {o.dead:>4}{hint}",
              file=out)
    return 0


def outbox(settings: Settings, action: str, service: str, ids: list[int],
           out: Any = sys.stdout) -> int:
    """List a service's dead outbox rows, or put them back in the relay's way."""
    with outbox_admin.service_engine(service, settings) as engine:
        if engine is None:
            print(f"school: {service} has no outbox database yet (is it migrated?)",
                  file=sys.stderr)
            return 1
        if action == "retry":
            count = outbox_admin.retry(engine, ids or None)
            print(f"{count} dead row(s) of {service} handed back to its relay", file=out)
            return 0
        rows = outbox_admin.dead_rows(engine)
    for row in rows:
        print(json.dumps({"id": row.id, "event_type": row.event_type,
                          "destination": row.destination, "group_id": row.group_id,
                          "event_id": row.event_id, "dead_at": row.dead_at.isoformat(),
                          "attempts": row.attempts,  # SQS's refusal may quote the body
                          "reason": row.last_error and mask_text(row.last_error)}), file=out)
    print(f"{len(rows)} dead row(s) in the {service} outbox", file=out)
    return 0


def provision(settings: Settings, sqs: Any, out: Any = sys.stdout) -> int:
    from shared.provision import Provisioner
    report = Provisioner(sqs, aws.client("sns", settings), settings.school_env,
                         say=lambda text: print(f"  {text}", file=out, flush=True)).run()
    print(f"{len(report.queues)} queues with their DLQs and 1 topic in {settings.school_env!r}: "
          + (f"{len(report.changes)} change(s)" if report.changed else "nothing to change"),
          file=out)
    return 0


def _url(sqs: Any, settings: Settings, name: str) -> str:
    url: str = sqs.get_queue_url(QueueName=physical(settings.school_env, name))["QueueUrl"]
    return url


def dlq_list(settings: Settings, sqs: Any, spec: QueueSpec, out: Any = sys.stdout) -> int:
    """Print each dead-lettered message with why it is there, its payment tokens and emails
    masked; the messages stay in the DLQ as they were."""
    url = _url(sqs, settings, spec.dlq_name)
    waiting = _visible(sqs, url)
    listed = held = _drain(sqs, url, visibility=30)
    if spec.fifo and len(held) < waiting:
        # A FIFO group is locked while any of its messages is in flight, so the messages after
        # the first batch of a group stay hidden while we hold it (a listing once showed 20 of 21).
        release(sqs, url, held)
        held = []
        listed = _list_fifo(sqs, url)
    try:
        for message in listed:
            print(json.dumps(_described(message)), file=out)
    finally:
        release(sqs, url, held)
    print(f"{len(listed)} message(s) in {physical(settings.school_env, spec.dlq_name)}", file=out)
    return 0


def _described(message: dict[str, Any]) -> dict[str, Any]:
    """A dead letter as printed: payment tokens and emails masked (shared.masking), before the
    body is cut, so that no cut leaves part of one showing."""
    attrs = {k: v.get("StringValue") for k, v in message.get("MessageAttributes", {}).items()}
    error = attrs.get("dlq_error")
    return {
        "message_id": message["MessageId"],
        "event_type": attrs.get("event_type"),
        "dlq_reason": attrs.get("dlq_reason", "max_receive_count_exceeded"),
        "dlq_error": None if error is None else mask_text(error),
        "group_id": message["Attributes"].get("MessageGroupId"),
        "receive_count": message["Attributes"].get("ApproximateReceiveCount"),
        "body": mask_body(message["Body"])[:500],
    }


def _visible(sqs: Any, url: str) -> int:
    return inspect.depth(sqs, url).visible


def _list_fifo(sqs: Any, url: str) -> list[dict[str, Any]]:
    """Read every message of a FIFO DLQ by moving each read message to the end of its group.

    Each message read is sent again (same group, same body and attributes, marked with this
    listing's id, a fresh deduplication id), then the original is deleted: the group unlocks and
    shows its next messages, and its order is kept because copies are appended in order. A copy
    met again means the group has come round: it is held until the end. A failure part-way can
    leave a message twice in the DLQ, never lose one; the inbox absorbs a redriven twin.
    """
    listing = uuid.uuid4().hex
    listed: list[dict[str, Any]] = []
    held: list[dict[str, Any]] = []
    try:
        while batch := receive(sqs, url, visibility=60):
            for message in batch:
                attrs = message.get("MessageAttributes", {})
                if attrs.get(LISTING_ATTRIBUTE, {}).get("StringValue") == listing:
                    held.append(message)
                    continue
                sqs.send_message(QueueUrl=url, MessageBody=message["Body"],
                                 MessageAttributes=attrs | {LISTING_ATTRIBUTE: {
                                     "DataType": "String", "StringValue": listing}},
                                 MessageGroupId=message["Attributes"]["MessageGroupId"],
                                 MessageDeduplicationId=f"list-{uuid.uuid4().hex}")
                sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
                listed.append(message)
    finally:
        release(sqs, url, held)
    return listed


def dlq_redrive(settings: Settings, sqs: Any, spec: QueueSpec, out: Any = sys.stdout,
                timeout: float = 120) -> int:
    """Move every message of a queue's DLQ back to the queue."""
    dlq_url, url = _url(sqs, settings, spec.dlq_name), _url(sqs, settings, spec.name)
    print(f"redriving {physical(settings.school_env, spec.dlq_name)} -> "
          f"{physical(settings.school_env, spec.name)}", file=out)
    if spec.fifo:
        moved = redrive_fifo(sqs, dlq_url, url, out)
        print(f"completed: {moved} message(s) moved", file=out)
        return 0
    return redrive_with_move_task(sqs, dlq_url, url, out, timeout)


def redrive_fifo(sqs: Any, dlq_url: str, url: str, out: Any) -> int:
    """FIFO: resend each message in order, with its group and a new deduplication id.

    A FIFO queue drops a message whose deduplication id it saw in the last 5 minutes; a redriven
    message keeps its id under SQS's move task, and LocalStack then reports it moved while the
    queue silently discards it. One message at a time, deleted only once sent, keeps group order
    and loses nothing: a failure part-way leaves the rest in the DLQ.
    """
    return redrive_each(sqs, dlq_url, url, out, fifo=True)


def redrive_each(sqs: Any, dlq_url: str, url: str, out: Any, *, fifo: bool,
                 wait: int = 0) -> int:
    """Resend every message of a DLQ to its queue, then delete it: what `redrive_fifo` does, and
    for a standard DLQ the console's way (its own calls, through the VPC's endpoint, which a
    move task does not use). `wait` > 0 long-polls: on AWS a short poll of a standard queue asks
    only some of its servers and may come back empty while messages remain.

    Only what was in the DLQ when the redrive began moves: a message that fails again at once
    (a poison message) is back in the DLQ within a second, and moving it again would loop for
    as long as the worker keeps up. What arrived since is held and handed back at the end."""
    began = int(time.time() * 1000)
    moved, held = 0, []
    try:
        while batch := receive(sqs, dlq_url, visibility=60, wait=wait):
            for message in batch:
                if int(message["Attributes"].get("SentTimestamp", 0)) >= began:
                    held.append(message)
                    continue
                resend(sqs, url, message, fifo=fifo)
                sqs.delete_message(QueueUrl=dlq_url, ReceiptHandle=message["ReceiptHandle"])
                moved += 1
            print(f"  {moved} moved so far...", file=out)
    finally:
        release(sqs, dlq_url, held)
    return moved


def resend(sqs: Any, url: str, message: dict[str, Any], fifo: bool) -> None:
    """Send a dead-lettered message back to its queue without the attributes that say why it
    was dead-lettered; on FIFO in its group, under a new deduplication id (see redrive_fifo)."""
    attrs = {k: v for k, v in message.get("MessageAttributes", {}).items()
             if k not in DLQ_ATTRIBUTES}
    extra = {"MessageGroupId": message["Attributes"]["MessageGroupId"],
             "MessageDeduplicationId": f"redrive-{message['MessageId']}"} if fifo else {}
    sqs.send_message(QueueUrl=url, MessageBody=message["Body"], MessageAttributes=attrs, **extra)


def redrive_with_move_task(sqs: Any, dlq_url: str, url: str, out: Any, timeout: float) -> int:
    """Standard queues: SQS's own StartMessageMoveTask, polled until it ends."""
    dlq_arn, queue_arn = (sqs.get_queue_attributes(QueueUrl=u, AttributeNames=["QueueArn"])
                          ["Attributes"]["QueueArn"] for u in (dlq_url, url))
    task = sqs.start_message_move_task(SourceArn=dlq_arn, DestinationArn=queue_arn)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        tasks = sqs.list_message_move_tasks(SourceArn=dlq_arn)["Results"]
        mine = next((t for t in tasks if t.get("TaskHandle") == task["TaskHandle"]), tasks[0])
        moved = mine.get("ApproximateNumberOfMessagesMoved", 0)
        if mine["Status"] in ("COMPLETED", "FAILED", "CANCELLED"):
            print(f"{mine['Status'].lower()}: {moved} message(s) moved", file=out)
            if mine["Status"] != "COMPLETED":
                print(f"reason: {mine.get('FailureReason', 'unknown')}", file=sys.stderr)
                return 1
            return 0
        print(f"  {moved} moved so far...", file=out)
        time.sleep(1)
    print("the move task has not finished; `school status` shows its progress", file=sys.stderr)
    return 1


def receive(sqs: Any, url: str, visibility: int, wait: int = 0) -> list[dict[str, Any]]:
    reply = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=wait,
                                VisibilityTimeout=visibility, MessageSystemAttributeNames=["All"],
                                MessageAttributeNames=["All"])
    messages: list[dict[str, Any]] = reply.get("Messages", [])
    return messages


def _drain(sqs: Any, url: str, visibility: int) -> list[dict[str, Any]]:
    held: list[dict[str, Any]] = []
    while batch := receive(sqs, url, visibility):
        held.extend(batch)
    return held


def release(sqs: Any, url: str, messages: list[dict[str, Any]]) -> None:
    for start in range(0, len(messages), 10):
        entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0}
                   for i, m in enumerate(messages[start:start + 10])]
        sqs.change_message_visibility_batch(QueueUrl=url, Entries=entries)


CONSOLE_URL = f"http://127.0.0.1:{PORTS[CONSOLE]}"


def _seconds(ms: float | None) -> str:
    return "      -" if ms is None else f"{ms / 1000:+7.3f}s"


MARKS = {"handled": "handled", "retry": "retried", "duplicate": "duplicate",
         "released": "released", "dead_lettered": "DEAD-LETTERED", "waiting": "waiting"}


def tree(conversation: Mapping[str, Any]) -> str:
    """A conversation as the console assembles it (services/console/conversation.py), as a
    tree of hops, each with its time from the first span."""
    lines = [f"conversation {conversation['correlation_id']} "
             f"(started {conversation['started_at']})"]
    request = conversation.get("request")
    if request:
        lines.append(f"{_seconds(request['offset_ms'])}  {request['name']} -> "
                     f"{request['service']} ({request['status']}, {request['duration_ms']} ms)")
    for event in conversation["events"]:
        pad = "   " * event["depth"] + ("└─ " if event["depth"] or request else "")
        lines.append(f"{_seconds(event['offset_ms'])}  {pad}{event['event_type']}  "
                     f"by {event['producer']}")
        inner = "   " * (event["depth"] + (1 if event["depth"] or request else 0))
        for destination in event["destinations"]:
            lines.append(f"{_seconds(destination['published_ms'])}  {inner}  published to "
                         f"{destination['name']}")
        for handling in event["handlings"]:
            tries = handling["attempts"]
            if not tries:
                lines.append(f"{_seconds(None)}  {inner}  -> {handling['service']} "
                             f"({handling['queue']}): waiting")
            for attempt in tries:
                why = f": {attempt['detail']}" if attempt["detail"] else ""
                lines.append(f"{_seconds(attempt['offset_ms'])}  {inner}  -> "
                             f"{handling['service']} ({handling['queue']}): "
                             f"{MARKS.get(attempt['outcome'], attempt['outcome'])} in "
                             f"{attempt['duration_ms']} ms{why}")
    types = sorted({e["event_type"] for e in conversation["events"]})
    lines.append(f"{len(conversation['events'])} event(s): {', '.join(types)}")
    return "\n".join(lines)


def trace(correlation_id: str, console: str, out: Any = sys.stdout,
          token: str | None = None) -> int:
    """Print one conversation as the console has recorded it: a tree of hops, with times.
    The console's API is the operators': `token` is sent as the bearer token."""
    import requests

    url = f"{console.rstrip('/')}/api/conversations/{urllib.parse.quote(correlation_id, safe='')}"
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        # No redirect: the console sends an anonymous browser to its sign-in page.
        response = requests.get(url, headers=headers, timeout=10, allow_redirects=False)
    except requests.RequestException as exc:
        print(f"school: cannot reach the console at {console}: {exc}", file=sys.stderr)
        print("is the stack up (`make up`)? CONSOLE_URL or --console names another console",
              file=sys.stderr)
        return 1
    if response.status_code in (401, 403) or response.is_redirect:
        return _refused(response, token)
    if response.status_code == 404:
        print(f"school: the console has no event of conversation {correlation_id!r} (is it a "
              "correlation id, and did its processes export their spans to the console?)",
              file=sys.stderr)
        return 1
    if not response.ok:
        print(f"school: the console answered {response.status_code}: {response.text[:500]}",
              file=sys.stderr)
        return 1
    print(tree(response.json()), file=out)
    return 0


def _refused(response: Any, token: str | None) -> int:
    """The console refused the caller: say who they are, what is needed and how to get it."""
    if token is None:
        print(f"school: the console needs a signed-in {CONSOLE_ROLE}, and no token was sent "
              f"({TOKEN_ENV} is not set and there is no {token_file()})", file=sys.stderr)
    elif response.status_code == 403:
        print(f"school: the console's API needs the {CONSOLE_ROLE} role; the token sent is "
              f"{who(token)}", file=sys.stderr)
    else:
        try:
            detail = response.json().get("detail", "")
        except (ValueError, AttributeError):
            detail = ""
        print(f"school: the console refused the token of {who(token)} "
              f"({response.status_code}{': ' + detail if detail else ''})", file=sys.stderr)
    print(LOGIN_HINT, file=sys.stderr)
    return 1


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="school", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("status", help="every queue and DLQ: visible, in flight, oldest message age")
    sub.add_parser("provision", help="create or update the topic, queues and DLQs of SCHOOL_ENV "
                                     "(idempotent; what `make up` does, for other hosts)")
    dlq = sub.add_parser("dlq", help="dead-letter queues").add_subparsers(dest="action",
                                                                           required=True)
    box = sub.add_parser("outbox", help="outbox rows SQS or SNS refused for ever (dead rows)"
                         ).add_subparsers(dest="action", required=True)
    services = outbox_admin.producers()
    box.add_parser("list", help="show a service's dead outbox rows and why").add_argument(
        "service", choices=services)
    retry = box.add_parser("retry", help="hand a service's dead rows back to its relay, once "
                                         "the cause is fixed (all, or --id ...)")
    retry.add_argument("service", choices=services)
    retry.add_argument("--id", dest="ids", type=int, action="append", default=[],
                       help="only this row (repeatable)")
    tracing = sub.add_parser("trace", help="one conversation, as the console recorded it: "
                                           "every event and hop, with its time (an operator's: "
                                           "school login --as operator)")
    tracing.add_argument("correlation_id", help="the conversation's correlation id "
                                                "(X-Correlation-ID)")
    tracing.add_argument("--console", default=os.environ.get("CONSOLE_URL") or CONSOLE_URL,
                         help=f"the console's URL (CONSOLE_URL; default {CONSOLE_URL})")
    _sign_in_parsers(sub)
    names = [q.name for q in TOPOLOGY.queues]
    for action, text in (("list", "show the messages of a queue's DLQ"),
                         ("redrive", "move a queue's DLQ messages back to the queue")):
        dlq.add_parser(action, help=text).add_argument("queue", choices=names, metavar="queue",
                                                       help=f"one of: {', '.join(names)}")
    return p


def _sign_in_parsers(sub: Any) -> None:
    where = f"{TOKEN_FILE_ENV}, else $XDG_CONFIG_HOME/school/token (~/.config/school/token)"
    login_ = sub.add_parser("login", help="mint a token from the local development issuer and "
                                          f"store it (in {where}, mode 0600)")
    login_.add_argument("--as", dest="role", required=True, choices=ROLES,
                        help="the role (cognito:groups) of the token")
    login_.add_argument("--sub", type=subject, help="the subject (a student's id is their "
                        "subject); default <role>-local, e.g. operator-local")
    login_.add_argument("--issuer", help="the local issuer's URL (default OIDC_ISSUER, else "
                                         "http://127.0.0.1:ISSUER_PORT, port "
                                         f"{PORTS['issuer']})")
    login_.add_argument("--expires-in", type=int, metavar="SECONDS",
                        help="the token's lifetime (default: the issuer's, an hour)")
    sub.add_parser("logout", help="remove the stored token")


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        if args.command == "login":
            return login(args.role, args.sub, args.issuer or default_issuer(),
                         args.expires_in)
        if args.command == "logout":
            return logout()
        if args.command == "trace":
            return trace(args.correlation_id, args.console, token=current_token())
        settings = Settings.from_env()
        sqs = aws.client("sqs", settings)
        if args.command == "status":
            return status(settings, sqs)
        if args.command == "provision":
            return provision(settings, sqs)
        if args.command == "outbox":
            return outbox(settings, args.action, args.service, getattr(args, "ids", []))
        spec = TOPOLOGY.queue(args.queue)
        action = dlq_list if args.action == "list" else dlq_redrive
        return action(settings, sqs, spec)
    except SignInError as exc:
        print(f"school: {exc}", file=sys.stderr)
        return exc.code
    except ConfigError as exc:
        print(f"school: {exc}", file=sys.stderr)
        return 2
    except SQLAlchemyError as exc:
        print(f"school: cannot read a service database: {exc}", file=sys.stderr)
        return 1
    except (BotoCoreError, ClientError) as exc:
        print(f"school: cannot reach SQS at {Settings.from_env().aws_endpoint_url or 'AWS'} "
              f"in {Settings.from_env().school_env!r}: {exc}", file=sys.stderr)
        print("is the stack up (`make up`) and provisioned?", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
