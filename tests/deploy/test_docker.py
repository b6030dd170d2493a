"""The Dockerfile and the compose file, read as files: this machine has no Docker engine to build
or run them (docs/docker.md), so these tests hold them to the Procfile and to `make up`."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from shared.settings import CONSOLE, PORTS, ROOT, SERVICES

DOCKER = ROOT / "deploy" / "docker"


# `make up` runs each process under its restarting supervisor; a container's restart policy does
# that job under compose, so the commands are compared without it.
SUPERVISOR = "python -m deploy.local.keep -- "


def procfile() -> dict[str, str]:
    lines = (ROOT / "deploy" / "local" / "Procfile").read_text().splitlines()
    entries = (line.split(": ", 1) for line in lines if line and not line.startswith("#"))
    return {name: command.removeprefix(SUPERVISOR) for name, command in entries}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    services: dict[str, Any] = yaml.safe_load((DOCKER / "compose.yaml").read_text())["services"]
    return services


@pytest.fixture(scope="module")
def dockerfile() -> str:
    return (DOCKER / "Dockerfile").read_text()


def test_every_procfile_process_runs_with_the_same_command(compose: dict[str, Any]) -> None:
    processes = procfile()
    # the SMTP sink, the identity issuer and the console too
    assert len(processes) == 3 + 2 * len(SERVICES)
    for name, command in processes.items():
        assert name in compose, f"{name} of the Procfile is missing from compose.yaml"
        ran = " ".join(compose[name]["command"])
        assert ran.startswith(command), (name, ran)


def test_apis_publish_the_contract_ports(compose: dict[str, Any]) -> None:
    for service in (*SERVICES, CONSOLE):
        api = compose[f"{service}-api"]
        assert api["ports"] == [f"127.0.0.1:{PORTS[service]}:{PORTS[service]}"]
        assert api["environment"]["SERVICE"] == service  # the HEALTHCHECK's port


def test_services_get_the_environment_of_make_up(compose: dict[str, Any]) -> None:
    for service in SERVICES:
        for role in ("api", "worker"):
            env = compose[f"{service}-{role}"]["environment"]
            assert env["AWS_ENDPOINT_URL"] == "http://localstack:4566"
            assert env["SCHOOL_ENV"] == "dev" and env["DB"] == "postgres"
            assert env["PGHOST"] == "postgres" and env["SMTP_HOST"] == "smtp"
            assert env["SCHOOL_SIMULATOR_CONTROLS"] == "1"  # as `make up` sets it
            assert env["OIDC_ISSUER"] == "http://issuer:8006"
            assert set(env["OIDC_CLIENT_IDS"].split(",")) == {
                "school-web", "school-console", "school-cli"}
            assert env["OTEL_EXPORTER_OTLP_HEADERS"].startswith("x-school-otlp-token=${")
            assert compose[f"{service}-{role}"]["depends_on"] == {
                "setup": {"condition": "service_completed_successfully"}}


def test_setup_provisions_and_migrates_every_service_first(compose: dict[str, Any]) -> None:
    script = compose["setup"]["command"][-1]
    assert script.splitlines()[0] == "school provision"
    loop = re.search(r"for service in ([a-z ]+); do", script)
    assert loop and loop.group(1).split() == [*SERVICES, CONSOLE]
    assert "python -m shared.serve migrate" in script
    assert set(compose["setup"]["depends_on"]) == {"localstack", "postgres"}


def test_localstack_is_the_pinned_community_release(compose: dict[str, Any]) -> None:
    pins = (ROOT / "deploy" / "local" / "localstack-requirements.txt").read_text()
    version = re.search(r"^localstack-core==(\S+)$", pins, re.M)
    assert version
    assert compose["localstack"]["image"] == f"localstack/localstack:{version.group(1)}"
    assert version.group(1).startswith("4.")


def test_the_image_is_multi_stage_slim_and_unprivileged(dockerfile: str) -> None:
    stages = re.findall(r"^FROM (\S+)", dockerfile, re.M)
    assert len(stages) == 2 and all(s.startswith("python:3.11-slim") for s in stages)
    assert re.search(r"^ARG SERVICE$", dockerfile, re.M)
    user = re.findall(r"^USER (\S+)", dockerfile, re.M)
    assert user and user[-1] not in ("root", "0")
    joined = dockerfile.replace("\\\n", " ")  # continuation lines, as Docker reads them
    check = re.search(r"^HEALTHCHECK (.+)$", joined, re.M)
    assert check and "/healthz" in check.group(1)
    cmd = re.search(r"^CMD (.+)$", dockerfile, re.M)
    assert cmd and "python -m shared.serve api" in cmd.group(1)


def test_the_docker_context_leaves_out_the_local_state() -> None:
    ignored = (ROOT / ".dockerignore").read_text().split()
    for path in (".git", ".venv", ".venv-localstack", "var", "cdk.out"):
        assert path in ignored
