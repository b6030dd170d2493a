"""The deleter's failures are its own (a failed delete was once logged as a failed
receive): a refused DeleteMessageBatch is logged as a delete, retried, and nothing is lost."""

from __future__ import annotations

import logging
import threading
from typing import Any

import pytest
from botocore.exceptions import ClientError

from shared.acks import Deleter, Heartbeat


class FlakySqs:
    """Refuses the first `refusals` DeleteMessageBatch calls, then deletes."""

    def __init__(self, refusals: int) -> None:
        self.refusals = refusals
        self.deleted: list[str] = []

    def delete_message_batch(self, QueueUrl: str, Entries: list[Any]) -> dict[str, Any]:  # noqa: N803
        if self.refusals:
            self.refusals -= 1
            raise ClientError({"Error": {"Code": "ServiceUnavailable", "Message": "try later"}},
                              "DeleteMessageBatch")
        self.deleted += [e["ReceiptHandle"] for e in Entries]
        return {"Successful": [{"Id": e["Id"]} for e in Entries]}


def test_a_refused_delete_is_logged_as_a_delete_and_retried(
        caplog: pytest.LogCaptureFixture) -> None:
    sqs = FlakySqs(refusals=2)
    deleter = Deleter(sqs, "queue", Heartbeat(sqs, "queue", 30), linger=0.0)
    for n in range(3):
        deleter.add({"ReceiptHandle": f"r{n}", "MessageId": f"m{n}"})
    stop = threading.Event()
    thread = threading.Thread(target=deleter.run, args=(stop,))
    with caplog.at_level(logging.WARNING, logger="shared.acks"):
        thread.start()
        stop.set()  # run() still sends what is pending before it returns
        thread.join(timeout=10)
    assert not thread.is_alive()
    assert sorted(sqs.deleted) == ["r0", "r1", "r2"]
    warnings = [r.getMessage() for r in caplog.records]
    assert sum("deleting 3 handled message(s) failed" in w for w in warnings) == 2
    assert not any("receiv" in w for w in warnings)
