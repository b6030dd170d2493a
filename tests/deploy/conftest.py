"""The CDK app, synthesized once per session into a temporary folder (offline: no AWS
credentials, no cdk CLI, no Docker)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

# jsii warns on every start that Node 20 has left its support window; it works, and the README
# says which Node versions are supported. Silence only that warning, only for Node 20.
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

ENV = "prod"


@pytest.fixture(scope="session")
def assembly_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from deploy.aws.app import build
    outdir = tmp_path_factory.mktemp("cdk.out")
    build(ENV, ("smtp.internal", 2525), outdir=outdir).synth()
    return outdir


@pytest.fixture(scope="session")
def templates(assembly_dir: Path) -> dict[str, Any]:
    """Each stack's template as an aws_cdk.assertions.Template, by short name."""
    from aws_cdk.assertions import Template
    return {path.name.removesuffix(".template.json").removeprefix(f"School-{ENV}-"):
            Template.from_string(path.read_text())
            for path in assembly_dir.glob("*.template.json")}
