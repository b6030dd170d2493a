"""Dead letters shown to operators mask payment tokens and emails, in
`school dlq list` and in the console's /api/dlqs, on LocalStack; a redrive still moves the
original message. Each test plants its own dead letters on a topology of its own, with a token
and an address no other test uses, so a string found anywhere in what is shown is a leak."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from deploy.local import issuer
from deploy.local.tokens import mint
from shared import bootstrap, db
from shared.envelope import Envelope
from shared.provision import Provisioner, Report
from shared.settings import Settings
from tests.support.messages import receive_all

SCHOOL = str(Path(sys.executable).parent / "school")


@dataclass(frozen=True)
class Planted:
    """The dead letters of one test and the strings no view may show."""

    env: str
    report: Report
    secrets: tuple[str, ...]
    shown: tuple[str, ...]  # ids and event types every view still shows
    bodies: dict[str, str]  # queue -> the body as it was sent


@pytest.fixture
def env(settings: Settings) -> str:
    return f"{settings.school_env}-m{uuid.uuid4().hex[:6]}"


@pytest.fixture
def topology(sqs, sns, env: str) -> Report:  # type: ignore[no-untyped-def]
    return Provisioner(sqs, sns, env).run()


def _dead_letter(sqs: Any, url: str, body: str, attributes: dict[str, Any],
                 group: str | None) -> None:
    params: dict[str, Any] = {"QueueUrl": url, "MessageBody": body,
                              "MessageAttributes": attributes}
    if group:
        params |= {"MessageGroupId": group, "MessageDeduplicationId": uuid.uuid4().hex}
    sqs.send_message(**params)


def _reason(reason: str, error: str) -> dict[str, Any]:
    return {"dlq_reason": {"DataType": "String", "StringValue": reason},
            "dlq_error": {"DataType": "String", "StringValue": error}}


@pytest.fixture
def planted(sqs, env: str, topology: Report) -> Planted:  # type: ignore[no-untyped-def]
    """A payment request (an opaque token, an address in its error), an SNS-wrapped
    registration (an address), and a poison body that is not JSON (both)."""
    unique = uuid.uuid4().hex[:10]
    token, email = f"opaque-{unique}", f"ada.{unique}@example.org"
    requested = Envelope("enrollment.requested", 2, {
        "enrollment_id": f"en-{unique}", "student_id": f"st-{unique}", "course_id": "co-1",
        "amount_cents": 4900, "currency": "USD", "payment_token": token}, "enrollment")
    registered = Envelope("student.registered", 1, {
        "student_id": f"st-{unique}", "name": "Ada", "email": email}, "enrollment")
    wrapped = json.dumps({"Type": "Notification", "MessageId": str(uuid.uuid4()),
                          "Message": registered.body()})
    poison = f"{{broken payment_token={token} write to {email}"
    bodies = {"payment-requests.fifo": requested.body(), "notifications": wrapped,
              "analytics": poison}
    _dead_letter(sqs, topology.queues["payment-requests.fifo"].dlq_url, requested.body(),
                 requested.attributes() | _reason("permanent_failure",
                                                  f"PermanentError('no card of {email}')"),
                 f"st-{unique}")
    _dead_letter(sqs, topology.queues["notifications"].dlq_url, wrapped,
                 registered.attributes() | _reason("retries_exhausted", "SMTPError"), None)
    _dead_letter(sqs, topology.queues["analytics"].dlq_url, poison,
                 _reason("broken_json", "JSONDecodeError"), None)
    return Planted(env, topology, (token, email, unique + "@"),
                   (requested.event_id, f"en-{unique}", f"st-{unique}",
                    "enrollment.requested", "student.registered", registered.event_id),
                   bodies)


@pytest.fixture
def console(issuer_url: str, database_url: str, tmp_path: Path, settings: Settings,
            env: str, topology: Report, monkeypatch: pytest.MonkeyPatch) -> Iterator[FlaskClient]:
    """The console's API on the test's topology, as in tests/integration/test_console_access.py
    but with the session's LocalStack behind it."""
    db.migrate("console", database_url)
    monkeypatch.setenv("CONSOLE_DATABASE_URL", database_url)
    ours = Settings(school_env=env, aws_endpoint_url=settings.aws_endpoint_url,
                    var_dir=tmp_path, oidc_issuer=issuer_url,
                    oidc_client_ids=tuple(issuer.client_ids().split(",")),
                    otlp_token=secrets.token_urlsafe(24))
    client = bootstrap.api("console", ours).test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {mint(issuer_url, 'ops-1', ['operator'])}"
    yield client


def school(env: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SCHOOL, *args], capture_output=True, text=True, timeout=120,
                          env=os.environ | {"SCHOOL_ENV": env})


def test_school_dlq_list_masks_tokens_and_emails(planted: Planted) -> None:
    printed = ""
    for queue in planted.bodies:
        result = school(planted.env, "dlq", "list", queue)
        assert result.returncode == 0, result.stderr
        assert "1 message(s) in" in result.stdout
        printed += result.stdout + result.stderr
    for secret in planted.secrets:
        assert secret not in printed
    for kept in planted.shown:
        assert kept in printed
    listed = [json.loads(line) for line in printed.splitlines() if line.startswith("{")]
    assert {m["dlq_reason"] for m in listed} == {"permanent_failure", "retries_exhausted",
                                                 "broken_json"}
    payment = next(m for m in listed if m["event_type"] == "enrollment.requested")
    assert json.loads(payment["body"])["data"]["payment_token"] == "***"
    assert payment["dlq_error"] == "PermanentError('no card of ***@***')"


def test_the_console_s_dead_letters_mask_tokens_and_emails(console: FlaskClient,
                                                            planted: Planted) -> None:
    response = console.get("/api/dlqs")
    assert response.status_code == 200, response.text
    for secret in planted.secrets:
        assert secret not in response.text
    for kept in planted.shown:
        assert kept in response.text
    dlqs = {d["queue"]: d for d in response.json["dlqs"]}
    [payment] = dlqs["payment-requests.fifo"]["messages"]
    assert json.loads(payment["body"])["data"]["payment_token"] == "***"
    [wrapped] = dlqs["notifications"]["messages"]
    assert json.loads(json.loads(wrapped["body"])["Message"])["data"]["email"] == "***"
    [poison] = dlqs["analytics"]["messages"]
    assert poison["body"] == "{broken payment_token=*** write to ***@***"


def test_a_redrive_moves_the_original_message(console: FlaskClient, planted: Planted,
                                              sqs) -> None:  # type: ignore[no-untyped-def]
    """Masking is for the eyes only: the console's redrive of one message and `school dlq
    redrive` both hand the consumer the body exactly as it was dead-lettered."""
    queues = planted.report.queues
    [payment] = next(d for d in console.get("/api/dlqs").json["dlqs"]
                     if d["queue"] == "payment-requests.fifo")["messages"]
    moved = console.post(f"/api/dlqs/payment-requests.fifo/messages/{payment['message_id']}"
                         "/redrive")
    assert moved.status_code == 200, moved.text
    result = school(planted.env, "dlq", "redrive", "notifications")
    assert result.returncode == 0, result.stdout + result.stderr
    for queue in ("payment-requests.fifo", "notifications"):
        [message] = receive_all(sqs, queues[queue].url, 1)
        assert message["Body"] == planted.bodies[queue]
