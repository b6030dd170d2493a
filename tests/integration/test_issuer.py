"""The development identity issuer (deploy/local/issuer.py) as a real process on a free port,
talked to over HTTP: discovery, keys, the development POST /token, and the authorization-code +
PKCE sign-in the console's browser users go through. No LocalStack, no database."""

from __future__ import annotations

import base64
import hashlib
import secrets
import signal
import stat
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import jwt
import pytest
import requests

from deploy.local import issuer
from deploy.local.localstack import free_port
from deploy.local.tokens import TokenError, mint
from shared.auth import Verifier
from tests.support.messages import wait_for

CALLBACK = "http://127.0.0.1:9/callback?keep=1"  # never fetched: redirects are not followed


@dataclass
class Running:
    url: str
    proc: subprocess.Popen[bytes]
    var_dir: Path
    log: Path

    def post_token(self, **body: Any) -> requests.Response:
        return requests.post(f"{self.url}/token", json=body, timeout=10)

    def exchange(self, code: str, verifier: str, *, client_id: str = "school-console",
                 redirect_uri: str = CALLBACK) -> requests.Response:
        return requests.post(f"{self.url}/oauth2/token", timeout=10, data={
            "grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri,
            "client_id": client_id, "code_verifier": verifier})


def launch(var_dir: Path, folder: Path) -> Running:
    port = free_port()
    url, log = f"http://127.0.0.1:{port}", folder / f"issuer-{port}.log"
    proc = issuer.start(port, var_dir, log)
    try:
        issuer.wait_ready(url, proc, log_path=log)
    except Exception:
        stop(proc)
        raise
    return Running(url, proc, var_dir, log)


def stop(proc: subprocess.Popen[bytes]) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout=20)


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    folder = tmp_path_factory.mktemp("issuer")
    started = launch(folder / "var", folder)
    yield started
    stop(started.proc)


def claims_of(running: Running, token: str, **options: Any) -> dict[str, Any]:
    """The token's claims, verified with the key its header names, fetched from the JWKS."""
    jwks_uri = requests.get(f"{running.url}/.well-known/openid-configuration",
                            timeout=10).json()["jwks_uri"]
    key = jwt.PyJWKClient(jwks_uri).get_signing_key_from_jwt(token)
    claims: dict[str, Any] = jwt.decode(token, key.key, algorithms=["RS256"],
                                        issuer=running.url, **options)
    return claims


def challenge_of(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(
        b"=").decode()


class Form(HTMLParser):
    """The sign-in page's form: its action, and every input and button by id or name."""

    def __init__(self) -> None:
        super().__init__()
        self.action = ""
        self.hidden: list[tuple[str, str]] = []
        self.by_id: dict[str, dict[str, str | None]] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "form":
            self.action = found.get("action") or ""
        if tag == "input" and found.get("type") == "hidden":
            self.hidden.append((found["name"] or "", found.get("value") or ""))
        if found.get("id"):
            self.by_id[found["id"] or ""] = found


def authorize_params(verifier: str, **overrides: str) -> dict[str, str]:
    return {"response_type": "code", "client_id": "school-console", "redirect_uri": CALLBACK,
            "state": secrets.token_urlsafe(8), "code_challenge": challenge_of(verifier),
            "code_challenge_method": "S256", "scope": "openid email", "nonce": "n-1",
            **overrides}


def page(running: Running, params: dict[str, str]) -> requests.Response:
    return requests.get(f"{running.url}/oauth2/authorize", params=params, timeout=10)


def sign_in(running: Running, verifier: str, sub: str = "operator-1",
            groups: Sequence[str] = ("operator",), **overrides: str) -> requests.Response:
    """Fill in the sign-in page as a person would, and submit it (the redirect not followed)."""
    form = Form()
    form.feed(page(running, authorize_params(verifier, **overrides)).text)
    data = [*form.hidden, ("sub", sub), ("email", f"{sub}@example.org"),
            *(("groups", g) for g in groups)]
    return requests.post(urljoin(running.url, form.action), data=data, timeout=10,
                         allow_redirects=False)


def code_of(reply: requests.Response) -> str:
    assert reply.status_code == 302, reply.text
    return parse_qs(urlsplit(reply.headers["Location"]).query)["code"][0]


def test_discovery_names_its_endpoints_as_cognito_does(running: Running) -> None:
    config = requests.get(f"{running.url}/.well-known/openid-configuration", timeout=10).json()
    assert config["issuer"] == running.url
    assert config["jwks_uri"] == f"{running.url}/.well-known/jwks.json"
    assert config["authorization_endpoint"] == f"{running.url}/oauth2/authorize"
    assert config["token_endpoint"] == f"{running.url}/oauth2/token"
    assert config["code_challenge_methods_supported"] == ["S256"]
    assert config["response_types_supported"] == ["code"]
    assert config["id_token_signing_alg_values_supported"] == ["RS256"]
    assert config["token_endpoint_auth_methods_supported"] == ["none"]
    assert "openid" in config["scopes_supported"]


def test_a_minted_token_verifies_against_the_jwks_with_cognito_claims(running: Running
                                                                       ) -> None:
    reply = running.post_token(sub="ada", groups=["student", "admin"], email="ada@example.org",
                               name="Ada", expires_in=120, client_id="school-web")
    assert reply.status_code == 200
    assert reply.headers["Cache-Control"] == "no-store"
    body = reply.json()
    assert (body["token_type"], body["expires_in"]) == ("Bearer", 120)
    header = jwt.get_unverified_header(body["access_token"])
    assert (header["alg"], header["typ"]) == ("RS256", "JWT")
    claims = claims_of(running, body["access_token"])
    assert claims["token_use"] == "access"
    assert claims["client_id"] == "school-web"
    assert claims["cognito:groups"] == ["student", "admin"]
    assert (claims["sub"], claims["username"]) == ("ada", "ada")
    assert (claims["email"], claims["name"]) == ("ada@example.org", "Ada")
    assert claims["exp"] - claims["iat"] == 120
    assert "aud" not in claims


def test_the_services_verifier_accepts_a_minted_token(running: Running) -> None:
    token = mint(running.url, "op-7", ["operator"])
    principal = Verifier(running.url, issuer.client_ids().split(",")).verify(token)
    assert (principal.sub, principal.roles, principal.client_id) == (
        "op-7", frozenset({"operator"}), "school-cli")


def test_mint_raises_token_error_naming_the_field(running: Running) -> None:
    with pytest.raises(TokenError) as raised:
        mint(running.url, "ada", ["wizard"])
    assert raised.value.status == 422
    assert "groups" in str(raised.value)


def test_the_key_is_private_and_kept_across_a_restart(running: Running,
                                                      tmp_path: Path) -> None:
    key_file = running.var_dir / "issuer" / "signing-key.pem"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(key_file.parent.stat().st_mode) == 0o700
    kids = [requests.get(f"{running.url}/.well-known/jwks.json", timeout=10).json()["keys"]
            [0]["kid"]]
    again = launch(running.var_dir, tmp_path)
    try:
        kids.append(requests.get(f"{again.url}/.well-known/jwks.json", timeout=10
                                 ).json()["keys"][0]["kid"])
    finally:
        assert stop(again.proc) == 0  # SIGTERM is a clean stop
    assert kids[0] == kids[1]
    assert len(kids[0]) == 43  # an unpadded base64url SHA-256: the RFC 7638 thumbprint


@pytest.mark.parametrize(("body", "field"), [
    ({"sub": "ada", "groups": ["wizard"]}, "groups"),
    ({"groups": ["student"]}, "sub"),
    ({"sub": "a/b", "groups": []}, "sub"),
    ({"sub": "ada", "groups": [], "expires_in": 0}, "expires_in"),
    ({"sub": "ada", "groups": [], "client_id": "someone-else"}, "client_id"),
    ({"sub": "ada"}, "groups"),
])
def test_a_bad_token_request_is_a_422_problem(running: Running, body: dict[str, Any],
                                              field: str) -> None:
    reply = running.post_token(**body)
    assert reply.status_code == 422
    assert reply.headers["Content-Type"] == "application/problem+json"
    problem = reply.json()
    assert (problem["status"], problem["title"]) == (422, "Unprocessable Content")
    assert list(problem["errors"]) == [field]
    assert "access_token" not in problem


@pytest.mark.parametrize(("data", "content_type"), [
    ("sub=ada", "application/x-www-form-urlencoded"),
    ('{"sub": "ada", ', "application/json"),
    ('["ada"]', "application/json"),
])
def test_a_body_that_is_no_json_object_is_a_400_problem(running: Running, data: str,
                                                         content_type: str) -> None:
    reply = requests.post(f"{running.url}/token", data=data, timeout=10,
                          headers={"Content-Type": content_type})
    assert reply.status_code == 400
    assert reply.headers["Content-Type"] == "application/problem+json"
    assert reply.json()["status"] == 400


def test_the_sign_in_page_offers_a_picker(running: Running) -> None:
    params = authorize_params("v" * 43, state='"><script>alert(1)</script>')
    reply = page(running, params)
    assert reply.status_code == 200
    assert reply.headers["Content-Type"].startswith("text/html")
    assert "never deployed" in reply.text
    assert "<script>" not in reply.text  # the state is escaped, not markup
    form = Form()
    form.feed(reply.text)
    assert form.by_id["sub"]["value"] == "operator-1"
    assert "checked" in form.by_id["group-operator"]
    assert all("checked" not in form.by_id[f"group-{role}"]
               for role in ("student", "instructor", "admin"))
    assert "sign-in" in form.by_id
    assert dict(form.hidden)["state"] == params["state"]
    assert dict(form.hidden)["code_challenge"] == params["code_challenge"]


def test_the_pkce_flow_gives_tokens_for_whom_the_person_chose(running: Running) -> None:
    verifier = secrets.token_urlsafe(48)
    reply = sign_in(running, verifier, "ada-42", ("instructor", "admin"), state="s-1")
    location = urlsplit(reply.headers["Location"])
    assert (location.netloc, location.path) == ("127.0.0.1:9", "/callback")
    query = parse_qs(location.query)
    assert (query["keep"], query["state"]) == (["1"], ["s-1"])
    tokens = running.exchange(query["code"][0], verifier)
    assert tokens.status_code == 200, tokens.text
    assert tokens.headers["Cache-Control"] == "no-store"
    body = tokens.json()
    assert (body["token_type"], body["expires_in"]) == ("Bearer", 3600)
    access = claims_of(running, body["access_token"])
    assert (access["sub"], access["cognito:groups"]) == ("ada-42", ["instructor", "admin"])
    assert (access["token_use"], access["client_id"]) == ("access", "school-console")
    identity = claims_of(running, body["id_token"], audience="school-console")
    assert (identity["token_use"], identity["sub"], identity["nonce"]) == ("id", "ada-42", "n-1")
    assert identity["email"] == "ada-42@example.org"


def test_a_wrong_verifier_is_an_invalid_grant_and_spends_the_code(running: Running) -> None:
    verifier = secrets.token_urlsafe(48)
    code = code_of(sign_in(running, verifier))
    wrong = running.exchange(code, secrets.token_urlsafe(48))
    assert (wrong.status_code, wrong.json()["error"]) == (400, "invalid_grant")
    late = running.exchange(code, verifier)
    assert (late.status_code, late.json()["error"]) == (400, "invalid_grant")


def test_a_code_used_twice_is_refused_the_second_time(running: Running) -> None:
    verifier = secrets.token_urlsafe(48)
    code = code_of(sign_in(running, verifier))
    assert running.exchange(code, verifier).status_code == 200
    again = running.exchange(code, verifier)
    assert (again.status_code, again.json()["error"]) == (400, "invalid_grant")


def test_a_code_for_another_redirect_uri_is_an_invalid_grant(running: Running) -> None:
    verifier = secrets.token_urlsafe(48)
    code = code_of(sign_in(running, verifier))
    reply = running.exchange(code, verifier, redirect_uri="http://127.0.0.1:9/other")
    assert (reply.status_code, reply.json()["error"]) == (400, "invalid_grant")


@pytest.mark.parametrize("redirect_uri", [
    "https://attacker.example/callback", "http://127.0.0.1.attacker.example/cb",
    "javascript:alert(1)", "http://127.0.0.1:9/cb#fragment", ""])
def test_a_redirect_uri_off_this_machine_is_refused_without_a_redirect(
        running: Running, redirect_uri: str) -> None:
    params = authorize_params("v" * 43, redirect_uri=redirect_uri)
    shown = page(running, params)
    posted = requests.post(f"{running.url}/oauth2/authorize", timeout=10,
                           data={**params, "sub": "ada", "groups": "admin"},
                           allow_redirects=False)
    for reply in (shown, posted):
        assert reply.status_code == 400
        assert "Location" not in reply.headers
        assert "redirect_uri" in reply.text


def test_an_unknown_client_is_refused(running: Running) -> None:
    reply = page(running, authorize_params("v" * 43, client_id="someone-else"))
    assert (reply.status_code, "Location" in reply.headers) == (400, False)
    assert "client_id" in reply.text
    verifier = secrets.token_urlsafe(48)
    code = code_of(sign_in(running, verifier))
    token = running.exchange(code, verifier, client_id="someone-else")
    assert (token.status_code, token.json()["error"]) == (400, "invalid_client")


@pytest.mark.parametrize(("params", "error"), [
    ({"grant_type": "password"}, "unsupported_grant_type"),
    ({"grant_type": "authorization_code"}, "invalid_request"),
])
def test_a_malformed_token_request_is_an_oauth_error(running: Running, params: dict[str, str],
                                                     error: str) -> None:
    reply = requests.post(f"{running.url}/oauth2/token", data=params, timeout=10)
    assert (reply.status_code, reply.json()["error"]) == (400, error)


def test_an_expired_code_is_refused() -> None:
    grant = issuer.Grant(issuer.auth_request(authorize_params("v" * 43)),
                         issuer.Person("ada", ("student",)), 0)
    codes = issuer.Codes(lifetime=0)
    assert codes.take(codes.issue(grant)) is None
    fresh = issuer.Codes()
    code = fresh.issue(grant)
    assert (fresh.take(code), fresh.take(code)) == (grant, None)


def test_the_log_has_neither_codes_nor_tokens(running: Running) -> None:
    verifier = secrets.token_urlsafe(48)
    code = code_of(sign_in(running, verifier))
    token = running.exchange(code, verifier).json()["access_token"]
    minted_before = running.log.read_text().count("POST /token 200")
    minted = mint(running.url, "ada", ["student"])

    def logged() -> str:  # the request log is written as the answer goes out: wait for it
        text = running.log.read_text()
        return text if text.count("POST /token 200") > minted_before else ""

    log = wait_for(logged, 10, "the issuer's request log")
    assert f"[issuer] development identity issuer at {running.url}" in log
    assert "GET /oauth2/authorize 200" in log and "POST /oauth2/token 200" in log
    assert all(secret not in log for secret in (code, token, minted))
    assert "PRIVATE KEY" not in log
