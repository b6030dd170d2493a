"""What an operator is shown of a dead letter: its body with payment tokens and emails masked
(an operator needs neither), field by field, the rest left readable. For display only: a
redrive moves the original message, never what this returns.

The rule, in one place:

- A value under a key that names a secret or a contact (`SECRET_KEYS`, `CONTACT_KEYS`, any key
  ending in one of `SENSITIVE_SUFFIXES`; compared in snake case, so `paymentToken`,
  `Payment-Token` and `payment_token` are one key) becomes `MASK`, whatever it held (a string, a
  number, a list, an object). A null stays null: there was nothing to hide.
- Anywhere else, in any string, under any key: an email address becomes `MASKED_EMAIL`, and a
  word shaped like the payment gateway's tokens (`tok_...`) becomes `MASK`. Payment tokens are
  otherwise opaque (any string of up to 64 characters), so the key is what finds them; ids are
  never touched.
- Nothing of a masked value is kept, not a token's prefix (the simulator's `tok_ok`,
  `tok_declined` say how a payment ends) nor an email's domain (a personal domain names its
  owner): only that something was there.

A body is walked as JSON: objects, lists, and strings that are themselves JSON documents (SNS's
`Message` when raw delivery is off), and is given back re-serialized compactly, keys in their
order. A body that is not JSON at all (a poison message) is masked as text: email addresses,
`tok_` words, and the values of `key=value` or `"key": "value"` pairs whose key is one of the
above (in text, also any word ending in `token`, `email`, `secret` or `password`); the rest of
it is kept as it was. Error texts shown beside a dead letter (`dlq_error`, a conversation's
attempt details) are masked as text the same way.
"""

from __future__ import annotations

import json
import re
from typing import Any

MASK = "***"
MASKED_EMAIL = "***@***"
SECRET_KEYS = frozenset({"payment_token", "token", "password", "secret", "authorization",
                         "card_number", "cvc"})
CONTACT_KEYS = frozenset({"email", "email_address", "to", "recipient", "recipients", "cc",
                          "bcc", "reply_to", "phone"})
SENSITIVE_SUFFIXES = ("_token", "_email", "_secret", "_password")

EMAIL = re.compile(r"[\w.%+-]+(?:@|%40)[\w-]+(?:\.[\w-]+)+")
PAYMENT_TOKEN = re.compile(r"\btok_\w+")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_KEYS = "|".join(map(re.escape, sorted(SECRET_KEYS | CONTACT_KEYS, key=len, reverse=True)))
_SUFFIXES = "|".join(s.lstrip("_") for s in SENSITIVE_SUFFIXES)
# `key=value`, `key: value`, `"key": "value"` (also `\"key\": \"value\"`, as in a JSON string
# inside a broken body): the key and separator, then the value, quoted or bare. A quoted value
# cut short by a truncated body runs to its end. In text a key need not be snake case: any word
# ending in a suffix's word (`paymentToken`, `Email`) counts.
_PAIR = re.compile(
    rf"""(?P<key>(?<![\w-])\\?["']?(?:[\w-]*(?:{_SUFFIXES})|{_KEYS})\\?["']?\s*[:=]\s*)"""
    r"""(?P<value>\\"(?:(?!\\").)*(?:\\"|$)|"(?:[^"\\]|\\.)*(?:"|$)|'(?:[^'\\]|\\.)*(?:'|$)"""
    r"""|[^\s,;&}\]"'\\]+)""",
    re.IGNORECASE | re.DOTALL)


def sensitive(key: str) -> bool:
    """Whether a field's value is a secret or a contact, whatever it holds."""
    name = _CAMEL.sub("_", key).lower().replace("-", "_")
    return name in SECRET_KEYS or name in CONTACT_KEYS or name.endswith(SENSITIVE_SUFFIXES)


def mask_body(body: str) -> str:
    """The body as an operator may see it: JSON masked field by field and re-serialized
    compactly in its key order; anything else masked as text."""
    try:
        return _dumps(_walk(json.loads(body)))
    except (ValueError, RecursionError):  # not JSON (poison), or nested too deep to walk
        return mask_text(body)


def mask_text(text: str) -> str:
    """Free text (a poison body, an error message) with its emails, tokens and the values of
    sensitive `key=value` pairs masked; everything else as it was."""
    text = _PAIR.sub(_masked_pair, text)
    return PAYMENT_TOKEN.sub(MASK, EMAIL.sub(MASKED_EMAIL, text))


def _masked_pair(match: re.Match[str]) -> str:
    value = match["value"]
    quote = next((q for q in ('\\"', '"', "'") if value.startswith(q)), "")
    closed = quote if len(value) > len(quote) and value.endswith(quote) else ""
    return f"{match['key']}{quote}{MASK}{closed}"


def _walk(value: Any) -> Any:
    """Masked values of sensitive keys; every other string as text, keys too (a body may be
    keyed by address)."""
    if isinstance(value, dict):
        return {mask_text(k): MASK if sensitive(k) and v is not None else _walk(v)
                for k, v in value.items()}
    if isinstance(value, list):
        return [_walk(v) for v in value]
    if isinstance(value, str):
        return _string(value)
    return value


def _string(value: str) -> str:
    """A string that is itself a JSON object or list (an SNS `Message`) is masked as JSON and
    stays a string; any other string as text."""
    if value.lstrip()[:1] in ("{", "["):
        try:
            inner = json.loads(value)
        except ValueError:
            return mask_text(value)
        if isinstance(inner, dict | list):
            return _dumps(_walk(inner))
    return mask_text(value)


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
