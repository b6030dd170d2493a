"""The analytics service's tables: its own database, never read by another service."""

from __future__ import annotations

from sqlalchemy import MetaData

from shared.tables import inbox_table

metadata = MetaData()
inbox = inbox_table(metadata)
