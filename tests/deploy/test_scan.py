"""Every synthesized template, scanned by checkov: no failed check, and every skipped
one carries its reason next to its resource (deploy/aws/scan.py).

checkov runs from its own environment, .venv-scan (`make venv`), offline (--skip-download).
Without a Prisma Cloud key checkov gives no severities, so the rule is stricter than "no high or
critical finding": no finding at all that is not explained."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from shared.settings import CONSOLE, ROOT, SERVICES

CHECKOV = ROOT / ".venv-scan" / "bin" / "checkov"


def checkov(assembly_dir: Path) -> dict[str, Any]:
    if not CHECKOV.exists():
        pytest.fail(f"{CHECKOV.relative_to(ROOT)} is missing: `make venv` installs the scanner")
    run = subprocess.run([str(CHECKOV), "--directory", str(assembly_dir), "--framework",
                          "cloudformation", "--skip-download", "--compact", "--output", "json"],
                         capture_output=True, text=True, timeout=600)
    # checkov exits 1 when a check failed; anything else but 0 is the scanner itself failing
    assert run.returncode in (0, 1), run.stderr[-2000:]
    report: dict[str, Any] = json.loads(run.stdout)
    return report


@pytest.fixture(scope="module")
def scans(assembly_dir: Path, edge_assembly_dir: Path) -> dict[str, dict[str, Any]]:
    """The app as `make synth` makes it on a fresh clone (internal, region-agnostic), and with
    a certificate (public HTTPS, the web ACL, the access logs; tests/deploy/test_edge.py)."""
    return {"without-certificate": checkov(assembly_dir),
            "with-certificate": checkov(edge_assembly_dir)}


@pytest.fixture(params=["without-certificate", "with-certificate"])
def scan(request: pytest.FixtureRequest, scans: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return scans[request.param]


def test_every_template_was_scanned(scan: dict[str, Any]) -> None:
    files = {r["file_path"] for kind in ("passed_checks", "failed_checks", "skipped_checks")
             for r in scan["results"][kind]}
    assert {Path(f).name for f in files} == {
        f"School-prod-{part}.template.json"
        for part in ("platform", "identity", "messaging", *SERVICES, CONSOLE)}
    assert scan["summary"]["parsing_errors"] == 0
    assert scan["summary"]["passed"] > 400


def test_no_check_fails(scan: dict[str, Any]) -> None:
    failed = [f"{f['check_id']} {f['check_name']}: {f['resource']} ({Path(f['file_path']).name})"
              for f in scan["results"]["failed_checks"]]
    assert failed == []


def test_every_skip_gives_its_reason(scan: dict[str, Any]) -> None:
    skipped = scan["results"]["skipped_checks"]
    assert skipped, "expected the documented skips (deploy/aws/scan.py)"
    for check in skipped:
        assert len(check["check_result"].get("suppress_comment") or "") > 30, (check["check_id"],
                                                               check["resource"])


def test_the_seeds_checks_pass_and_are_not_skipped(scan: dict[str, Any]) -> None:
    """The seeds' security controls are checked, not waved through: queue and topic encryption
    with a KMS key, the trail's encryption, validation and multi-region, the bucket's public
    access block and versioning, key rotation."""
    passed = {c["check_id"] for c in scan["results"]["passed_checks"]}
    skipped = {c["check_id"] for c in scan["results"]["skipped_checks"]}
    seeds = {"CKV_AWS_27",  # SQS queue encrypted
             "CKV_AWS_26",  # SNS topic encrypted
             "CKV_AWS_35",  # CloudTrail logs encrypted with KMS
             "CKV_AWS_36",  # CloudTrail log file validation
             "CKV_AWS_67",  # CloudTrail in every region
             "CKV_AWS_7",  # KMS key rotation
             "CKV_AWS_53", "CKV_AWS_54", "CKV_AWS_55", "CKV_AWS_56",  # S3 public access block
             "CKV_AWS_21"}  # S3 versioning
    assert seeds <= passed and not seeds & skipped, (seeds - passed, seeds & skipped)


def test_with_a_certificate_the_edge_s_checks_pass_and_are_not_skipped(
        scans: dict[str, dict[str, Any]]) -> None:
    """HTTPS with TLS 1.2 or newer on every listener, access logs on every load balancer, the
    web ACL's Log4j protection: checked, no longer waved through (deploy/aws/fargate.py skips
    them only without a certificate, or without a region)."""
    results = scans["with-certificate"]["results"]
    passed = {c["check_id"] for c in results["passed_checks"]}
    skipped = {c["check_id"] for c in results["skipped_checks"]}
    edge = {"CKV_AWS_2",  # ALB protocol HTTPS (the port 80 listener only redirects)
            "CKV_AWS_103",  # TLS 1.2 or newer
            "CKV_AWS_91",  # access logs
            "CKV_AWS_192"}  # WAF against Log4j's JNDI lookups
    assert edge <= passed and not edge & skipped, (edge - passed, edge & skipped)
