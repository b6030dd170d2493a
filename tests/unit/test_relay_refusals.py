"""How the relay sorts what SQS refuses, with a fake SQS and an SQLite file: a row refused for
now backs off and holds back only its own FIFO group (the refusals LocalStack cannot be made to
give; the permanent ones are tested against LocalStack in tests/integration/test_outbox.py)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from sqlalchemy import MetaData, select, update

from shared import db
from shared.backoff import Backoff
from shared.envelope import Envelope
from shared.outbox import Outbox, Relay
from shared.publisher import Publisher
from shared.tables import outbox_table
from shared.topology import QueueSpec, TopicSpec, Topology

TOPOLOGY = Topology(TopicSpec("t"), (QueueSpec("q.fifo", "x", 3, 30, events=("e",),
                                               group_by=("group",)),))


class FakeSqs:
    """Refuses the first send of group `flaky` as SQS's fault (SenderFault false)."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.refused = 0

    def get_queue_url(self, QueueName: str) -> dict[str, str]:  # noqa: N803
        return {"QueueUrl": QueueName}

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]  # noqa: N803
                           ) -> dict[str, Any]:
        reply: dict[str, Any] = {"Successful": [], "Failed": []}
        for entry in Entries:
            if entry["MessageGroupId"] == "flaky" and not self.refused:
                self.refused += 1
                reply["Failed"].append({"Id": entry["Id"], "SenderFault": False,
                                        "Code": "InternalError", "Message": "try again"})
            else:
                data = json.loads(entry["MessageBody"])["data"]
                self.sent.append(f"{data['group']}{data['n']}")
                reply["Successful"].append({"Id": entry["Id"]})
        return reply


class FakeSns:
    meta = SimpleNamespace(region_name="us-east-1")

    def publish_batch(self, TopicArn: str, PublishBatchRequestEntries: list[Any]  # noqa: N803
                      ) -> dict[str, Any]:
        return {"Successful": [{"Id": e["Id"]} for e in PublishBatchRequestEntries]}


class FakeSts:
    def get_caller_identity(self) -> dict[str, str]:
        return {"Account": "000000000000", "Arn": "arn:aws:iam::000000000000:root"}


def test_a_row_refused_for_now_backs_off_and_holds_back_only_its_group(tmp_path: Path) -> None:
    engine = db.make_engine(f"sqlite:///{tmp_path / 'o.sqlite'}")
    table = outbox_table(MetaData())
    table.create(engine)
    outbox = Outbox(table, TOPOLOGY)
    with db.session_factory(engine)() as session, session.begin():
        for group, n in (("flaky", 1), ("flaky", 2), ("calm", 1)):
            outbox.add(session, Envelope("e", 1, {"group": group, "n": n}, "x"))
    sqs = FakeSqs()
    relay = Relay(engine, table, Publisher(sqs, FakeSns(), TOPOLOGY, "env", sts=FakeSts()),
                  row_backoff=Backoff(base=60, cap=60, jitter=lambda: 1.0))
    for _ in range(3):
        relay.run_once()
    assert sqs.sent == ["calm1"]  # flaky1 waits in backoff, and flaky2 behind it
    with engine.connect() as conn:
        waiting = conn.execute(select(table).where(table.c.destination == "q.fifo",
                                                   table.c.published_at.is_(None))
                               .order_by(table.c.id)).all()
    assert [r.dead_at for r in waiting] == [None, None]
    assert waiting[0].next_attempt_at is not None and waiting[0].last_error.startswith(
        "InternalError")
    assert relay.dead_rows() == 0
    with engine.begin() as conn:  # the backoff has passed
        conn.execute(update(table).values(next_attempt_at=datetime.now(UTC) - timedelta(1)))
    while relay.run_once():
        pass
    assert sqs.sent == ["calm1", "flaky1", "flaky2"]  # the group's order kept
    engine.dispose()
