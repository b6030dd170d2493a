"""Default deny, checked over every app: each route of each service, the console and the
simulators (read from Flask's URL map) declares who may call it (shared.access)."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared import bootstrap
from shared.access import RULE, Rule
from shared.settings import CONSOLE, SERVICES, Settings
from tests.support.identity import CLIENT, ISSUER

PUBLIC = {"/healthz", "/readyz", "/openapi.json", "/docs", "/docs/static/<path:name>",
          "/courses/<id:course_id>"}


def rules(name: str, tmp_path: Path) -> dict[tuple[str, str], Rule | None]:
    """(method, path) -> the rule of its view, for every route of the service's API."""
    settings = Settings(var_dir=tmp_path, simulator_controls=True, oidc_issuer=ISSUER,
                        oidc_client_ids=(CLIENT,))
    app = bootstrap.api(name, settings)
    found: dict[tuple[str, str], Rule | None] = {}
    for route in app.url_map.iter_rules():
        for method in sorted((route.methods or set()) - {"HEAD", "OPTIONS"}):
            found[(method, route.rule)] = getattr(app.view_functions[route.endpoint], RULE,
                                                  None)
    return found


@pytest.mark.parametrize("name", [*SERVICES, CONSOLE])
def test_every_route_declares_its_rule(name: str, tmp_path: Path) -> None:
    found = rules(name, tmp_path)
    assert len(found) >= 5
    missing = sorted(f"{method} {path}" for (method, path), rule in found.items()
                     if rule is None)
    assert not missing, f"{name}: routes without an access rule: {missing}"


@pytest.mark.parametrize("name", SERVICES)
def test_only_the_contract_s_public_routes_are_public(name: str, tmp_path: Path) -> None:
    public = {path for (_, path), rule in rules(name, tmp_path).items()
              if rule is not None and rule.public}
    assert public <= PUBLIC
    assert {"/healthz", "/readyz", "/openapi.json", "/docs"} <= public


def test_the_simulators_are_for_admins_only(tmp_path: Path) -> None:
    for name in ("payment", "assignment"):
        for (method, path), rule in rules(name, tmp_path).items():
            if path.startswith("/simulator"):
                assert rule is not None and set(rule.grants) == {"admin"}, (method, path)


@pytest.mark.parametrize("name", [*SERVICES, CONSOLE])
def test_the_openapi_document_says_who_may_call_each_operation(name: str,
                                                               tmp_path: Path) -> None:
    app = bootstrap.api(name, Settings(var_dir=tmp_path, simulator_controls=True,
                                       oidc_issuer=ISSUER, oidc_client_ids=(CLIENT,)))
    spec = app.test_client().get("/openapi.json").get_json()
    assert spec["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http", "scheme": "bearer", "bearerFormat": "JWT",
        "description": spec["components"]["securitySchemes"]["bearerAuth"]["description"]}
    by_route = {(m, _openapi(p)): r for (m, p), r in rules(name, tmp_path).items()}
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            if method == "parameters":
                continue
            rule = by_route[(method.upper(), path)]
            assert rule is not None
            refusals = set(operation["responses"])
            if rule.public or rule.check is not None:
                assert operation.get("security", []) == [], (method, path)
            else:
                assert operation["security"] == [{"bearerAuth": []}], (method, path)
                assert {"401", "403"} <= refusals, (method, path)
            if "{" in path and not rule.check:
                assert "404" in refusals, (method, path)
            for status in refusals - {"default"}:
                if int(status) >= 400:
                    content = _response(spec, operation["responses"][status])["content"]
                    assert set(content) == {"application/problem+json"}, (method, path, status)


def _openapi(path: str) -> str:
    """/students/<id:student_id> as OpenAPI writes it: /students/{student_id}."""
    import re
    return re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", path)


def _response(spec: dict, response: dict) -> dict:  # type: ignore[type-arg]
    if "$ref" in response:
        return spec["components"]["responses"][response["$ref"].rsplit("/", 1)[1]]  # type: ignore[no-any-return]
    return response
