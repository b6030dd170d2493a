"""marshmallow fields the services' HTTP schemas share."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from marshmallow import fields, validate


class UtcDateTime(fields.DateTime):
    """ISO 8601 in UTC with a Z; SQLite hands back naive datetimes, which are UTC here."""

    def _serialize(self, value: Any, attr: Any, obj: Any, **kwargs: Any) -> str | None:
        if value is None:
            return None
        if isinstance(value, datetime) and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return str(value.astimezone(UTC).isoformat(timespec="milliseconds")).replace(
            "+00:00", "Z")


def Name(**kwargs: Any) -> fields.String:  # noqa: N802 - reads like a field class
    """A required name or title: 1 to 200 characters, not blank."""
    rules = [validate.Length(min=1, max=200), validate.Regexp(r"\S", error="must not be blank")]
    return fields.String(required=True, validate=rules, **kwargs)


def Ref(required: bool = True, **kwargs: Any) -> fields.String:  # noqa: N802
    """An id of another record (required unless said otherwise)."""
    return fields.String(required=required, validate=validate.Length(min=1, max=64), **kwargs)
