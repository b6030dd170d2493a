"""The CDK app, synthesized once per session into temporary folders (offline: no AWS
credentials, no cdk CLI, no Docker): as `make synth` does on a fresh clone (no certificate, no
region), and for the edge's tests (tests/deploy/test_edge.py) with a certificate and without
one but with a region."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

# jsii warns on every start that Node 20 has left its support window; it works, and docs/aws.md
# says which Node versions are supported. Silence only that warning, only for Node 20.
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

ENV = "prod"
# Written out, not taken from deploy/aws/: the edge the tests synthesize.
CERTIFICATE_ARN = ("arn:aws:acm:eu-west-1:123456789012:certificate/"
                   "00000000-0000-0000-0000-000000000000")
DOMAIN_NAME = "school.example.com"
INTERNAL_REGION = "us-east-1"


def synthesize(outdir: Path, **options: Any) -> Path:
    from deploy.aws.app import build
    build(ENV, ("smtp.internal", 2525), outdir=outdir, **options).synth()
    return outdir


def load(assembly: Path) -> dict[str, Any]:
    """Each stack's template as an aws_cdk.assertions.Template, by short name."""
    from aws_cdk.assertions import Template
    return {path.name.removesuffix(".template.json").removeprefix(f"School-{ENV}-"):
            Template.from_string(path.read_text())
            for path in assembly.glob("*.template.json")}


@pytest.fixture(scope="session")
def assembly_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthesize(tmp_path_factory.mktemp("cdk.out"))


@pytest.fixture(scope="session")
def templates(assembly_dir: Path) -> dict[str, Any]:
    return load(assembly_dir)


@pytest.fixture(scope="session")
def edge_assembly_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """With CERTIFICATE_ARN and DOMAIN_NAME (the region is the certificate's)."""
    from deploy.aws.edge import Settings
    return synthesize(tmp_path_factory.mktemp("cdk.out.edge"),
                      edge=Settings(certificate_arn=CERTIFICATE_ARN, domain_name=DOMAIN_NAME))


@pytest.fixture(scope="session")
def edge_templates(edge_assembly_dir: Path) -> dict[str, Any]:
    return load(edge_assembly_dir)


@pytest.fixture(scope="session")
def internal_templates(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Without a certificate, but with a region (so with access logs)."""
    return load(synthesize(tmp_path_factory.mktemp("cdk.out.internal"),
                           region=INTERNAL_REGION))
