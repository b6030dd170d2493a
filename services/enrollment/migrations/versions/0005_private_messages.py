"""outbox rows still pending from before the private messages: nothing personal to the topic

Before this revision enrollment.requested (v1, v2) carried the payment token and
student.registered (v1) the name and email, and both were published on the topic. A row of
either still unpublished at the upgrade would put them there. Its topic row is rewritten to the
new version (enrollment.requested v3, student.registered v2: ids only). Its direct row to
payment-requests.fifo keeps the old body, which payment reads as a charge; a registration gets
a contact.recorded row to the notifications queue, which notification needs. Published rows,
kept only for the purge, are left as they are. Nothing is undone on downgrade: the older code
reads the newer versions as poison, so a downgrade must come with the older catalogue's relay
drained first."""

from __future__ import annotations

import json
import uuid
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "enrollment_0005"
down_revision = "enrollment_0004"

TOPIC = "school-events"
CONTACTS = "notifications"


def _pending(conn: sa.Connection, event_type: str) -> list[Any]:
    return list(conn.execute(sa.text(
        "SELECT id, dedup_id, event_id, body, attributes, created_at FROM outbox "
        "WHERE destination = :topic AND event_type = :type AND published_at IS NULL"),
        {"topic": TOPIC, "type": event_type}).all())


def _rewrite(conn: sa.Connection, row: Any, envelope: dict[str, Any]) -> None:
    attributes = json.loads(row.attributes)
    attributes["event_version"]["StringValue"] = str(envelope["event_version"])
    conn.execute(sa.text("UPDATE outbox SET body = :body, attributes = :attributes "
                         "WHERE id = :id"),
                 {"body": json.dumps(envelope), "attributes": json.dumps(attributes),
                  "id": row.id})


def _requested_v3(data: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in data.items() if k not in ("payment_token", "price")}
    if "price" in data:  # v1: a USD decimal string
        out |= {"amount_cents": int(Decimal(str(data["price"])) * 100), "currency": "USD"}
    return out


def upgrade() -> None:
    conn = op.get_bind()
    for row in _pending(conn, "enrollment.requested"):
        envelope = json.loads(row.body)
        if envelope["event_version"] < 3:
            _rewrite(conn, row, envelope | {"event_version": 3,
                                            "data": _requested_v3(envelope["data"])})
    for row in _pending(conn, "student.registered"):
        envelope = json.loads(row.body)
        if envelope["event_version"] >= 2:
            continue
        data = envelope["data"]
        contact = envelope | {"event_id": str(uuid.uuid4()), "event_type": "contact.recorded",
                              "event_version": 1, "causation_id": envelope["event_id"]}
        attributes = json.loads(row.attributes)
        attributes["event_type"]["StringValue"] = "contact.recorded"
        attributes["event_version"]["StringValue"] = "1"
        conn.execute(sa.text(
            "INSERT INTO outbox (destination, group_id, dedup_id, event_id, event_type, body, "
            "attributes, created_at, attempts) VALUES (:destination, NULL, :event_id, "
            ":event_id, 'contact.recorded', :body, :attributes, :created_at, 0)"),
            {"destination": CONTACTS, "event_id": contact["event_id"],
             "body": json.dumps(contact), "attributes": json.dumps(attributes),
             "created_at": row.created_at})
        _rewrite(conn, row, envelope | {"event_version": 2,
                                        "data": {"student_id": data["student_id"]}})


def downgrade() -> None:
    """Nothing to undo: see the module's docstring."""
