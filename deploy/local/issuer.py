"""The development identity issuer: an OpenID Connect issuer whose access
tokens are shaped like Amazon Cognito user-pool access tokens. Never deployed: on AWS, Cognito
plays this role. `python -m deploy.local.issuer` serves it on 127.0.0.1:ISSUER_PORT.

Not oidc-provider-mock (0.3.4, read from its wheel): its access tokens are opaque random strings
it looks up in memory (only its ID token is a JWT), so none carries token_use, client_id or
cognito:groups; its RSA key is generated in memory at every start, so a restart changes the kid;
it has no endpoint that mints a token without the browser sign-in; and it would bring authlib,
joserfc, pydantic, htpy, httpx and uvicorn.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from flask import Flask, Response, jsonify, request, url_for
from jinja2 import Environment, FileSystemLoader, Template
from jwt.algorithms import RSAAlgorithm
from werkzeug.serving import WSGIRequestHandler, make_server

from deploy.local.wait import until
from shared import logs
from shared.auth import ROLES, SUBJECT, exporter_headers
from shared.serve import port as serve_port
from shared.settings import ROOT

log = logging.getLogger("issuer")

CLIENT_IDS = ("school-web", "school-console", "school-cli")  # public clients: no secret
DEFAULT_CLIENT = "school-cli"
SCOPES = ("openid", "profile", "email")
DEFAULT_EXPIRES, MAX_EXPIRES = 3600, 86400  # seconds
CODE_LIFETIME = 60.0  # seconds an authorization code may wait to be exchanged
KEY_FILE = "signing-key.pem"
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}  # RFC 6749 section 5.1
PAGE_HEADERS = {**NO_STORE, "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer",
                "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
                                           "frame-ancestors 'none'"}
_TEXT = re.compile(r"[^\x00-\x1f\x7f-\x9f]{1,200}")
_EMAIL = re.compile(r"[^@\s\x00-\x1f\x7f-\x9f]{1,64}@[^@\s\x00-\x1f\x7f-\x9f]{1,189}")
_CHALLENGE = re.compile(r"[A-Za-z0-9_-]{43}")  # base64url of a SHA-256, unpadded
_VERIFIER = re.compile(r"[A-Za-z0-9._~-]{43,128}")  # RFC 7636 section 4.1
_OPAQUE = re.compile(r"[\x20-\x7e]{0,512}")  # state and nonce, echoed back as given


def client_ids() -> str:
    """The issuer's client ids, comma-separated: the value for OIDC_CLIENT_IDS."""
    return ",".join(CLIENT_IDS)


def key_path(var_dir: Path) -> Path:
    return var_dir / "issuer" / KEY_FILE


def load_key(path: Path) -> rsa.RSAPrivateKey:
    """The signing key at `path`, generated on the first start and reused after, so tokens and
    cached JWKS stay valid across restarts."""
    if not path.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        _write_new_key(path)
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError(f"{path} does not hold an RSA private key")
    return key


def _write_new_key(path: Path) -> None:
    pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption())
    # Written whole under a name of its own, then linked into place (link, unlike rename, never
    # replaces): of two issuers starting at once, one key wins and no one reads half a file.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(pem)
            file.flush()
            os.fsync(file.fileno())
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


@dataclass(frozen=True)
class SigningKey:
    private: rsa.RSAPrivateKey
    kid: str

    @classmethod
    def of(cls, private: rsa.RSAPrivateKey) -> SigningKey:
        """The key under its RFC 7638 thumbprint: the required members, sorted, no spaces."""
        jwk = RSAAlgorithm.to_jwk(private.public_key(), as_dict=True)
        members = json.dumps({k: jwk[k] for k in ("e", "kty", "n")}, separators=(",", ":"),
                             sort_keys=True)
        return cls(private, _b64(hashlib.sha256(members.encode("utf-8")).digest()))

    def jwk(self) -> dict[str, Any]:
        jwk = RSAAlgorithm.to_jwk(self.private.public_key(), as_dict=True)
        return {"kty": jwk["kty"], "n": jwk["n"], "e": jwk["e"], "kid": self.kid,
                "alg": "RS256", "use": "sig"}

    def sign(self, claims: dict[str, Any]) -> str:
        return jwt.encode(claims, self.private, algorithm="RS256",
                          headers={"kid": self.kid, "typ": "JWT"})


@dataclass(frozen=True)
class Person:
    sub: str
    groups: tuple[str, ...]
    email: str | None = None
    name: str | None = None


SIGNED_OUT = Person("operator-1", ("operator",))  # what the sign-in page offers first


@dataclass(frozen=True)
class AuthRequest:
    client_id: str
    redirect_uri: str
    code_challenge: str
    scope: str
    state: str
    nonce: str

    def hidden(self) -> list[tuple[str, str]]:
        """The request, as the sign-in form carries it back."""
        fields = [("response_type", "code"), ("client_id", self.client_id),
                  ("redirect_uri", self.redirect_uri), ("code_challenge", self.code_challenge),
                  ("code_challenge_method", "S256"), ("scope", self.scope),
                  ("state", self.state), ("nonce", self.nonce)]
        return [(name, value) for name, value in fields if value]


@dataclass(frozen=True)
class Grant:
    request: AuthRequest
    person: Person
    auth_time: int


class Refused(ValueError):
    """An authorization request this issuer will not serve; answered with a 400 page, never a
    redirect, as its redirect_uri may be the very thing that is wrong (RFC 6749 4.1.2.1)."""


def _loopback_uri(uri: str) -> bool:
    """A development issuer sends codes only to this machine."""
    try:
        parts = urlsplit(uri)
        _ = parts.port  # raises on a malformed port
    except ValueError:
        return False
    return (len(uri) <= 2000 and parts.scheme in ("http", "https") and not parts.fragment
            and not parts.username and parts.hostname in ("127.0.0.1", "localhost", "::1"))


def auth_request(values: Mapping[str, str]) -> AuthRequest:
    """The authorization request in `values` (query or form); Refused naming what is wrong."""
    if values.get("client_id") not in CLIENT_IDS:
        raise Refused(f"Unknown client_id: it must be one of {', '.join(CLIENT_IDS)}.")
    if not _loopback_uri(values.get("redirect_uri", "")):
        raise Refused("redirect_uri must be an http(s) URL to 127.0.0.1, localhost or [::1], "
                      "without a fragment.")
    if values.get("response_type") != "code":
        raise Refused("response_type must be 'code'.")
    if not _CHALLENGE.fullmatch(values.get("code_challenge", "")):
        raise Refused("code_challenge is required: base64url of the SHA-256 of a verifier.")
    if values.get("code_challenge_method") != "S256":
        raise Refused("code_challenge_method must be 'S256'.")
    scope = values.get("scope") or "openid"
    if not set(scope.split()) <= set(SCOPES):
        raise Refused(f"scope may name only {', '.join(SCOPES)}.")
    state, nonce = values.get("state", ""), values.get("nonce", "")
    if not (_OPAQUE.fullmatch(state) and _OPAQUE.fullmatch(nonce)):
        raise Refused("state and nonce must be printable ASCII, at most 512 characters.")
    return AuthRequest(values["client_id"], values["redirect_uri"], values["code_challenge"],
                       scope, state, nonce)


def _optional(body: Mapping[str, Any], field: str, ok: bool) -> bool:
    return body.get(field) is None or ok


def token_errors(body: Mapping[str, Any]) -> dict[str, list[str]]:
    """What is wrong with a POST /token body, by field (empty when nothing is)."""
    groups, expires = body.get("groups"), body.get("expires_in")
    checks = {
        "sub": (isinstance(body.get("sub"), str) and bool(SUBJECT.fullmatch(body["sub"])),
                "Required: 1 to 64 characters, without '/' or control characters."),
        "groups": (isinstance(groups, list) and all(g in ROLES for g in groups),
                   f"Required: a list, maybe empty, of {', '.join(ROLES)}."),
        "email": (_optional(body, "email", isinstance(body.get("email"), str)
                            and bool(_EMAIL.fullmatch(body["email"]))), "An email address."),
        "name": (_optional(body, "name", isinstance(body.get("name"), str)
                           and bool(_TEXT.fullmatch(body["name"]))),
                 "1 to 200 characters, without control characters."),
        "expires_in": (_optional(body, "expires_in", type(expires) is int
                                 and 1 <= expires <= MAX_EXPIRES),
                       f"An integer number of seconds from 1 to {MAX_EXPIRES}."),
        "client_id": (_optional(body, "client_id", body.get("client_id") in CLIENT_IDS),
                      f"One of {', '.join(CLIENT_IDS)}."),
    }
    errors = {field: [message] for field, (ok, message) in checks.items() if not ok}
    return errors | {field: ["Unknown field."] for field in body if field not in checks}


def pkce_matches(verifier: str, challenge: str) -> bool:
    """RFC 7636 section 4.6, S256: base64url(SHA-256(verifier)) is the challenge."""
    if not _VERIFIER.fullmatch(verifier):
        return False
    digest = _b64(hashlib.sha256(verifier.encode("ascii")).digest())
    return hmac.compare_digest(digest, challenge)


class Codes:
    """One-time authorization codes, in this process's memory for `lifetime` seconds."""

    def __init__(self, lifetime: float = CODE_LIFETIME) -> None:
        self.lifetime = lifetime
        self._grants: dict[str, tuple[float, Grant]] = {}
        self._lock = threading.Lock()

    def issue(self, grant: Grant) -> str:
        code, now = secrets.token_urlsafe(32), time.monotonic()
        with self._lock:
            # Expired codes go here, so codes never exchanged do not pile up.
            self._grants = {c: entry for c, entry in self._grants.items() if entry[0] > now}
            self._grants[code] = (now + self.lifetime, grant)
        return code

    def take(self, code: str) -> Grant | None:
        """The code's grant, removed whatever follows: a code is good for one try at most."""
        with self._lock:
            entry = self._grants.pop(code, None)
        return entry[1] if entry is not None and entry[0] > time.monotonic() else None


def problem(status: int, title: str, detail: str,
            errors: dict[str, list[str]] | None = None) -> Response:
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status,
                            "detail": detail}
    if errors is not None:
        body["errors"] = errors
    return Response(json.dumps(body), status=status, mimetype="application/problem+json")


def no_store(status: int = 200, **fields: Any) -> Response:
    """A JSON answer that holds a token (or says why there is none): never cached."""
    response = jsonify(fields)
    response.status_code = status
    response.headers.update(NO_STORE)
    return response


def oauth_error(error: str, description: str) -> Response:
    """An RFC 6749 section 5.2 error answer."""
    return no_store(400, error=error, error_description=description)


class Issuer:
    """The issuer's endpoints, over its key, its public URL and its codes."""

    def __init__(self, key: SigningKey, url: str, page: Template) -> None:
        self.key, self.url, self.page, self.codes = key, url, page, Codes()
        self.base = url.rstrip("/")

    def install(self, app: Flask) -> None:
        for rule, view, methods in (
                ("/.well-known/openid-configuration", self.discovery, ["GET"]),
                ("/.well-known/jwks.json", self.jwks, ["GET"]),
                ("/healthz", self.healthz, ["GET"]),
                ("/token", self.development_token, ["POST"]),
                ("/oauth2/authorize", self.authorize, ["GET"]),
                ("/oauth2/authorize", self.sign_in, ["POST"]),
                ("/oauth2/token", self.token, ["POST"])):
            app.add_url_rule(rule, view.__name__, view, methods=methods)

    def discovery(self) -> Response:
        return jsonify(
            issuer=self.url, jwks_uri=f"{self.base}/.well-known/jwks.json",
            authorization_endpoint=f"{self.base}/oauth2/authorize",
            token_endpoint=f"{self.base}/oauth2/token", response_types_supported=["code"],
            grant_types_supported=["authorization_code"],
            code_challenge_methods_supported=["S256"],
            id_token_signing_alg_values_supported=["RS256"],
            token_endpoint_auth_methods_supported=["none"], subject_types_supported=["public"],
            scopes_supported=list(SCOPES))

    def jwks(self) -> Response:
        return jsonify(keys=[self.key.jwk()])

    def healthz(self) -> Response:
        return jsonify(status="ok")

    def access_token(self, person: Person, client_id: str, expires_in: int,
                     auth_time: int | None = None) -> str:
        """Claims as in a Cognito access token (which has no aud), plus email and name."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "sub": person.sub, "iss": self.url, "client_id": client_id, "token_use": "access",
            "scope": " ".join(SCOPES), "auth_time": auth_time or now, "iat": now,
            "exp": now + expires_in, "jti": str(uuid.uuid4()), "username": person.sub,
            "cognito:groups": list(person.groups), "origin_jti": str(uuid.uuid4()),
            "event_id": str(uuid.uuid4()), "version": 2}
        extra = {"email": person.email, "name": person.name}
        return self.key.sign(claims | {k: v for k, v in extra.items() if v is not None})

    def id_token(self, grant: Grant, expires_in: int) -> str:
        now, person = int(time.time()), grant.person
        claims: dict[str, Any] = {
            "sub": person.sub, "iss": self.url, "aud": grant.request.client_id,
            "token_use": "id", "auth_time": grant.auth_time, "iat": now,
            "exp": now + expires_in, "jti": str(uuid.uuid4()), "cognito:username": person.sub,
            "cognito:groups": list(person.groups)}
        extra = {"email": person.email, "nonce": grant.request.nonce or None}
        return self.key.sign(claims | {k: v for k, v in extra.items() if v is not None})

    def development_token(self) -> Response:
        """POST /token: a token for anyone, without a sign-in (AWS has no such endpoint)."""
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            return problem(400, "Bad Request", "The body must be a JSON object, sent as "
                                               "Content-Type: application/json.")
        if errors := token_errors(body):
            return problem(422, "Unprocessable Content", "The request has invalid fields.",
                           errors)
        person = Person(body["sub"], tuple(dict.fromkeys(body["groups"])), body.get("email"),
                        body.get("name"))
        expires_in = body.get("expires_in") or DEFAULT_EXPIRES
        token = self.access_token(person, body.get("client_id") or DEFAULT_CLIENT, expires_in)
        return no_store(access_token=token, token_type="Bearer", expires_in=expires_in)

    def _page(self, req: AuthRequest, status: int = 200, error: str | None = None,
              person: Person = SIGNED_OUT) -> Response:
        html = self.page.render(
            action=url_for("authorize"), hidden=req.hidden(), roles=ROLES, error=error,
            sub=person.sub, groups=person.groups, email=person.email or "",
            client_id=req.client_id, redirect_uri=req.redirect_uri)
        return Response(html, status=status, mimetype="text/html", headers=PAGE_HEADERS)

    def authorize(self) -> Response:
        """GET /oauth2/authorize: the sign-in page, for a request that passes every check."""
        try:
            return self._page(auth_request(request.args))
        except Refused as refused:
            return _refusal(refused)

    def sign_in(self) -> Response:
        """POST /oauth2/authorize (the page's form): a code, sent to the redirect_uri."""
        try:
            req = auth_request(request.form)
        except Refused as refused:
            return _refusal(refused)
        sub, email = request.form.get("sub", ""), request.form.get("email") or None
        person = Person(sub, tuple(dict.fromkeys(request.form.getlist("groups"))), email)
        if not SUBJECT.fullmatch(sub):
            return self._page(req, 400, "The subject must be 1 to 64 characters, without '/' "
                                        "or control characters.", person)
        if not set(person.groups) <= set(ROLES):
            return self._page(req, 400, f"Groups are among {', '.join(ROLES)}.", person)
        if email is not None and not _EMAIL.fullmatch(email):
            return self._page(req, 400, "The email is not an email address.", person)
        code = self.codes.issue(Grant(req, person, int(time.time())))
        parts = urlsplit(req.redirect_uri)
        query = parse_qsl(parts.query, keep_blank_values=True) + [("code", code)]
        query += [("state", req.state)] if req.state else []
        location = urlunsplit(parts._replace(query=urlencode(query)))
        return Response(status=302, headers={"Location": location, **NO_STORE})

    def token(self) -> Response:
        """POST /oauth2/token: the authorization-code grant with PKCE, for public clients."""
        form = request.form
        if form.get("grant_type") != "authorization_code":
            return oauth_error("unsupported_grant_type" if form.get("grant_type")
                               else "invalid_request", "grant_type must be authorization_code.")
        grant = self.codes.take(form.get("code", ""))  # spent, whatever the checks below say
        missing = [n for n in ("code", "redirect_uri", "client_id", "code_verifier")
                   if not form.get(n)]
        if missing:
            return oauth_error("invalid_request", f"Missing: {', '.join(missing)}.")
        if form["client_id"] not in CLIENT_IDS:
            return oauth_error("invalid_client", "Unknown client_id.")
        if grant is None:
            return oauth_error("invalid_grant", "The code is unknown, expired or already used.")
        if (grant.request.client_id, grant.request.redirect_uri) != (
                form["client_id"], form["redirect_uri"]):
            return oauth_error("invalid_grant", "The code was issued for another client_id or "
                                                "redirect_uri.")
        if not pkce_matches(form["code_verifier"], grant.request.code_challenge):
            return oauth_error("invalid_grant", "The code_verifier does not match.")
        return no_store(access_token=self.access_token(grant.person, grant.request.client_id,
                                                       DEFAULT_EXPIRES, grant.auth_time),
                        id_token=self.id_token(grant, DEFAULT_EXPIRES), token_type="Bearer",
                        expires_in=DEFAULT_EXPIRES)


def _refusal(refused: Refused) -> Response:
    return Response(f"The development issuer refuses this sign-in request: {refused}\n",
                    status=400, mimetype="text/plain",
                    headers={"X-Content-Type-Options": "nosniff", **NO_STORE})


def create_app(var_dir: Path, issuer_url: str) -> Flask:
    """The issuer's app, with its key under `var_dir` (generated on the first start)."""
    key = SigningKey.of(load_key(key_path(var_dir)))
    templates = Environment(loader=FileSystemLoader(Path(__file__).parent), autoescape=True)
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = 64 * 1024  # no request to an issuer needs more
    Issuer(key, issuer_url, templates.get_template("issuer_page.html")).install(app)
    return app


class _RequestLog(WSGIRequestHandler):
    """Logs method, path and status only: a query string may carry a one-time code."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        log.info("%s %s %s", self.command, urlsplit(self.path).path, code)


def main() -> int:
    logs.configure("issuer", os.environ.get("LOG_LEVEL") or "INFO")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    port = serve_port("issuer")  # shared.settings.PORTS, or ISSUER_PORT
    url = os.environ.get("ISSUER_URL") or f"http://127.0.0.1:{port}"
    var_dir = Path(os.environ.get("SCHOOL_VAR_DIR") or ROOT / "var")
    host = os.environ.get("BIND_HOST", "127.0.0.1")  # 0.0.0.0 in a container, as the APIs
    server = make_server(host, port, create_app(var_dir, url), threaded=True,
                         request_handler=_RequestLog)
    keys = key_path(var_dir).resolve()
    shown = keys.relative_to(ROOT) if keys.is_relative_to(ROOT) else keys
    print(f"[issuer] development identity issuer at {url} (keys: {shown})", flush=True)
    threading.Thread(target=server.serve_forever, name="issuer-http", daemon=True).start()
    stop.wait()
    server.shutdown()
    server.server_close()
    return 0


def start(port: int, var_dir: Path, log_path: Path, env: Mapping[str, str] | None = None
          ) -> subprocess.Popen[bytes]:
    """The issuer as a child process (for a test stack), its output appended to `log_path`.
    An ISSUER_URL of this process is not passed on: the child's is its own port's."""
    child = {k: v for k, v in os.environ.items() if k != "ISSUER_URL"} | dict(env or {})
    child |= {"ISSUER_PORT": str(port), "SCHOOL_VAR_DIR": str(var_dir), "PYTHONPATH": str(ROOT)}
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as out:
        # A group of its own, like every process of a stack, so it is stopped with killpg.
        return subprocess.Popen([sys.executable, "-m", "deploy.local.issuer"], cwd=ROOT,
                                env=child, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url.rstrip('/')}/healthz", timeout=2) as reply:
            return bool(reply.status == 200)
    except OSError:
        return False


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 30, *,
               log_path: Path | None = None) -> None:
    """Poll `<url>/healthz` until it answers; RuntimeError with the log's tail (when
    `log_path` is given) if the process exits first, TimeoutError at the deadline."""
    def ready() -> bool:
        if proc.poll() is not None:
            tail = log_path.read_text(errors="replace")[-2000:] if log_path else ""
            raise RuntimeError(f"the issuer exited with code {proc.returncode}:\n{tail}")
        return _healthy(url)
    until(ready, timeout, f"the issuer at {url}", every=0.1)


def launch(var_dir: Path, log_path: Path, env: Mapping[str, str] | None = None
           ) -> tuple[subprocess.Popen[bytes], str]:
    """A stack's own issuer on a free port, started and answering: its process and URL."""
    from deploy.local.localstack import free_port
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = start(port, var_dir, log_path, env)
    wait_ready(url, proc, log_path=log_path)
    return proc, url


def trusting(url: str) -> dict[str, str]:
    """What every process of a stack is given: its APIs trust the issuer at `url`, and its
    exporters send the console's intake a secret made for this stack."""
    otlp_token = secrets.token_urlsafe(24)
    return {"OIDC_ISSUER": url, "OIDC_CLIENT_IDS": client_ids(), "SCHOOL_OTLP_TOKEN": otlp_token,
            "OTEL_EXPORTER_OTLP_HEADERS": exporter_headers(otlp_token)}


if __name__ == "__main__":
    raise SystemExit(main())
