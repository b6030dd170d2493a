"""The edge in front of the APIs, in both syntheses: with CERTIFICATE_ARN and
DOMAIN_NAME every API load balancer is internet-facing on HTTPS 443 under a TLS 1.3 policy, its
port 80 only redirects, and the platform's WAFv2 web ACL (two AWS managed rule groups, a rate
limit per client address) is associated with it; without them every load balancer is internal
and nothing listens for the internet. Each load balancer keeps its access logs in an encrypted,
private, TLS-only bucket of its own stack that expires them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from deploy.aws.app import build, check_edge
from deploy.aws.edge import RATE_LIMIT, Settings
from shared.settings import CONSOLE, SERVICES
from tests.deploy.conftest import CERTIFICATE_ARN, DOMAIN_NAME, ENV
from tests.deploy.test_stacks import of_type, platform_import

# Written out, not imported from deploy/aws/: a weaker policy or a longer retention must fail.
TLS13 = "ELBSecurityPolicy-TLS13-1-2-Res-2021-06"
MANAGED = ["AWSManagedRulesCommonRuleSet", "AWSManagedRulesKnownBadInputsRuleSet"]
LOG_DAYS = 90
# The regions' ELB log-delivery accounts, as AWS documents them for access logs.
ELB_ACCOUNTS = {"eu-west-1": "156460612806", "us-east-1": "127311923021"}
BALANCED = [*SERVICES, CONSOLE]


def the_balancer(template: Any) -> tuple[str, dict[str, Any]]:
    [(balancer_id, balancer)] = of_type(template,
                                        "AWS::ElasticLoadBalancingV2::LoadBalancer").items()
    return balancer_id, balancer


def listeners(template: Any) -> dict[int, dict[str, Any]]:
    found = [x["Properties"] for x in
             of_type(template, "AWS::ElasticLoadBalancingV2::Listener").values()]
    by_port = {x["Port"]: x for x in found}
    assert len(by_port) == len(found)
    return by_port


def balancer_ingress(template: Any) -> list[dict[str, Any]]:
    """Every rule admitting traffic to the load balancer's security group."""
    _, balancer = the_balancer(template)
    [group] = balancer["Properties"]["SecurityGroups"]
    group_id = group["Fn::GetAtt"][0]
    rules = list(of_type(template, "AWS::EC2::SecurityGroup")[group_id]["Properties"].get(
        "SecurityGroupIngress", []))
    rules += [r["Properties"] for r in of_type(template, "AWS::EC2::SecurityGroupIngress").values()
              if r["Properties"]["GroupId"] == group]
    return rules


def vpc_cidr(platform: Any) -> dict[str, str]:
    [vpc_id] = of_type(platform, "AWS::EC2::VPC")
    return platform_import(platform, {"Fn::GetAtt": [vpc_id, "CidrBlock"]})


def attributes(balancer: dict[str, Any]) -> dict[str, Any]:
    return {a["Key"]: a["Value"] for a in balancer["Properties"]["LoadBalancerAttributes"]}


# --- With a certificate ----------------------------------------------------------------------

@pytest.mark.parametrize("service", SERVICES)
def test_each_api_serves_https_with_tls13_to_the_internet_and_80_only_redirects(
        edge_templates: dict[str, Any], service: str) -> None:
    stack = edge_templates[service]
    balancer_id, balancer = the_balancer(stack)
    assert balancer["Properties"]["Scheme"] == "internet-facing"
    found = listeners(stack)
    assert set(found) == {443, 80}
    https, http = found[443], found[80]
    assert (https["Protocol"], https["SslPolicy"]) == ("HTTPS", TLS13)
    assert https["Certificates"] == [{"CertificateArn": CERTIFICATE_ARN}]
    [forward] = https["DefaultActions"]
    assert forward["Type"] == "forward"
    assert http["Protocol"] == "HTTP" and "SslPolicy" not in http
    assert http["DefaultActions"] == [{"Type": "redirect", "RedirectConfig": {
        "Protocol": "HTTPS", "Port": "443", "StatusCode": "HTTP_301"}}]
    assert {https["LoadBalancerArn"]["Ref"], http["LoadBalancerArn"]["Ref"]} == {balancer_id}
    # anyone may connect to both ports, and to nothing else
    assert sorted((r["FromPort"], r["ToPort"], r["CidrIp"]) for r in balancer_ingress(stack)) == [
        (80, 80, "0.0.0.0/0"), (443, 443, "0.0.0.0/0")]


def test_the_console_stays_internal_but_speaks_https(edge_templates: dict[str, Any]) -> None:
    stack = edge_templates[CONSOLE]
    _, balancer = the_balancer(stack)
    assert balancer["Properties"]["Scheme"] == "internal"
    found = listeners(stack)
    assert set(found) == {443, 80}
    assert (found[443]["Protocol"], found[443]["SslPolicy"]) == ("HTTPS", TLS13)
    assert [a["Type"] for a in found[80]["DefaultActions"]] == ["redirect"]
    cidr = vpc_cidr(edge_templates["platform"])
    assert sorted((r["FromPort"], r["CidrIp"] == cidr) for r in balancer_ingress(stack)) == [
        (80, True), (443, True)]
    assert of_type(stack, "AWS::WAFv2::WebACLAssociation") == {}
    # gunicorn takes the scheme from X-Forwarded-Proto of the VPC's addresses only, so the
    # sign-in's callback and the Secure cookie see HTTPS
    [task] = of_type(stack, "AWS::ECS::TaskDefinition").values()
    [container] = task["Properties"]["ContainerDefinitions"]
    env = {e["Name"]: e["Value"] for e in container["Environment"]}
    assert env["FORWARDED_ALLOW_IPS"] == cidr


def test_the_web_acl_holds_the_managed_groups_and_a_rate_limit_per_address(
        edge_templates: dict[str, Any]) -> None:
    [acl] = [a["Properties"] for a in
             of_type(edge_templates["platform"], "AWS::WAFv2::WebACL").values()]
    assert (acl["Scope"], acl["DefaultAction"]) == ("REGIONAL", {"Allow": {}})
    assert acl["VisibilityConfig"]["CloudWatchMetricsEnabled"] is True
    rules = sorted(acl["Rules"], key=lambda r: r["Priority"])
    [rate] = [r for r in rules if "RateBasedStatement" in r["Statement"]]
    assert rules[0] is rate  # counted before anything else is inspected
    statement = rate["Statement"]["RateBasedStatement"]
    assert statement["AggregateKeyType"] == "IP"
    assert (statement["Limit"], statement["EvaluationWindowSec"]) == (
        RATE_LIMIT.requests, RATE_LIMIT.window_seconds) == (3000, 300)
    assert rate["Action"]["Block"]["CustomResponse"]["ResponseCode"] == 429
    managed = [r for r in rules if "ManagedRuleGroupStatement" in r["Statement"]]
    assert [r["Statement"]["ManagedRuleGroupStatement"]["Name"] for r in managed] == MANAGED
    assert len(rules) == 3
    for rule in managed:
        group = rule["Statement"]["ManagedRuleGroupStatement"]
        assert group["VendorName"] == "AWS" and rule["OverrideAction"] == {"None": {}}
        # only the core set's 8 KB body limit is counted rather than blocked (an essay is
        # larger); every other rule of both groups blocks
        overrides = group.get("RuleActionOverrides", [])
        assert overrides == ([{"Name": "SizeRestrictions_BODY", "ActionToUse": {"Count": {}}}]
                             if group["Name"] == MANAGED[0] else [])


def test_the_rate_limit_is_one_waf_accepts() -> None:
    assert RATE_LIMIT.window_seconds in (60, 120, 300, 600)
    assert RATE_LIMIT.requests >= 10


@pytest.mark.parametrize("service", SERVICES)
def test_every_public_load_balancer_is_behind_the_web_acl(edge_templates: dict[str, Any],
                                                          service: str) -> None:
    platform, stack = edge_templates["platform"], edge_templates[service]
    [acl_id] = of_type(platform, "AWS::WAFv2::WebACL")
    balancer_id, _ = the_balancer(stack)
    [association] = [a["Properties"] for a in
                     of_type(stack, "AWS::WAFv2::WebACLAssociation").values()]
    assert association == {"ResourceArn": {"Ref": balancer_id},
                           "WebACLArn": platform_import(platform, {"Fn::GetAtt": [acl_id, "Arn"]})}


# --- Without a certificate -------------------------------------------------------------------

@pytest.mark.parametrize("synthesis", ["templates", "internal_templates"])
def test_without_a_certificate_no_load_balancer_faces_the_internet(
        request: pytest.FixtureRequest, synthesis: str) -> None:
    found = request.getfixturevalue(synthesis)
    cidr = vpc_cidr(found["platform"])
    for name in BALANCED:
        stack = found[name]
        _, balancer = the_balancer(stack)
        assert balancer["Properties"]["Scheme"] == "internal", name
        only = listeners(stack)
        assert set(only) == {80} and only[80]["Protocol"] == "HTTP", name
        assert [(r["FromPort"], r["CidrIp"]) for r in balancer_ingress(stack)] == [(80, cidr)]
        assert "0.0.0.0/0" not in json.dumps(balancer_ingress(stack)), name
        assert of_type(stack, "AWS::WAFv2::WebACLAssociation") == {}, name
    # no web ACL to pay for
    assert of_type(found["platform"], "AWS::WAFv2::WebACL") == {}


# --- Access logs -----------------------------------------------------------------------------

@pytest.mark.parametrize(("synthesis", "region"), [("edge_templates", "eu-west-1"),
                                                   ("internal_templates", "us-east-1")])
@pytest.mark.parametrize("name", BALANCED)
def test_each_load_balancer_logs_to_a_private_encrypted_bucket_that_expires(
        request: pytest.FixtureRequest, synthesis: str, region: str, name: str) -> None:
    stack = request.getfixturevalue(synthesis)[name]
    balancer_id, balancer = the_balancer(stack)
    [(bucket_id, bucket)] = of_type(stack, "AWS::S3::Bucket").items()
    found = attributes(balancer)
    assert (found["access_logs.s3.enabled"], found["access_logs.s3.bucket"],
            found["access_logs.s3.prefix"]) == ("true", {"Ref": bucket_id}, name)
    props = bucket["Properties"]
    # SSE-S3: the only encryption ELB's log delivery writes to
    assert props["BucketEncryption"]["ServerSideEncryptionConfiguration"] == [
        {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
    assert props["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True, "BlockPublicPolicy": True, "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True}
    assert props["OwnershipControls"] == {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}
    [rule] = props["LifecycleConfiguration"]["Rules"]
    assert (rule["Status"], rule["ExpirationInDays"]) == ("Enabled", LOG_DAYS)
    assert bucket["DeletionPolicy"] == "Retain"
    [(policy_id, policy)] = of_type(stack, "AWS::S3::BucketPolicy").items()
    assert policy["Properties"]["Bucket"] == {"Ref": bucket_id}
    statements = policy["Properties"]["PolicyDocument"]["Statement"]
    assert any(s["Effect"] == "Deny" and s["Condition"] == {"Bool": {
        "aws:SecureTransport": "false"}} for s in statements)
    writers = {json.dumps(s["Principal"], sort_keys=True) for s in statements
               if s["Effect"] == "Allow" and s["Action"] == "s3:PutObject"}
    elb_account = {"AWS": {"Fn::Join": ["", ["arn:", {"Ref": "AWS::Partition"},
                                             f":iam::{ELB_ACCOUNTS[region]}:root"]]}}
    assert writers == {json.dumps(elb_account, sort_keys=True),
                       json.dumps({"Service": "delivery.logs.amazonaws.com"})}
    for statement in statements:
        if statement["Action"] == "s3:PutObject":
            assert f"/{name}/AWSLogs/" in json.dumps(statement["Resource"])
    assert policy_id in balancer["DependsOn"]  # the grant exists before the first log


def test_without_a_region_there_is_no_bucket_and_the_scanner_is_told_why(
        templates: dict[str, Any]) -> None:
    for name in BALANCED:
        stack = templates[name]
        _, balancer = the_balancer(stack)
        assert not any(key.startswith("access_logs.") for key in attributes(balancer))
        assert of_type(stack, "AWS::S3::Bucket") == {}
        [skipped] = balancer["Metadata"]["checkov"]["skip"]
        assert skipped["id"] == "CKV_AWS_91" and "region" in skipped["comment"]


# --- The settings ----------------------------------------------------------------------------

@pytest.mark.parametrize(("edge", "region", "message"), [
    (Settings(certificate_arn=CERTIFICATE_ARN), "eu-west-1", "go together"),
    (Settings(domain_name=DOMAIN_NAME), None, "go together"),
    (Settings("arn:aws:iam::123456789012:role/x", DOMAIN_NAME), None, "ACM certificate"),
    (Settings(CERTIFICATE_ARN, "School.Example.COM"), "eu-west-1", "lowercase DNS name"),
    (Settings(CERTIFICATE_ARN, DOMAIN_NAME), "us-east-1", "in its own region"),
])
def test_a_half_or_wrong_edge_is_refused(edge: Settings, region: str | None,
                                         message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_edge(edge, region)
    with pytest.raises(ValueError, match=message):
        build(ENV, edge=edge, region=region)


def test_synth_says_in_one_line_that_nothing_faces_the_internet(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    from deploy.aws import app
    for name in ("CERTIFICATE_ARN", "DOMAIN_NAME", "OIDC_ISSUER", "OIDC_CLIENT_IDS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setattr(app, "ROOT", tmp_path)
    assert app.main() == 0
    lines = capsys.readouterr().out.splitlines()
    [line] = [x for x in lines if "CERTIFICATE_ARN" in x or "internet" in x]
    assert line == ("[synth] CERTIFICATE_ARN and DOMAIN_NAME are not set: every API load "
                    "balancer is internal (HTTP inside the VPC only), none faces the internet")
    assert not any("region" in x for x in lines)  # AWS_REGION gave it
    synthesized = tmp_path / "cdk.out" / f"School-{ENV}-payment.template.json"
    assert '"access_logs.s3.enabled"' in synthesized.read_text()
