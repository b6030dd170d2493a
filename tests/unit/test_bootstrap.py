"""The one bootstrap: a declaration becomes an API whose domain errors are problem+json, and a
worker whose test controls exist only when SCHOOL_SIMULATOR_CONTROLS is on."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from flask_smorest import Blueprint

from shared import bootstrap, web
from shared.access import public
from shared.errors import Conflict, DomainError, Invalid, NotFound, TooLarge
from shared.service import Service, declaration
from shared.settings import ConfigError, Settings
from tests.support.identity import CLIENT, ISSUER, gate


class Overbooked(Conflict):
    """A service's own kind of conflict: mapped like its parent unless declared."""


class Teapot(DomainError):
    """A kind only a service's `errors` can map."""


def app_raising(errors: dict[type[DomainError], int] | None = None) -> Any:
    bp = Blueprint("raise", __name__)
    kinds = {"missing": NotFound("No thing with id 'x'."), "full": Overbooked("It is full."),
             "bad": Invalid("Bad key.", {"Idempotency-Key": ["reused"]}),
             "big": TooLarge("Too big."), "tea": Teapot("I am a teapot.")}

    @bp.route("/raise/<kind>")
    @public
    def raise_(kind: str) -> Any:
        raise kinds[kind]

    return web.create_app("probe", [bp], {}, errors=errors, gate=gate()).test_client()


@pytest.mark.parametrize(("kind", "status"), [("missing", 404), ("full", 409), ("bad", 422),
                                              ("big", 413), ("tea", 400)])
def test_a_command_s_domain_error_is_a_problem_with_its_status(kind: str, status: int) -> None:
    reply = app_raising().get(f"/raise/{kind}")
    assert reply.status_code == status
    assert reply.mimetype == "application/problem+json"
    body = reply.get_json(force=True)
    assert body["status"] == status and body["detail"].endswith(".")
    if kind == "bad":
        assert body["errors"] == {"Idempotency-Key": ["reused"]}


def test_a_service_maps_its_own_domain_errors() -> None:
    assert app_raising({Teapot: 418}).get("/raise/tea").status_code == 418


def settings(tmp_path: Path, controls: bool) -> Settings:
    return Settings(var_dir=tmp_path, simulator_controls=controls, oidc_issuer=ISSUER,
                    oidc_client_ids=(CLIENT,))


@pytest.mark.parametrize("controls", [False, True])
def test_the_simulator_s_routes_are_served_only_when_switched_on(tmp_path: Path,
                                                                 controls: bool) -> None:
    app = bootstrap.api("assignment", settings(tmp_path, controls))
    rules = {rule.rule for rule in app.url_map.iter_rules()}
    assert "/assignments/<id:assignment_id>/submissions" in rules
    assert ("/simulator/grader" in rules) is controls


@pytest.mark.parametrize("controls", [False, True])
def test_the_grader_s_faults_wrap_its_handler_only_when_switched_on(tmp_path: Path,
                                                                   controls: bool) -> None:
    service = declaration("assignment")
    handler = bootstrap.handlers(service, settings(tmp_path, controls))["submission.received"]
    assert (handler is service.consumes["submission.received"]) is not controls


def test_every_service_s_api_builds_from_its_declaration(tmp_path: Path) -> None:
    for name in ("enrollment", "payment", "assignment", "notification", "analytics"):
        app = bootstrap.api(name, settings(tmp_path, False))
        assert app.name == name
        assert not any(r.rule.startswith("/simulator") for r in app.url_map.iter_rules())


@pytest.mark.parametrize("oidc", [{"oidc_issuer": None}, {"oidc_client_ids": ()}])
def test_an_api_without_an_identity_provider_refuses_to_start(tmp_path: Path,
                                                              oidc: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match="OIDC_ISSUER and OIDC_CLIENT_IDS"):
        bootstrap.api("enrollment", replace(settings(tmp_path, False), **oidc))


def test_a_declaration_that_is_not_a_service_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    import services.analytics.service as module
    monkeypatch.setattr(module, "SERVICE", replace(module.SERVICE, name="reporting"))
    with pytest.raises(ValueError, match="must define SERVICE"):
        declaration("analytics")
    assert isinstance(module.SERVICE, Service)
