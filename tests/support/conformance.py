"""A bounded, deterministic Schemathesis run against a running service: every operation of its
/openapi.json, positive and negative cases, with four checks: no server
error, and the status code, content type and body its schema documents."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import Failure, FailureGroup
from schemathesis.schemas import APIOperation
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]
MODES = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)


@dataclass
class Findings:
    """What a run covered and what it found, summed over services."""

    operations: int = 0
    cases: int = 0
    seconds: float = 0.0
    failures: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (f"{self.operations} operations, {self.cases} cases, "
                f"{len(self.failures)} failing, {self.seconds:.1f} s")


def run(base_url: str, max_examples: int, findings: Findings,
        headers: dict[str, str] | None = None) -> None:
    """Test every operation of the service at `base_url`, sending `headers` (the caller's
    token) with each case; failures are collected, not raised, so one run reports every
    non-conforming operation at once."""
    started = time.monotonic()
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json", timeout=10)
    with requests.Session() as session:
        for result in schema.get_all_operations():
            operation = result.ok()
            findings.operations += 1
            for mode in MODES:
                _run_operation(operation, mode, base_url, session, max_examples, findings,
                               headers or {})
    findings.seconds += time.monotonic() - started


def _run_operation(operation: APIOperation, mode: GenerationMode, base_url: str,
                   session: requests.Session, max_examples: int, findings: Findings,
                   headers: dict[str, str]) -> None:
    # derandomize: the same cases on every run, so a failure in `make test` is reproducible;
    # no shrinking and no example database: bounded time, nothing written outside the tree.
    @settings(max_examples=max_examples, derandomize=True, database=None, deadline=None,
              phases=[Phase.explicit, Phase.generate], report_multiple_bugs=False,
              suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(generation_mode=mode))
    def check(case: schemathesis.Case) -> None:
        findings.cases += 1
        case.call_and_validate(base_url=base_url, session=session, checks=CHECKS, timeout=10,
                               headers=headers)

    try:
        check()
    except (Failure, FailureGroup) as failure:  # recorded; the test asserts there are none
        findings.failures.append(f"{operation.label} ({mode.value}): {failure}")
    except Unsatisfiable:
        if mode is GenerationMode.POSITIVE:
            raise
        # nothing to make invalid (no parameters, no body): there is no negative case to send
