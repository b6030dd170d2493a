"""The infrastructure scanner's exceptions, written next to the resources they concern.

`make test` runs checkov on every synthesized template (tests/deploy/test_scan.py) and fails on
any failed check. Where a check does not fit this deployment, the resource carries a skip with
the reason, in its CloudFormation metadata, where checkov reads it and a reviewer sees it."""

from __future__ import annotations

from aws_cdk import CfnResource
from constructs import IConstruct


def skip(construct: IConstruct, **reasons: str) -> None:
    """Skip the checks named by the keys (CKV_AWS_2=...) on `construct`'s CloudFormation
    resource, each for the reason given."""
    resource = construct if isinstance(construct, CfnResource) else construct.node.default_child
    if not isinstance(resource, CfnResource):
        raise TypeError(f"{construct.node.path}: no CloudFormation resource to mark")
    if not all(reason.strip() for reason in reasons.values()):
        raise ValueError(f"{construct.node.path}: every skipped check needs its reason")
    resource.add_metadata("checkov", {"skip": [{"id": check, "comment": reason}
                                               for check, reason in sorted(reasons.items())]})
