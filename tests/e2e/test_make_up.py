"""`make up`'s orchestrator, end to end: it starts LocalStack itself, provisions the whole
topology, migrates every database, starts the Procfile, prints its banner, runs `make demo`'s
scenario against it (which kills the payment worker), survives a SIGKILLed worker (one
once took the whole stack down), and on SIGTERM stops everything it started."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests

from deploy.local import localstack
from deploy.local.localstack import free_port
from deploy.local.tokens import mint
from shared import db
from shared.settings import CONSOLE, ROOT, SERVICES
from shared.topology import TOPOLOGY, physical
from tests.support.messages import wait_for
from tests.support.school import School

DATABASES = (*SERVICES, CONSOLE, "payment_gateway")


def database_urls(db_kind: str, tmp: Path) -> dict[str, str]:
    tag = uuid.uuid4().hex[:8]
    return {s: db.url_of(f"school_up_{tag}_{s}", tmp / "db" / f"{s}.sqlite",
                         postgres=db_kind == "postgres") for s in DATABASES}


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def running(run_dir: Path) -> dict[str, int]:
    """Every process `up` and keep.py keep a pid file for, by name, with its pid."""
    return {path.stem: int(path.read_text()) for path in run_dir.glob("*.pid")}


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def survive_a_killed_worker(up: subprocess.Popen[str], output: list[str], run_dir: Path,
                            school: School, name: str = "enrollment-worker.1") -> None:
    """SIGKILL one worker: keep.py restarts it, every other process (LocalStack too) runs on,
    and an enrollment made after the kill, which needs that worker twice, completes."""
    before = running(run_dir)
    os.kill(before[name], signal.SIGKILL)
    restarted = wait_for(lambda: (p := running(run_dir).get(name)) not in (None, before[name])
                         and p, 30, f"keep.py to restart {name}")
    wait_for(lambda: any(f"{name}: restarted (pid {restarted})" in line for line in output),
             10, "the restart in the terminal")
    assert any(f"[keep] {name}: pid {before[name]} was killed by SIGKILL" in line
               and "restarting it in 1 s" in line for line in output), "".join(output[-50:])
    assert up.poll() is None and alive(restarted) and not alive(before[name])
    assert {n: p for n, p in running(run_dir).items() if n != name} == \
        {n: p for n, p in before.items() if n != name}
    assert all(alive(pid) for pid in before.values() if pid != before[name])
    student, course = school.student(), school.course()
    enrollment_id = school.enroll(student, course)["id"]  # a 202
    # If the killed worker's last long poll was still open, SQS gave it the payment result:
    # it comes back after the queue's 60 s visibility timeout.
    school.wait_status(enrollment_id, "active", timeout=150)
    assert [p["status"] for p in school.payments(enrollment_id)] == ["succeeded"]


# Start-up, the demo (with its minute for a killed worker's messages to come back) and a kill.
@pytest.mark.timeout(600)
def test_up_provisions_everything_and_stops_cleanly(tmp_path: Path, db_kind: str) -> None:
    # make up points every process's trace exporter at the console, and passes OTEL_* on
    up_demo_kill_stop(tmp_path, db_kind, {"OTEL_BSP_SCHEDULE_DELAY": "500"})


def up_demo_kill_stop(tmp_path: Path, db_kind: str, otel: dict[str, str]) -> None:
    endpoint, smtp_port, env_name = (f"http://127.0.0.1:{free_port()}", free_port(),
                                     "up" + uuid.uuid4().hex[:8])
    urls = database_urls(db_kind, tmp_path)
    inherited = {k: v for k, v in os.environ.items()
                 if not k.startswith(("OIDC_", "SCHOOL_TOKEN", "SCHOOL_OTLP"))}
    env = inherited | {"AWS_ENDPOINT_URL": endpoint, "SCHOOL_ENV": env_name,
                        "SMTP_PORT": str(smtp_port), "SCHOOL_VAR_DIR": str(tmp_path),
                        "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
                        "AWS_DEFAULT_REGION": "us-east-1", "PYTHONPATH": str(ROOT), **otel}
    env |= {f"{s.upper()}_DATABASE_URL": url for s, url in urls.items()}
    # not the contract's: a `make up` may be running
    ports = {s: free_port() for s in (*SERVICES, CONSOLE, "issuer")}
    env |= {f"{s.upper()}_PORT": str(p) for s, p in ports.items()}
    up = subprocess.Popen([sys.executable, "-m", "deploy.local.up"], cwd=ROOT, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output: list[str] = []
    reader = threading.Thread(target=lambda: output.extend(iter(up.stdout.readline, "")))
    reader.start()
    try:
        wait_for(lambda: any("the online school is up" in line for line in output)
                 or up.poll() is not None, 240, "the ready banner")
        assert up.poll() is None, "".join(output)
        localstack_pid = int((tmp_path / "run" / "localstack.pid").read_text())
        # plain boto3: localstack-client would prefer $AWS_ENDPOINT_URL (the session's LocalStack)
        creds = {"endpoint_url": endpoint, "region_name": "us-east-1",
                 "aws_access_key_id": "test", "aws_secret_access_key": "test"}
        sqs, sns = boto3.client("sqs", **creds), boto3.client("sns", **creds)
        names = {q.split("/")[-1] for q in sqs.list_queues(QueueNamePrefix=env_name)["QueueUrls"]}
        assert names == {physical(env_name, n) for q in TOPOLOGY.queues
                         for n in (q.name, q.dlq_name)}
        topic = f"arn:aws:sns:us-east-1:000000000000:{physical(env_name, 'school-events')}"
        subs = sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"]
        assert len(subs) == 2
        assert port_open(smtp_port)
        status = subprocess.run([str(Path(sys.executable).parent / "school"), "status"],
                                env=env, capture_output=True, text=True, timeout=60)
        assert status.returncode == 0, status.stderr
        assert all(name in status.stdout for name in names)
        banner = "".join(output)
        for service in SERVICES:  # every API of the Procfile answers
            assert f"http://127.0.0.1:{ports[service]}" in banner
            with urllib.request.urlopen(f"http://127.0.0.1:{ports[service]}/readyz") as ready:
                assert ready.status == 200
        # Lost with LocalStack if a killed worker took the stack down, as one once did.
        marker = sqs.create_queue(QueueName=f"{env_name}-marker")["QueueUrl"]
        before_demo = running(tmp_path / "run")
        assert set(before_demo) == {"honcho", "localstack", "smtp.1", "issuer.1",
                                    "console-api.1"} | {
            f"{s}-{role}.1" for s in SERVICES for role in ("api", "worker")}
        console, issuer = (f"http://127.0.0.1:{ports[CONSOLE]}",
                           f"http://127.0.0.1:{ports['issuer']}")
        assert f"{CONSOLE:<12} {console}  (topology, dead letters" in banner
        assert f"{'issuer':<12} {issuer}  (development sign-in" in banner
        # make up's services trust its issuer, and only its tokens
        assert requests.get(f"{console}/api/topology", timeout=30).status_code == 401
        operator = {"Authorization": f"Bearer {mint(issuer, 'ops-up', ['operator'])}"}
        assert requests.get(f"{console}/api/topology", headers=operator,
                            timeout=30).json()["env"] == env_name
        demo = subprocess.run([sys.executable, "-m", "deploy.local.demo"], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=400)
        (tmp_path / "demo.out").write_text(demo.stdout + demo.stderr)
        assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr
        for outcome in ("Bob: cancelled (payment_declined)", "FLAGGED",
                        "still exactly one email", "Dee: active, payment succeeded",
                        f"$ kill -KILL {before_demo['payment-worker.1']}",
                        "keep.py restarted the payment worker",
                        "Fay, Gus, Hal: active; the backlog drained", "one payment each",
                        "A refused attempt: Bob asks for Ada's enrollment by its id",
                        "refused as if it did not exist", "Demo complete"):
            assert outcome in demo.stdout, demo.stdout
        after_demo = running(tmp_path / "run")
        assert after_demo.pop("payment-worker.1") != before_demo.pop("payment-worker.1")
        assert after_demo == before_demo  # nothing else was restarted
        # Ada 4 (confirmed, 3 grades), Bob 1, Cyd 2, Dee 1, Eve 3 (confirmed, cancelled, refund),
        # Fay, Gus and Hal 1 each (confirmed)
        wait_for(lambda: len(list((tmp_path / "mail").glob("*.eml"))) == 14, 30,
                 "the demo's 14 emails in the SMTP sink")
        demo_in_the_console(console, env | {"SCHOOL_TOKEN": operator["Authorization"][7:]})
        survive_a_killed_worker(up, output, tmp_path / "run",
                                School({s: f"http://127.0.0.1:{p}" for s, p in ports.items()},
                                       token=mint(issuer, "admin-up", ["admin"])))
        assert sqs.get_queue_url(QueueName=f"{env_name}-marker")["QueueUrl"] == marker
        assert localstack.healthy(endpoint)
        for service in SERVICES:
            with urllib.request.urlopen(f"http://127.0.0.1:{ports[service]}/readyz") as ready:
                assert ready.status == 200
        started = time.monotonic()
        up.send_signal(signal.SIGTERM)
        assert up.wait(timeout=60) == 0, "".join(output[-20:])
        took = time.monotonic() - started
    finally:
        if up.poll() is None:  # a failed assertion: stop it as a user would, then make down
            up.send_signal(signal.SIGTERM)
            try:
                up.wait(timeout=60)
            except subprocess.TimeoutExpired:
                up.kill()
        subprocess.run([sys.executable, "-m", "deploy.local.down"], cwd=ROOT, env=env,
                       capture_output=True, timeout=60)
        reader.join(timeout=10)
        for url in urls.values():
            db.drop_database(url)
    assert took < 30
    assert not localstack.healthy(endpoint) and not port_open(smtp_port)
    assert not running(tmp_path / "run")  # keep.py's pid files too
    wait_for(lambda: not Path(f"/proc/{localstack_pid}").exists(), 10, "LocalStack to exit")


def demo_in_the_console(console: str, env: dict[str, str]) -> None:
    """`make demo`'s conversations are in the console, drawn from the spans every process
    exported to it: saga chains with all five services in them, and `school trace` prints one
    (as the operator whose token is SCHOOL_TOKEN)."""
    operator = {"Authorization": f"Bearer {env['SCHOOL_TOKEN']}"}

    def chains() -> list[dict[str, Any]] | None:
        found = requests.get(f"{console}/api/conversations", params={"limit": 200},
                             headers=operator, timeout=30).json()
        conversations = [requests.get(f"{console}/api/conversations/{c['correlation_id']}",
                                      headers=operator, timeout=30).json()
                         for c in found if c["first_event"] == "enrollment.requested"]
        confirmed = [c for c in conversations
                     if [e["event_type"] for e in c["events"]][:4] == [
                         "enrollment.requested", "charge.requested", "payment.succeeded",
                         "enrollment.confirmed"]]
        lanes = {lane for c in conversations for lane in c["lanes"]}
        return confirmed if len(confirmed) >= 5 and set(SERVICES) - {"assignment"} <= lanes \
            else None
    confirmed = wait_for(chains, 60, "the demo's confirmed enrollments in the console")
    graded = requests.get(f"{console}/api/conversations", params={"limit": 200},
                          headers=operator, timeout=30).json()
    assert any(c["first_event"] == "submission.received" for c in graded)  # the assignment's
    printed = subprocess.run([str(Path(sys.executable).parent / "school"), "trace",
                              confirmed[0]["correlation_id"], "--console", console], env=env,
                             capture_output=True, text=True, timeout=60)
    assert printed.returncode == 0, printed.stderr
    assert "enrollment.confirmed  by enrollment" in printed.stdout


def test_demo_without_a_stack_says_what_to_do() -> None:
    env = os.environ | {f"{s.upper()}_PORT": str(free_port()) for s in SERVICES}
    demo = subprocess.run([sys.executable, "-m", "deploy.local.demo"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert demo.returncode == 1
    assert "cannot reach the enrollment service" in demo.stderr
    assert "is `make up` running?" in demo.stderr and "Traceback" not in demo.stderr
