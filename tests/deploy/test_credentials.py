"""What the tasks are given to trust and to be trusted, in the synthesized
stacks: the console intake's credential, a secret that CloudFormation generates in the platform
stack and ECS injects into the console's task and into every collector, readable by those tasks'
execution roles alone; and the identity provider, OIDC_ISSUER and OIDC_CLIENT_IDS, in the
environment of every API, worker and migration container, from the identity stack's pool."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from shared.settings import CONSOLE, SERVICES
from tests.deploy.conftest import ENV
from tests.deploy.test_stacks import collector_config, intake_secret_id, of_type, platform_import

# Written out, not imported from deploy/aws/ or shared/: a renamed variable or header must fail.
VARIABLE = "SCHOOL_OTLP_TOKEN"
HEADER = "x-school-otlp-token"
READ = {"secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"}

Where = tuple[str | int, ...]  # a path in a template: keys and list indices


def intake(templates: dict[str, Any]) -> dict[str, str]:
    """How the console's and the services' stacks name the secret: an import of its ARN."""
    platform = templates["platform"]
    return platform_import(platform, {"Ref": intake_secret_id(platform)})


def containers(template: Any) -> Iterator[tuple[str, dict[str, Any]]]:
    """(task definition id, container definition) for every container of the stack."""
    for task_id, task in of_type(template, "AWS::ECS::TaskDefinition").items():
        for container in task["Properties"]["ContainerDefinitions"]:
            yield task_id, container


def environment(container: dict[str, Any]) -> dict[str, Any]:
    return {e["Name"]: e["Value"] for e in container.get("Environment", [])}


def secrets(container: dict[str, Any]) -> dict[str, Any]:
    return {s["Name"]: s["ValueFrom"] for s in container.get("Secrets", [])}


def places(node: Any, target: Any, where: Where = ()) -> Iterator[Where]:
    """Every path in a template at which `target` (a reference) stands."""
    if node == target:
        yield where
    elif isinstance(node, dict | list):
        items = node.items() if isinstance(node, dict) else enumerate(node)
        for key, value in items:
            yield from places(value, target, (*where, key))


def uses(raw: dict[str, Any], target: Any) -> set[tuple[str, str]]:
    """What the template does with the secret, place by place: ("export", ...) from the
    platform, ("injects into", container) through a container's Secrets under VARIABLE,
    ("readable by", role) in a statement granting READ to a task definition's execution role;
    anything else is ("elsewhere", path), which no template may have."""
    resources = raw.get("Resources", {})
    tasks = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::ECS::TaskDefinition"]
    execution_roles = {t["ExecutionRoleArn"]["Fn::GetAtt"][0] for t in tasks
                       if "ExecutionRoleArn" in t}
    return {use(raw, where, execution_roles) for where in places(raw, target)}


def use(raw: dict[str, Any], where: Where, execution_roles: set[str]) -> tuple[str, str]:
    elsewhere = ("elsewhere", "/".join(map(str, where)))
    if (where[0] == "Outputs" and where[2:] == ("Value",)
            and "Export" in raw["Outputs"][where[1]]):
        return ("export", str(where[1]))
    if where[0] != "Resources":
        return elsewhere
    resource = raw["Resources"][where[1]]
    rest = where[2:]
    if (resource["Type"] == "AWS::ECS::TaskDefinition" and len(rest) == 6
            and rest[:2] == ("Properties", "ContainerDefinitions") and rest[3] == "Secrets"
            and rest[5] == "ValueFrom"):
        container = resource["Properties"]["ContainerDefinitions"][rest[2]]
        if container["Secrets"][rest[4]]["Name"] == VARIABLE:
            return ("injects into", f"{where[1]}/{container['Name']}")
    if (resource["Type"] == "AWS::IAM::Policy" and len(rest) in (5, 6)
            and rest[:3] == ("Properties", "PolicyDocument", "Statement")
            and rest[4] == "Resource"):
        statement = resource["Properties"]["PolicyDocument"]["Statement"][rest[3]]
        actions = statement["Action"] if isinstance(statement["Action"], list) else [
            statement["Action"]]
        [role] = resource["Properties"]["Roles"]
        if (statement["Effect"] == "Allow" and "secretsmanager:GetSecretValue" in actions
                and set(actions) <= READ and role["Ref"] in execution_roles):
            return ("readable by", role["Ref"])
    return elsewhere


def expected_uses(template: Any, receivers: set[str]) -> set[tuple[str, str]]:
    """Each container named in `receivers` of each task is given the secret, and the
    execution role of each task it is in may read it: nothing else."""
    wanted = set()
    for task_id, task in of_type(template, "AWS::ECS::TaskDefinition").items():
        names = {c["Name"] for c in task["Properties"]["ContainerDefinitions"]}
        for name in names & receivers:
            wanted.add(("injects into", f"{task_id}/{name}"))
            wanted.add(("readable by", task["Properties"]["ExecutionRoleArn"]["Fn::GetAtt"][0]))
    return wanted


RECEIVERS = {CONSOLE: {"api"}, **{service: {"otel-collector"} for service in SERVICES}}


# --- The console intake's credential -------------------------------------------------------

def test_the_credential_is_generated_by_cloudformation_in_the_platform_stack(
        templates: dict[str, Any]) -> None:
    platform = templates["platform"]
    [secret] = of_type(platform, "AWS::SecretsManager::Secret").values()
    props = secret["Properties"]
    assert props["Name"] == f"school/{ENV}/console/otlp-token"
    generated = props["GenerateSecretString"]
    # the whole string is the token (no JSON template), sent as it is in an HTTP header
    assert set(generated) <= {"ExcludePunctuation", "IncludeSpace", "PasswordLength"}, generated
    assert generated["ExcludePunctuation"] is True and not generated.get("IncludeSpace")
    assert generated["PasswordLength"] >= 32
    assert "SecretString" not in props
    # encrypted as the databases' secrets are: Secrets Manager's AWS-managed key
    for service in SERVICES:
        [database] = of_type(templates[service], "AWS::SecretsManager::Secret").values()
        assert "KmsKeyId" not in database["Properties"] and "KmsKeyId" not in props
    # exported for the other stacks, and used by nothing in the platform stack itself
    raw = platform.to_json()
    ref = {"Ref": intake_secret_id(platform)}
    [output] = [o for o, v in raw["Outputs"].items() if v["Value"] == ref]
    assert uses(raw, ref) == {("export", output)}


def test_no_template_holds_a_secret_s_value(templates: dict[str, Any]) -> None:
    """Every secret of the deployment is generated by CloudFormation (no SecretString), and the
    one property a secret's value is resolved into is a database's master password (Secrets
    Manager's dynamic reference, which CloudFormation keeps out of the template)."""
    for stack, template in templates.items():
        raw = template.to_json()
        assert not [w for w in keys(raw) if w[-1] == "SecretString"], stack
        dynamic = [w for w in strings(raw) if "{{resolve:secretsmanager:" in value_at(raw, w)]
        assert all(w[0] == "Resources" and w[2] == "Properties" for w in dynamic), dynamic
        resolved = {(raw["Resources"][w[1]]["Type"], w[3]) for w in dynamic}
        assert resolved <= {("AWS::RDS::DBInstance", "MasterUserPassword")}, (stack, resolved)
        assert resolved or stack not in SERVICES  # the check sees the databases' reference


def keys(node: Any, where: Where = ()) -> Iterator[Where]:
    """The path of every key of every mapping in `node`."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield (*where, key)
            yield from keys(value, (*where, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from keys(value, (*where, index))


def strings(node: Any, where: Where = ()) -> Iterator[Where]:
    """The path of every string in `node`."""
    if isinstance(node, str):
        yield where
    elif isinstance(node, dict | list):
        items = node.items() if isinstance(node, dict) else enumerate(node)
        for key, value in items:
            yield from strings(value, (*where, key))


def value_at(node: Any, where: Where) -> Any:
    for step in where:
        node = node[step]
    return node


@pytest.mark.parametrize("stack", [CONSOLE, *SERVICES])
def test_the_secret_goes_only_to_its_containers_through_the_execution_roles(
        templates: dict[str, Any], stack: str) -> None:
    """In Secrets (ECS fetches it when the task starts), never in Environment, never in a
    task role's reach, never anywhere else in the template."""
    template = templates[stack]
    assert uses(template.to_json(), intake(templates)) == expected_uses(template,
                                                                        RECEIVERS[stack])
    given = set()
    for task_id, container in containers(template):
        assert VARIABLE not in environment(container), (task_id, container["Name"])
        if VARIABLE in secrets(container):
            assert secrets(container)[VARIABLE] == intake(templates)
            given.add(container["Name"])
    assert given == RECEIVERS[stack]


@pytest.mark.parametrize("service", SERVICES)
def test_each_collector_sends_the_credential_it_is_given(templates: dict[str, Any],
                                                         service: str) -> None:
    """The header names the variable ECS injects: the collector expands ${env:...} when it
    loads its configuration, so the value never is in the configuration itself."""
    for task in of_type(templates[service], "AWS::ECS::TaskDefinition").values():
        [collector] = [c for c in task["Properties"]["ContainerDefinitions"]
                       if c["Name"] == "otel-collector"]
        headers = collector_config(task)["exporters"]["otlphttp/console"]["headers"]
        assert headers == {HEADER: "${env:" + VARIABLE + "}"}
        assert set(secrets(collector)) == {VARIABLE}


def _in_environment(raw: dict[str, Any], secret: Any) -> None:
    _, container = _collector(raw)
    container["Environment"].append({"Name": VARIABLE, "Value": secret})


def _resolved(raw: dict[str, Any], secret: Any) -> None:
    _, container = _collector(raw)
    container["Environment"].append({"Name": VARIABLE, "Value": {"Fn::Join": ["", [
        "{{resolve:secretsmanager:", secret, ":SecretString:::}}"]]}})


def _task_role_reads(raw: dict[str, Any], secret: Any) -> None:
    task, _ = _collector(raw)
    role = task["Properties"]["TaskRoleArn"]["Fn::GetAtt"][0]
    [policy] = [p for p in raw["Resources"].values() if p["Type"] == "AWS::IAM::Policy"
                and p["Properties"]["Roles"] == [{"Ref": role}]]
    policy["Properties"]["PolicyDocument"]["Statement"].append({
        "Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": secret})


def _collector(raw: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    task = next(r for r in raw["Resources"].values() if r["Type"] == "AWS::ECS::TaskDefinition")
    [container] = [c for c in task["Properties"]["ContainerDefinitions"]
                   if c["Name"] == "otel-collector"]
    return task, container


LEAKS: dict[str, Callable[[dict[str, Any], Any], None]] = {
    "in a container's Environment": _in_environment,
    "resolved into a property": _resolved,
    "read by a task role": _task_role_reads,
}


@pytest.mark.parametrize("leak", LEAKS)
def test_the_check_above_fails_on_any_other_use_of_the_secret(templates: dict[str, Any],
                                                              leak: str) -> None:
    service = SERVICES[0]
    raw = copy.deepcopy(templates[service].to_json())
    expected = expected_uses(templates[service], RECEIVERS[service])
    assert uses(raw, intake(templates)) == expected  # as synthesized
    LEAKS[leak](raw, intake(templates))
    assert uses(raw, intake(templates)) != expected


# --- The identity provider -----------------------------------------------------------------

def entry_points(template: Any) -> dict[str, dict[str, Any]]:
    """The API and worker containers (the console's one `api` among them), by task and name:
    every process that checks an access token."""
    return {f"{task_id}/{c['Name']}": c for task_id, c in containers(template)
            if c["Name"] in ("api", "worker")}


def identity_export(identity: Any, kind: str, name: str | None = None) -> dict[str, str]:
    """The import of the identity stack's `kind` resource (the pool, or the client `name`)."""
    found = {logical for logical, r in of_type(identity, kind).items()
             if name is None or r["Properties"]["ClientName"] == name}
    [logical] = found
    return platform_import(identity, {"Ref": logical})


@pytest.mark.parametrize("stack", [CONSOLE, *SERVICES])
def test_every_container_trusts_the_identity_stack_s_user_pool(templates: dict[str, Any],
                                                               stack: str) -> None:
    """OIDC_ISSUER is the pool's issuer URL, built from its id; OIDC_CLIENT_IDS its three app
    clients: imports of the identity stack's outputs, in the environment (not secrets) of every
    API, worker and migration container."""
    identity = templates["identity"]
    pool = identity_export(identity, "AWS::Cognito::UserPool")
    clients = [identity_export(identity, "AWS::Cognito::UserPoolClient", f"school-{ENV}-{name}")
               for name in ("web", "console", "cli")]
    issuer = {"Fn::Join": ["", ["https://cognito-idp.", {"Ref": "AWS::Region"},
                                ".amazonaws.com/", pool]]}
    client_ids = {"Fn::Join": ["", [clients[0], ",", clients[1], ",", clients[2]]]}
    found = entry_points(templates[stack])
    assert len(found) == (1 if stack == CONSOLE else 2)
    for task_id, container in containers(templates[stack]):
        if container["Name"] == "otel-collector":
            continue
        env = environment(container)
        assert (env["OIDC_ISSUER"], env["OIDC_CLIENT_IDS"]) == (issuer, client_ids), task_id
        assert not {n for n in secrets(container) if n.startswith("OIDC_")}, task_id


def test_the_console_signs_in_with_its_own_client(templates: dict[str, Any]) -> None:
    console_client = identity_export(templates["identity"], "AWS::Cognito::UserPoolClient",
                                     f"school-{ENV}-console")
    [container] = entry_points(templates[CONSOLE]).values()
    assert environment(container)["CONSOLE_CLIENT_ID"] == console_client


def test_the_environment_s_oidc_settings_are_ignored(monkeypatch: pytest.MonkeyPatch,
                                                     tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """A shell left with `make up`'s OIDC_ISSUER must not point production elsewhere: synth
    says it ignores it, and every task still trusts the pool."""
    from deploy.aws import app
    monkeypatch.setenv("OIDC_ISSUER", "http://127.0.0.1:8006")
    monkeypatch.setenv("OIDC_CLIENT_IDS", "school-web")
    monkeypatch.delenv("CERTIFICATE_ARN", raising=False)
    monkeypatch.delenv("DOMAIN_NAME", raising=False)
    monkeypatch.setattr(app, "ROOT", tmp_path)
    assert app.main() == 0
    assert "OIDC_ISSUER and OIDC_CLIENT_IDS are ignored" in capsys.readouterr().out
    synthesized = (tmp_path / "cdk.out" / f"School-{ENV}-payment.template.json").read_text()
    assert "127.0.0.1:8006" not in synthesized and "cognito-idp." in synthesized
