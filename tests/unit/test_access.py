"""The access check on a small app: every token attack is a 401, a malformed Authorization header
is a 401 problem, keys that cannot be fetched are a 503, roles and reach decide the rest, and a
route without a rule is refused to everyone."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from flask import Flask
from flask.testing import FlaskClient
from flask_smorest import Blueprint

from shared import auth
from shared.access import ANY, CREATED, SELF, Gate, allow, current, public
from shared.auth import Verifier
from shared.web import create_app
from tests.support.identity import CLIENT, ISSUER, Signer, StaticKeys, new_key, verifier

PROBLEM = "application/problem+json"


def probe_app(gate: Gate) -> Flask:
    bp = Blueprint("probe", __name__)

    @bp.route("/open")
    @public
    def open_() -> Any:
        return {"who": current().actor}

    @bp.route("/mine/<student_id>")
    @allow(student=SELF, instructor=CREATED, admin=ANY, acts_as="student_id")
    def mine(student_id: str) -> Any:
        who = current()
        return {"who": who.actor, "reach": who.reach, "own": who.own, "creator": who.creator}

    @bp.route("/admins", methods=["POST"])
    @allow(admin=ANY)
    def admins() -> Any:
        return {"ok": True}

    @bp.route("/forgotten")
    def forgotten() -> Any:  # no rule: default deny
        return {"leaked": True}

    return create_app("probe", [bp], {}, gate=gate)


@pytest.fixture(scope="module")
def signer() -> Signer:
    return Signer()


@pytest.fixture(scope="module")
def client(signer: Signer) -> FlaskClient:
    return probe_app(Gate(verifier(signer))).test_client()


def get(client: FlaskClient, path: str, token: str | None = None, **headers: str) -> Any:
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return client.get(path, headers=headers)


def assert_401(reply: Any) -> dict[str, Any]:
    assert reply.status_code == 401, reply.get_data(as_text=True)
    assert reply.mimetype == PROBLEM
    assert reply.headers["WWW-Authenticate"].startswith("Bearer")
    body: dict[str, Any] = reply.get_json(force=True)
    assert body["status"] == 401 and body["title"] == "Unauthorized" and body["detail"]
    return body


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forged(header: dict[str, Any], claims: dict[str, Any], sign: Any = None) -> str:
    """A JWS built by hand, as an attacker would: `sign(signing_input) -> bytes`."""
    head = b64(json.dumps(header).encode()) + "." + b64(json.dumps(claims).encode())
    return head + "." + (b64(sign(head.encode())) if sign else "")


def test_a_valid_token_passes_and_names_its_caller(client: FlaskClient, signer: Signer) -> None:
    reply = get(client, "/mine/stu-1", signer.token("stu-1", "student"))
    assert reply.status_code == 200
    assert reply.get_json() == {"who": "stu-1", "reach": SELF, "own": "stu-1", "creator": None}


def attacks(signer: Signer) -> dict[str, str]:
    """Tokens for `stu-1` that must each be refused."""
    claims = signer.claims("stu-1", ["student"])
    public_pem = signer.key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    valid = signer.token("stu-1", "student")
    head, _, signature = valid.split(".")
    tampered = b64(json.dumps(claims | {"cognito:groups": ["admin"]}).encode())
    return {
        "alg none": forged({"alg": "none", "typ": "JWT", "kid": signer.kid}, claims),
        "HS256 with the public key": forged(
            {"alg": "HS256", "typ": "JWT", "kid": signer.kid}, claims,
            lambda data: hmac.new(public_pem, data, hashlib.sha256).digest()),
        "another RSA key under the same kid": Signer(new_key(), signer.kid).token(
            "stu-1", "student"),
        "expired": signer.token("stu-1", "student", exp=int(time.time()) - 120),
        "wrong iss": signer.token("stu-1", "student", iss="https://evil.example"),
        "wrong client_id": signer.token("stu-1", "student", client_id="someone-else"),
        "client_id as a list": signer.token("stu-1", "student", client_id=[CLIENT]),
        "groups not a list": jwt.encode(claims | {"cognito:groups": "admin"}, signer.key,
                                        algorithm="RS256", headers={"kid": signer.kid}),
        "token_use id": signer.token("stu-1", "student", token_use="id"),
        "payload changed after signing": f"{head.split('.')[0]}.{tampered}.{signature}",
        "no kid": jwt.encode(claims, signer.key, algorithm="RS256"),
        "unknown kid": signer.token("stu-1", "student", headers={"kid": "not-a-key"}),
        "RS512": jwt.encode(claims, signer.key, algorithm="RS512",
                            headers={"kid": signer.kid}),
        "no exp": signer.token("stu-1", "student", exp=None),
        "sub with a slash": signer.token("a/b", "student"),
    }


@pytest.mark.parametrize("attack", list(attacks(Signer())))
def test_every_token_attack_is_a_401(client: FlaskClient, signer: Signer, attack: str) -> None:
    token = attacks(signer)[attack]
    body = assert_401(get(client, "/mine/stu-1", token))
    assert token not in json.dumps(body)


@pytest.mark.parametrize("header", [
    "Basic dXNlcjpwYXNz", "", "Bearer", "Bearer ", "bearer a.b.c", "Bearer a.b.c d.e.f",
    "Bearer a.b", "Bearer " + "x" * 10_240, "Bearer a.b.c\u00e9", "Token a.b.c",
])
def test_a_malformed_authorization_header_is_a_401_problem(client: FlaskClient,
                                                           header: str) -> None:
    headers = {"Authorization": header.encode("utf-8").decode("latin-1")}
    assert_401(client.get("/mine/stu-1", headers=headers))


def test_no_token_is_a_401_with_a_plain_bearer_challenge(client: FlaskClient) -> None:
    reply = get(client, "/mine/stu-1")
    assert_401(reply)
    assert reply.headers["WWW-Authenticate"] == "Bearer"


def test_a_public_route_needs_no_token(client: FlaskClient) -> None:
    assert get(client, "/open").get_json() == {"who": None}
    assert get(client, "/healthz").status_code == 200


def test_a_route_without_a_rule_is_refused_to_everyone(client: FlaskClient,
                                                       signer: Signer) -> None:
    for token in (None, signer.token("root", "admin", "operator", "student", "instructor")):
        reply = get(client, "/forgotten", token)
        assert reply.status_code == 403 and reply.mimetype == PROBLEM
        assert "leaked" not in reply.get_data(as_text=True)


@pytest.mark.parametrize(("groups", "status"), [
    ((), 403), (("operator",), 403), (("student",), 403), (("instructor",), 403),
    (("admin",), 200), (("student", "admin"), 200),
])
def test_roles_decide_who_may_call(client: FlaskClient, signer: Signer,
                                   groups: tuple[str, ...], status: int) -> None:
    reply = client.post("/admins", headers={
        "Authorization": f"Bearer {signer.token('someone', *groups)}"})
    assert reply.status_code == status


def test_a_student_acting_as_another_is_a_403(client: FlaskClient, signer: Signer) -> None:
    reply = get(client, "/mine/stu-2", signer.token("stu-1", "student"))
    assert reply.status_code == 403 and "themselves" in reply.get_json()["detail"]


def test_the_widest_reach_of_the_caller_s_roles_applies(client: FlaskClient,
                                                        signer: Signer) -> None:
    instructor = get(client, "/mine/stu-2", signer.token("ins-1", "instructor")).get_json()
    assert (instructor["reach"], instructor["creator"], instructor["own"]) == (
        CREATED, "ins-1", None)
    admin = get(client, "/mine/stu-2", signer.token("stu-1", "student", "admin")).get_json()
    assert (admin["reach"], admin["own"]) == (ANY, None)


@pytest.mark.parametrize(("jwks_uri", "issuer", "trusted"), [
    ("https://keys.example/jwks.json", "https://issuer.example", True),
    ("http://127.0.0.1:8006/.well-known/jwks.json", "http://127.0.0.1:8006", True),
    ("http://evil.example/jwks.json", "http://127.0.0.1:8006", False),
    ("http://issuer.example/jwks.json", "https://issuer.example", False),
    ("file:///etc/passwd", "http://127.0.0.1:8006", False),
])
def test_a_discovery_document_cannot_send_us_elsewhere_in_the_clear(
        jwks_uri: str, issuer: str, trusted: bool) -> None:
    assert auth.trusted(jwks_uri, issuer) is trusted


class CountingKeys(StaticKeys):
    def __init__(self, signer: Signer) -> None:
        super().__init__(signer)
        self.lookups = 0

    def key(self, kid: str) -> jwt.PyJWK:
        self.lookups += 1
        return super().key(kid)


def test_a_token_that_passed_is_not_verified_again_until_its_recheck(signer: Signer) -> None:
    keys = CountingKeys(signer)
    check = Verifier(ISSUER, [CLIENT], keys)
    token = signer.token("stu-1", "student")
    assert check.verify(token) == check.verify(token)
    assert keys.lookups == 1
    always = Verifier(ISSUER, [CLIENT], keys, recheck=0)
    always.verify(token)
    always.verify(token)
    assert keys.lookups == 3


def test_a_token_is_remembered_no_longer_than_it_is_valid(signer: Signer) -> None:
    check = Verifier(ISSUER, [CLIENT], StaticKeys(signer), recheck=300)
    soon = int(time.time()) + 30
    check.verify(signer.token("stu-1", "student", exp=soon))
    check.verify(signer.token("stu-2", "student", exp=int(time.time()) + 3600))
    until = sorted(entry[1] for entry in check._passed.values())
    assert until[0] <= soon  # its exp: after that, it is checked in full (and refused)
    assert until[1] <= time.time() + 300  # the recheck: a withdrawn key stops counting


def test_the_remembered_tokens_are_bounded(signer: Signer) -> None:
    keys = CountingKeys(signer)
    check = Verifier(ISSUER, [CLIENT], keys, remember=2)
    tokens = [signer.token(f"stu-{n}", "student") for n in range(3)]
    for token in tokens:
        check.verify(token)
    check.verify(tokens[0])  # evicted by the third: verified again
    assert keys.lookups == 4 and len(check._passed) == 2
