"""Access tokens for tests that need no issuer process: an RSA key of the test's own, tokens
shaped like Cognito's, and a Verifier that knows the key (unit tests have no network)."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from shared.access import Gate
from shared.auth import KeySet, Unauthenticated, Verifier

ISSUER = "http://127.0.0.1:9/test-issuer"  # never fetched: StaticKeys answers for it
CLIENT = "school-test"


def new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@dataclass
class Signer:
    """Signs tokens with its key under `kid`, as the issuer would."""

    key: rsa.RSAPrivateKey = field(default_factory=new_key)
    kid: str = field(default_factory=lambda: uuid.uuid4().hex)

    def claims(self, sub: str, groups: list[str], **overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        claims = {"sub": sub, "iss": ISSUER, "client_id": CLIENT, "token_use": "access",
                  "cognito:groups": groups, "iat": now, "auth_time": now, "exp": now + 600,
                  "jti": str(uuid.uuid4()), "username": sub, "scope": "openid"}
        claims.update(overrides)
        return {name: value for name, value in claims.items() if value is not None}

    def token(self, sub: str, *groups: str, headers: dict[str, Any] | None = None,
              **overrides: Any) -> str:
        return jwt.encode(self.claims(sub, list(groups), **overrides), self.key,
                          algorithm="RS256", headers={"kid": self.kid, **(headers or {})})

    def jwk(self) -> dict[str, Any]:
        public = jwt.PyJWK.from_dict({**jwt.algorithms.RSAAlgorithm.to_jwk(
            self.key.public_key(), as_dict=True), "kid": self.kid, "alg": "RS256"})
        return dict(public._jwk_data)


class StaticKeys(KeySet):
    """The signer's key, as if fetched from the issuer's JWKS."""

    def __init__(self, signer: Signer) -> None:
        super().__init__(ISSUER)
        self.signer = signer

    def key(self, kid: str) -> jwt.PyJWK:
        if kid != self.signer.kid:
            raise Unauthenticated("The token is signed by a key the issuer does not publish.")
        return jwt.PyJWK.from_dict(self.signer.jwk())


def verifier(signer: Signer) -> Verifier:
    return Verifier(ISSUER, [CLIENT], StaticKeys(signer))


def gate(signer: Signer | None = None) -> Gate:
    return Gate(verifier(signer or Signer()))
