"""marshmallow fields the services' HTTP schemas share, and the platform routes' bodies.

Every string a client sends goes through `Text`: PostgreSQL cannot store a NUL character in a text
column (psycopg refuses it), and a lone surrogate (a JSON "\\ud800" escape) cannot be encoded for
either database, so both are a 422 here rather than a database error (a 500) later."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from marshmallow import Schema, ValidationError, fields, validate
from marshmallow_sqlalchemy import ModelConverter, SQLAlchemyAutoSchema

from shared.auth import SUBJECT
from shared.db import utc
from shared.text import Printable

# NUL and the UTF-16 surrogate range: valid in a JSON string, impossible to store.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
ID_MAX = 64  # the String(64) id columns of every service's tables
NAME_MAX = 200  # the String(200) name and title columns


class Text(fields.String):
    """A string that both databases can store."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        text = super()._deserialize(value, attr, data, **kwargs)
        if _UNSTORABLE.search(text):
            raise ValidationError("must not contain NUL characters or lone surrogates")
        return text


class UtcDateTime(fields.DateTime):
    """ISO 8601 in UTC with a Z; SQLite hands back naive datetimes, which are UTC here."""

    def _serialize(self, value: Any, attr: Any, obj: Any, **kwargs: Any) -> str | None:
        if value is None:
            return None
        if isinstance(value, datetime):
            value = utc(value)
        return str(value.astimezone(UTC).isoformat(timespec="milliseconds")).replace(
            "+00:00", "Z")


def _not_blank(value: str) -> None:
    if not value.strip():
        raise ValidationError("must not be blank")


def Name(**kwargs: Any) -> fields.String:  # noqa: N802 - reads like a field class
    """A required name or title: 1 to 200 characters, not blank, no control character."""
    rules: list[Callable[[Any], Any]] = [validate.Length(min=1, max=NAME_MAX), _not_blank,
                                         Printable()]
    return Text(required=True, validate=rules, **kwargs)


def Ref(required: bool = True, **kwargs: Any) -> fields.String:  # noqa: N802
    """An id of another record (required unless said otherwise), as long as an id column."""
    return Text(required=required, validate=validate.Length(min=1, max=ID_MAX), **kwargs)


def Subject(required: bool = True, **kwargs: Any) -> fields.String:  # noqa: N802
    """A person's subject at the identity provider, used as their record's id: what a path can
    carry (shared.web.IdConverter), so 1 to 64 characters without '/' or control characters."""
    return Text(required=required, validate=[validate.Length(min=1, max=ID_MAX), validate.Regexp(
        rf"(?:{SUBJECT.pattern})\Z", error="must not contain '/' or control characters")],
        **kwargs)


_EARLIEST, _LATEST = datetime(1900, 1, 1, tzinfo=UTC), datetime(9000, 1, 1, tzinfo=UTC)


def _storable_instant(value: datetime) -> None:
    if not _EARLIEST <= value <= _LATEST:
        raise ValidationError("must be between the years 1900 and 9000")


def Instant(**kwargs: Any) -> fields.AwareDateTime:  # noqa: N802
    """An ISO 8601 date-time with an offset, between the years 1900 and 9000, so that its UTC
    form exists (0001-01-01T00:00+05:00 has none) and both databases can store it."""
    return fields.AwareDateTime(format="iso", validate=_storable_instant, **kwargs)


class ProblemSchema(Schema):
    """The documented shape of every error (RFC 9457)."""

    type = fields.String(required=True)
    title = fields.String(required=True)
    status = fields.Integer(required=True)
    detail = fields.String(required=True)
    errors = fields.Dict(metadata={"description": "per field, on a 422"})


class NotReadySchema(ProblemSchema):
    failed = fields.Dict(keys=fields.String(), values=fields.String(), required=True,
                         metadata={"description": "each failed check and its error type"})


class HealthSchema(Schema):
    status = fields.String(required=True)


class ReadySchema(Schema):
    status = fields.String(required=True)
    checks = fields.List(fields.String(), required=True)


class _Converter(ModelConverter):
    SQLA_TYPE_MAPPING = {**ModelConverter.SQLA_TYPE_MAPPING, sa.DateTime: UtcDateTime}


class RowOut(SQLAlchemyAutoSchema):
    """A response body that is a row of one of the service's tables: each field's type and
    nullability come from its column (marshmallow-sqlalchemy), so they are written once, in
    tables.py. A subclass names the table in `Meta.table`, leaves out what a client must not see
    with `Meta.exclude`, and declares only the fields that are not a column as it is."""

    class Meta:
        include_fk = True
        model_converter = _Converter
