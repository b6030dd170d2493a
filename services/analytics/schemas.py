"""The analytics API's bodies."""

from __future__ import annotations

from marshmallow import Schema, fields


class SummaryOut(Schema):
    events_by_type = fields.Dict(keys=fields.String(), values=fields.Integer(), metadata={
        "description": "how many events of each type were counted (each exactly once)"})
    revenue_cents_by_currency = fields.Dict(keys=fields.String(), values=fields.Integer(),
                                            metadata={"description": "charged minus refunded"})
    average_score = fields.Float(allow_none=True, metadata={
        "description": "mean score of every graded submission version; null before any"})
    events_processed = fields.Integer()
    duplicates_absorbed = fields.Integer(metadata={
        "description": "deliveries of an already counted event, absorbed by the inbox"})
