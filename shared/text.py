"""What a name or a title may hold: printable text, never a control character.

A name travels into email headers (`To: Ada <ada@example.com>`), log lines and operators' pages.
A line break in it would start a new header (`Eve\\r\\nBcc: ...`), so the API and the event
schemas refuse every control character alike: C0 (U+0000 to U+001F, tab and line breaks
included), DEL (U+007F) and C1 (U+0080 to U+009F, NEL among them)."""

from __future__ import annotations

import re

from marshmallow import ValidationError, validate

CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
MESSAGE = "must not contain control characters (U+0000-U+001F, U+007F-U+009F)"


def control_characters(text: str) -> list[str]:
    """The control characters of `text`, as U+XXXX, in order of first appearance."""
    return list(dict.fromkeys(f"U+{ord(c):04X}" for c in CONTROL.findall(text)))


class Printable(validate.Validator):
    """A marshmallow validator refusing any control character, naming the ones found."""

    def __call__(self, value: str) -> str:
        if isinstance(value, str) and (found := control_characters(value)):
            raise ValidationError(f"{MESSAGE}; found {', '.join(found)}")
        return value
