"""`school login`, `school logout` and the token `school trace` sends, against the real local
issuer (deploy/local/issuer.py) and a stand-in for the console that records what it is sent."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import jwt
import pytest
import requests

from deploy.local.localstack import free_port
from deploy.local.tokens import mint
from shared.signin import LOGIN_HINT, claims

SCHOOL = str(Path(sys.executable).parent / "school")


@pytest.fixture
def token_path(tmp_path: Path) -> Path:
    """Where this test's token is stored: a directory `school login` has to create."""
    return tmp_path / "config" / "school" / "token"


@pytest.fixture
def env(issuer_url: str, token_path: Path) -> dict[str, str]:
    """The environment of a `school` run: this test's issuer and token file, no SCHOOL_TOKEN."""
    base = {k: v for k, v in os.environ.items() if k != "SCHOOL_TOKEN"}
    return base | {"OIDC_ISSUER": issuer_url, "SCHOOL_TOKEN_FILE": str(token_path)}


def school(env: dict[str, str], *args: str, umask: int = 0o022
           ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SCHOOL, *args], capture_output=True, text=True, timeout=60, env=env,
                          umask=umask)


def verified(issuer_url: str, token: str) -> dict[str, object]:
    """The token's claims, checked against the issuer's published keys."""
    discovery = requests.get(f"{issuer_url}/.well-known/openid-configuration", timeout=10).json()
    key = jwt.PyJWKClient(discovery["jwks_uri"]).get_signing_key_from_jwt(token)
    return dict(jwt.decode(token, key.key, algorithms=["RS256"], issuer=issuer_url))


@dataclass
class FakeConsole:
    """The console's conversation API as far as `school trace` sees it: 401 without a token,
    403 for a token without the operator role (read, not verified), else a conversation."""

    url: str = ""
    received: list[str | None] = field(default_factory=list)  # each request's Authorization


@pytest.fixture
def console() -> Iterator[FakeConsole]:
    fake = FakeConsole()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            header = self.headers.get("Authorization")
            fake.received.append(header)
            token = header.removeprefix("Bearer ") if header else None
            if token is None:
                self.answer(401, {"title": "Unauthorized", "detail": "No token."})
            elif "operator" not in (claims(token).get("cognito:groups") or []):
                self.answer(403, {"title": "Forbidden", "detail": "Operators only."})
            else:
                self.answer(200, {"correlation_id": self.path.rsplit("/", 1)[-1],
                                  "started_at": "2025-01-01T00:00:00Z", "request": None,
                                  "events": []})

        def answer(self, status: int, body: dict[str, object]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def stored(token_path: Path) -> str:
    return token_path.read_text().strip()


def test_login_stores_a_private_token_the_issuer_signed(issuer_url, env, token_path):
    sub = f"ada-{uuid.uuid4().hex[:6]}"
    result = school(env, "login", "--as", "student", "--sub", sub)
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE(token_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(token_path.parent.stat().st_mode) == 0o700
    token = stored(token_path)
    payload = verified(issuer_url, token)
    assert payload["sub"] == sub and payload["cognito:groups"] == ["student"]
    assert payload["token_use"] == "access"
    assert f"signed in as {sub} (student) until " in result.stdout
    assert token not in result.stdout + result.stderr
    assert [p.name for p in token_path.parent.iterdir()] == ["token"]  # no temporary file left


def test_the_token_is_private_whatever_the_umask(env, token_path):
    result = school(env, "login", "--as", "operator", umask=0)
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE(token_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(token_path.parent.stat().st_mode) == 0o700


def test_the_default_subject_names_the_role_and_a_new_login_replaces_the_token(
        issuer_url, env, token_path):
    assert school(env, "login", "--as", "instructor").returncode == 0
    assert verified(issuer_url, stored(token_path))["sub"] == "instructor-local"
    result = school(env, "login", "--as", "admin", "--expires-in", "120")
    assert result.returncode == 0, result.stderr
    payload = verified(issuer_url, stored(token_path))
    assert (payload["sub"], payload["cognito:groups"]) == ("admin-local", ["admin"])
    assert int(str(payload["exp"])) - int(str(payload["iat"])) == 120


@pytest.mark.parametrize("args, refusal", [
    (("--as", "root"), "invalid choice: 'root'"),
    (("--as", "student", "--sub", "a/b"), "is not a subject"),
    (("--as", "student", "--sub", ""), "is not a subject"),
    (("--as", "student", "--expires-in", "999999"), "expires_in"),
])
def test_a_bad_role_subject_or_lifetime_is_refused(env, token_path, args, refusal):
    result = school(env, "login", *args)
    assert result.returncode == 2 and refusal in result.stderr, result.stderr
    assert not token_path.exists()


def test_an_issuer_that_does_not_answer_is_exit_1_with_why(env, token_path):
    dead = f"http://127.0.0.1:{free_port()}"
    result = school(env, "login", "--as", "student", "--issuer", dead)
    assert result.returncode == 1
    assert f"cannot reach the issuer at {dead}/token" in result.stderr
    assert "Traceback" not in result.stderr and not token_path.exists()


def test_trace_sends_the_stored_token(env, token_path, console):
    assert school(env, "login", "--as", "operator").returncode == 0
    result = school(env, "trace", "c-1", "--console", console.url)
    assert result.returncode == 0, result.stderr
    assert console.received == [f"Bearer {stored(token_path)}"]
    assert "conversation c-1" in result.stdout
    assert stored(token_path) not in result.stdout + result.stderr


def test_school_token_overrides_the_stored_one(issuer_url, env, token_path, console):
    assert school(env, "login", "--as", "operator", "--sub", "from-file").returncode == 0
    other = mint(issuer_url, "from-env", ["operator"])
    result = school(env | {"SCHOOL_TOKEN": other}, "trace", "c-2", "--console", console.url)
    assert result.returncode == 0, result.stderr
    assert console.received == [f"Bearer {other}"]


def test_without_a_token_trace_says_how_to_sign_in(env, token_path, console):
    assert school(env, "login", "--as", "operator").returncode == 0
    out = school(env, "logout")
    assert out.returncode == 0 and "signed out" in out.stdout and not token_path.exists()
    result = school(env, "trace", "c-3", "--console", console.url)
    assert result.returncode == 1
    assert console.received == [None]
    assert LOGIN_HINT in result.stderr and "no token was sent" in result.stderr


def test_a_token_without_the_operator_role_is_told_which_role_is_needed(env, console):
    assert school(env, "login", "--as", "student", "--sub", "bob-1").returncode == 0
    result = school(env, "trace", "c-4", "--console", console.url)
    assert result.returncode == 1
    assert "needs the operator role" in result.stderr and "bob-1 (student)" in result.stderr
    assert LOGIN_HINT in result.stderr


def test_a_token_file_others_can_read_is_refused_and_not_sent(env, token_path, console):
    assert school(env, "login", "--as", "operator").returncode == 0
    token_path.chmod(0o644)
    result = school(env, "trace", "c-5", "--console", console.url)
    assert result.returncode == 2 and "is not private (mode 0644" in result.stderr
    assert console.received == []
    assert stored(token_path) not in result.stdout + result.stderr
