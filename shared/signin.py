"""Signing in to the local development issuer: `school login` mints a token through its
development endpoint and keeps it in a file only its owner may read; every `school` command
that calls a service or the console sends SCHOOL_TOKEN, or else that stored token."""

from __future__ import annotations

import argparse
import base64
import json
import os
import stat
import sys
import urllib.parse
import uuid
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from shared.auth import JWS, SUBJECT

TOKEN_ENV, TOKEN_FILE_ENV = "SCHOOL_TOKEN", "SCHOOL_TOKEN_FILE"
CONSOLE_ROLE = "operator"  # the console's page and API are the operators'
LOGIN_HINT = f"sign in: school login --as {CONSOLE_ROLE}"


class SignInError(Exception):
    """`school login`, `logout` or a stored token went wrong: the message says why (never
    the token itself) and `code` is the exit status."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def token_file(env: Mapping[str, str] = os.environ) -> Path:
    """SCHOOL_TOKEN_FILE, else $XDG_CONFIG_HOME/school/token (~/.config/school/token)."""
    if env.get(TOKEN_FILE_ENV):
        return Path(env[TOKEN_FILE_ENV]).expanduser()
    config = env.get("XDG_CONFIG_HOME", "")
    # The XDG spec: a relative XDG_CONFIG_HOME is invalid and is ignored.
    base = Path(config) if os.path.isabs(config) else Path.home() / ".config"
    return base / "school" / "token"


def default_issuer(env: Mapping[str, str] = os.environ) -> str:
    from shared.serve import port
    return env.get("OIDC_ISSUER") or f"http://127.0.0.1:{port('issuer')}"


def subject(text: str) -> str:
    """An argparse type: a subject the issuer accepts (a student's id is their subject)."""
    if not SUBJECT.fullmatch(text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a subject: 1 to 64 characters, without '/' or control characters")
    return text


def store_token(path: Path, token: str) -> None:
    """Write `token` to `path`, never readable by anyone else even for a moment: a directory
    of its own created 0700, the file written under a temporary name created 0600 (O_EXCL: never
    an existing file or a symlink), then renamed over the old one."""
    if not path.parent.is_dir():
        path.parent.mkdir(mode=0o700, parents=True)
        os.chmod(path.parent, 0o700)  # mkdir's mode passes through the umask
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as file:
            file.write(token + "\n")
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def read_token(path: Path) -> str | None:
    """The token stored at `path`; None if there is none. Refused when anyone else may read or
    write the file (as ssh refuses such a private key)."""
    try:
        info = path.stat()
    except FileNotFoundError:
        return None
    if info.st_mode & 0o077 or info.st_uid != os.getuid():
        raise SignInError(f"{path} is not private (mode {stat.S_IMODE(info.st_mode):04o}, owner "
                          f"uid {info.st_uid}): a token there may have been read by others. "
                          f"Remove it (school logout) and sign in again", code=2)
    return path.read_text(encoding="ascii", errors="replace").strip() or None


def current_token(env: Mapping[str, str] = os.environ) -> str | None:
    """SCHOOL_TOKEN when set, else the stored token, else None. Refused if it is not a JWT:
    a header carrying it would fail with the value in the error."""
    token, where = env.get(TOKEN_ENV), TOKEN_ENV
    if not token:
        path = token_file(env)
        token, where = read_token(path), str(path)
    if token is not None and not JWS.fullmatch(token):
        raise SignInError(f"the token in {where} is not a JWT; {LOGIN_HINT}", code=2)
    return token


def claims(token: str) -> dict[str, Any]:
    """A token's payload, unverified: only to say who it names and until when."""
    try:
        payload = token.split(".")[1]
        decoded = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return {}
    return decoded if isinstance(decoded, dict) else {}


def who(token: str) -> str:
    """`<sub> (<roles>) until <time>` from a token's claims, without the token."""
    c = claims(token)
    roles = ", ".join(c.get("cognito:groups") or []) or "no role"
    until = (datetime.fromtimestamp(c["exp"]).astimezone().isoformat(timespec="seconds")
             if isinstance(c.get("exp"), int) else "an unknown time")
    return f"{c.get('sub', '?')} ({roles}) until {until}"


def _issuer_reason(reply: Any) -> str:
    try:
        problem = reply.json()
    except ValueError:
        return reply.text[:300]
    detail = str(problem.get("detail", "")) if isinstance(problem, dict) else ""
    errors = problem.get("errors") if isinstance(problem, dict) else None
    if isinstance(errors, dict):
        detail += " " + "; ".join(f"{k}: {' '.join(map(str, v))}" for k, v in errors.items())
    return detail.strip() or reply.reason


def mint(issuer: str, role: str, sub: str, expires_in: int | None) -> str:
    """A token from the local issuer's development endpoint, POST /token."""
    import requests

    if urllib.parse.urlsplit(issuer).hostname not in ("127.0.0.1", "localhost", "::1"):
        raise SignInError(f"{issuer} is not the local development issuer: school login mints "
                          "tokens only there (on AWS, sign in through Cognito)", code=2)
    body: dict[str, Any] = {"sub": sub, "groups": [role]}
    if expires_in is not None:
        body["expires_in"] = expires_in
    url = issuer.rstrip("/") + "/token"
    with requests.Session() as http:
        http.trust_env = False  # the issuer is on this machine: no proxy, no netrc
        try:
            reply = http.post(url, json=body, timeout=10)
        except requests.RequestException as exc:
            raise SignInError(f"cannot reach the issuer at {url} ({type(exc).__name__}): is "
                              "the stack up (`make up`)? --issuer or OIDC_ISSUER names another"
                              ) from None
    if reply.status_code in (400, 422):
        raise SignInError(f"the issuer refused: {_issuer_reason(reply)}", code=2)
    try:
        token = reply.json().get("access_token") if reply.status_code == 200 else None
    except (ValueError, AttributeError):
        token = None
    if not isinstance(token, str) or not JWS.fullmatch(token):
        raise SignInError(f"the issuer at {url} answered {reply.status_code} without a token: "
                          f"{_issuer_reason(reply)}")
    return token


def login(role: str, sub: str | None, issuer: str, expires_in: int | None,
          out: Any = sys.stdout) -> int:
    """Mint a token for `sub` (default `<role>-local`) in the group `role` and store it."""
    token = mint(issuer, role, sub or f"{role}-local", expires_in)
    path = token_file()
    store_token(path, token)
    print(f"signed in as {who(token)}, from {issuer}; the token is in {path}", file=out)
    if os.environ.get(TOKEN_ENV):
        print(f"note: {TOKEN_ENV} is set, and commands send it instead", file=out)
    return 0


def logout(out: Any = sys.stdout) -> int:
    path = token_file()
    try:
        path.unlink()
        print(f"signed out: {path} removed", file=out)
    except FileNotFoundError:
        print(f"not signed in: there is no {path}", file=out)
    if os.environ.get(TOKEN_ENV):
        print(f"note: {TOKEN_ENV} is still set, and commands send it", file=out)
    return 0
