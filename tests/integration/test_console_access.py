"""Who may use the console, through its own app and the real development
issuer: an anonymous browser is sent through the authorization-code + PKCE sign-in, only an
operator gets a session, a change through a session needs its CSRF token, bearer tokens of
other roles are refused, and the span intake takes nothing but the exporters' secret."""

from __future__ import annotations

import secrets
import time
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from flask import Flask, request
from flask.testing import FlaskClient
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from werkzeug.test import TestResponse

from deploy.local import issuer
from deploy.local.localstack import free_port
from deploy.local.tokens import mint
from services.console.sessions import CSRF_HEADER, Sessions
from shared import bootstrap, db
from shared.auth import OTLP_TOKEN_HEADER, Principal
from shared.settings import Settings

PROTOBUF = "application/x-protobuf"
NO_SQS = "http://127.0.0.1:9"  # nothing listens: the queues' routes answer 503, and no test
# here needs them to answer more than "past the gate"


@pytest.fixture
def console_settings(issuer_url: str, database_url: str, tmp_path: Path,
             monkeypatch: pytest.MonkeyPatch) -> Settings:
    db.migrate("console", database_url)
    monkeypatch.setenv("CONSOLE_DATABASE_URL", database_url)
    return Settings(var_dir=tmp_path, aws_endpoint_url=NO_SQS, oidc_issuer=issuer_url,
                    oidc_client_ids=tuple(issuer.client_ids().split(",")),
                    otlp_token=secrets.token_urlsafe(24))


@pytest.fixture
def client(console_settings: Settings) -> FlaskClient:
    return bootstrap.api("console", console_settings).test_client()


def bearer(issuer_url: str, sub: str, *groups: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {mint(issuer_url, sub, groups)}"}


def authorize_params(client: FlaskClient, issuer_url: str) -> dict[str, str]:
    """The query of the authorization request /login sends the browser to."""
    started = client.get("/login")
    assert started.status_code == 302, started.text
    location = urlsplit(started.headers["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == (
        f"{issuer_url}/oauth2/authorize")
    return {k: v[0] for k, v in parse_qs(location.query).items()}


def callback_url(client: FlaskClient, issuer_url: str, sub: str, *groups: str) -> str:
    """Sign in as a person would on the issuer's page, for a sign-in `client` started (the
    page's form posts the request's fields back with who they are): where the issuer then
    sends the browser."""
    params = authorize_params(client, issuer_url)
    page = requests.get(f"{issuer_url}/oauth2/authorize", params=params, timeout=10)
    assert page.status_code == 200 and 'id="sign-in"' in page.text
    form: dict[str, Any] = {**params, "sub": sub, "groups": list(groups)}
    back = requests.post(f"{issuer_url}/oauth2/authorize", data=form, allow_redirects=False,
                         timeout=10)
    assert back.status_code == 302, back.text
    callback = urlsplit(back.headers["Location"])
    assert callback.path == "/auth/callback"
    return f"{callback.path}?{callback.query}"


def sign_in(client: FlaskClient, issuer_url: str, sub: str, *groups: str) -> TestResponse:
    """The console's answer to a browser the issuer sends back signed in as `sub`."""
    return client.get(callback_url(client, issuer_url, sub, *groups))


def session_cookie(response: TestResponse) -> str | None:
    return next((h for h in response.headers.getlist("Set-Cookie")
                 if h.startswith("console_session=") and "Max-Age=0" not in h), None)


def test_an_anonymous_browser_is_sent_to_the_issuer_with_pkce(client: FlaskClient,
                                                              issuer_url: str) -> None:
    page = client.get("/", headers={"Accept": "text/html"})
    assert page.status_code == 302 and page.headers["Location"] == "/login"
    params = authorize_params(client, issuer_url)
    assert params["client_id"] == "school-console" and params["response_type"] == "code"
    assert params["redirect_uri"] == "http://localhost/auth/callback"
    assert params["code_challenge_method"] == "S256" and len(params["code_challenge"]) == 43
    assert len(params["state"]) >= 43 and params["scope"] == "openid"
    assert authorize_params(client, issuer_url)["state"] != params["state"]  # new every time
    assert client.get("/assets/console.js").status_code == 200  # no data in it: public


def test_an_operator_signs_in_and_changes_need_the_csrf_token(client: FlaskClient,
                                                             issuer_url: str) -> None:
    signed_in = sign_in(client, issuer_url, "ops-1", "operator")
    assert signed_in.status_code == 303 and signed_in.headers["Location"] == "/"
    cookie = session_cookie(signed_in)
    assert cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/" in cookie
    assert client.get("/").status_code == 200
    me = client.get("/api/session").get_json()
    assert (me["sub"], me["roles"], me["via"]) == ("ops-1", ["operator"], "session")
    assert me["csrf_token"] and me["expires_at"]
    assert client.get("/api/conversations").status_code == 200

    path = "/api/dlqs/nope/redrive"
    refused = client.post(path)
    assert refused.status_code == 403 and "X-CSRF-Token" in refused.get_json()["detail"]
    assert client.post(path, headers={CSRF_HEADER: "not-the-token"}).status_code == 403
    passed = client.post(path, headers={CSRF_HEADER: me["csrf_token"]})
    assert passed.status_code == 404, passed.text  # past the gate: no such queue

    assert client.post("/logout").status_code == 403
    out = client.post("/logout", headers={CSRF_HEADER: me["csrf_token"]})
    assert out.status_code == 204 and any(
        h.startswith("console_session=;") for h in out.headers.getlist("Set-Cookie"))
    assert client.get("/api/dlqs").status_code == 401


def test_a_student_who_signs_in_gets_a_403_and_no_session(client: FlaskClient,
                                                         issuer_url: str) -> None:
    refused = sign_in(client, issuer_url, "stu-1", "student")
    assert refused.status_code == 403 and "not an operator" in refused.text
    assert session_cookie(refused) is None
    assert client.get("/api/session").status_code == 401
    assert client.get("/", headers={"Accept": "text/html"}).status_code == 302


def test_a_sign_in_is_good_once_and_only_in_the_browser_that_started_it(
        console_settings: Settings, issuer_url: str) -> None:
    app = bootstrap.api("console", console_settings)
    mine, other = app.test_client(), app.test_client()
    url = callback_url(mine, issuer_url, "ops-2", "operator")
    authorize_params(other, issuer_url)  # a sign-in of its own: another pre-login cookie
    stolen = other.get(url)
    assert stolen.status_code == 400 and session_cookie(stolen) is None
    # ... which spent the state: the rightful browser must start again too
    assert mine.get(url).status_code == 400
    assert app.test_client().get(callback_url(mine, issuer_url, "ops-2", "operator")
                                 ).status_code == 400  # a browser that started nothing
    assert sign_in(mine, issuer_url, "ops-2", "operator").status_code == 303


def test_bearer_tokens_an_operator_s_pass_and_others_are_refused(client: FlaskClient,
                                                                issuer_url: str) -> None:
    anonymous = client.get("/api/dlqs")
    assert anonymous.status_code == 401 and anonymous.mimetype == "application/problem+json"
    assert anonymous.headers["WWW-Authenticate"].startswith("Bearer")
    student = bearer(issuer_url, "stu-1", "student")
    assert client.get("/api/dlqs", headers=student).status_code == 403
    assert client.get("/", headers=student).status_code == 403
    operator = bearer(issuer_url, "ops-1", "operator")
    assert client.get("/api/conversations", headers=operator).status_code == 200
    me = client.get("/api/session", headers=operator).get_json()
    assert (me["sub"], me["via"], me["csrf_token"]) == ("ops-1", "bearer", None)
    # a bearer token is no ambient credential: a change needs no CSRF token
    assert client.post("/api/dlqs/nope/redrive", headers=operator).status_code == 404
    assert client.get("/api/dlqs", headers=operator).status_code == 503  # past the gate


def test_the_intake_takes_only_the_exporters_secret(
        client: FlaskClient, console_settings: Settings, issuer_url: str) -> None:
    export = ExportTraceServiceRequest().SerializeToString()

    def send(headers: dict[str, str]) -> int:
        return client.post("/v1/traces", data=export, content_type=PROTOBUF,
                           headers=headers).status_code

    assert send({}) == 401
    assert send({OTLP_TOKEN_HEADER: "wrong"}) == 401
    assert send(bearer(issuer_url, "ops-1", "operator")) == 401
    assert send({OTLP_TOKEN_HEADER: str(console_settings.otlp_token)}) == 200
    # no secret configured: nothing is accepted, not even an empty header matching it
    closed = bootstrap.api("console", replace(console_settings, otlp_token=None)).test_client()
    assert closed.post("/v1/traces", data=export, content_type=PROTOBUF,
                       headers={OTLP_TOKEN_HEADER: ""}).status_code == 401


def test_an_unreachable_issuer_is_a_503_that_says_so(console_settings: Settings) -> None:
    down = replace(console_settings, oidc_issuer=f"http://127.0.0.1:{free_port()}")
    reply = bootstrap.api("console", down).test_client().get("/login")
    assert reply.status_code == 503 and "cannot be reached" in reply.get_json()["detail"]
    assert reply.headers["Retry-After"]


def test_an_expired_session_names_nobody() -> None:
    now = [1000.0]
    sessions = Sessions(clock=lambda: now[0])
    principal = Principal("ops-1", frozenset({"operator"}), "school-console")
    session_id, session = sessions.create(principal, token_expires_at=1600.0)
    assert session.expires_at == 1600.0  # the token's expiry, sooner than 8 hours
    with Flask("t").test_request_context(headers={"Cookie": f"console_session={session_id}"}):
        assert sessions.principal(request) == principal
        now[0] = 1600.0
        assert sessions.principal(request) is None and len(sessions) == 0
    assert sessions.create(principal, time.time() + 86400)[1].expires_at == now[0] + 8 * 3600
