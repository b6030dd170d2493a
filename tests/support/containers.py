"""STACK=containers: LocalStack and PostgreSQL through testcontainers, where a Docker engine
exists (not on this project's machines, so this path is kept small and is not run in CI)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache

# LocalStack's newest images need an auth token; the last 4.x community image does not.
LOCALSTACK_IMAGE = "localstack/localstack:4.13.1"
POSTGRES_IMAGE = "postgres:16-alpine"


@contextmanager
def localstack_container(*services: str) -> Iterator[str]:
    from testcontainers.localstack import LocalStackContainer

    with LocalStackContainer(LOCALSTACK_IMAGE).with_services(
            *(services or ("sqs", "sns", "sts"))) as container:
        yield container.get_url()


@cache
def postgres_base_url() -> str:
    """One PostgreSQL container for the session (stopped by Ryuk when the session ends)."""
    from testcontainers.postgres import PostgresContainer

    container = PostgresContainer(POSTGRES_IMAGE, driver="psycopg").start()
    url: str = container.get_connection_url()
    return url.rsplit("/", 1)[0]
