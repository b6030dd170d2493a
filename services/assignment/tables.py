"""The assignment service's tables: its own database, never read by another service."""

from __future__ import annotations

from sqlalchemy import MetaData

from shared.tables import inbox_table, outbox_table

metadata = MetaData()
outbox = outbox_table(metadata)
inbox = inbox_table(metadata)
