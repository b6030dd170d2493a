"""boto3 clients from settings: plain boto3 with AWS_ENDPOINT_URL, so the same code runs on AWS."""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config

from shared.settings import Settings

# Short timeouts: a relay or consumer waiting on an unreachable endpoint should fail fast and back
# off, not hang. The read timeout stays above the 20 s long poll.
_CONFIG = Config(connect_timeout=3, read_timeout=30,
                 retries={"mode": "standard", "max_attempts": 2})


def client(service: str, settings: Settings, read_timeout: int | None = None) -> Any:
    """A client for the settings' region and endpoint. Pass a short `read_timeout` for calls
    that never long-poll (the relay), so an endpoint that hangs is noticed quickly."""
    config = _CONFIG if read_timeout is None else _CONFIG.merge(Config(read_timeout=read_timeout))
    kwargs: dict[str, Any] = {"region_name": settings.aws_region, "config": config}
    if settings.aws_endpoint_url:
        kwargs["endpoint_url"] = settings.aws_endpoint_url
    return boto3.session.Session().client(service, **kwargs)
