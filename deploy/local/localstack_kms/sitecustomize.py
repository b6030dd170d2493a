"""Loaded by the LocalStack process when a test asks it for KMS (deploy/local/localstack.py).

LocalStack 4.13.1, the last release that runs on Python 3.11 (the project's), names each key's
material with `uuid.uuid5(namespace, key_material)`, passing bytes. Python 3.12 accepts bytes
there; 3.11 raises "encoding without a string argument", so every kms:CreateKey fails. This gives
3.11's uuid5 the 3.12 behaviour for bytes, and changes nothing for a str."""

from __future__ import annotations

import hashlib
import uuid

_uuid5 = uuid.uuid5


def _uuid5_accepting_bytes(namespace: uuid.UUID, name: str | bytes) -> uuid.UUID:
    if isinstance(name, bytes):
        digest = hashlib.sha1(namespace.bytes + name, usedforsecurity=False).digest()
        return uuid.UUID(bytes=digest[:16], version=5)
    return _uuid5(namespace, name)


uuid.uuid5 = _uuid5_accepting_bytes  # type: ignore[assignment]
