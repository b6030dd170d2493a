"""Fixtures of the services' unit tests: a recording producer, and an in-memory database built
from the metadata of the service the test module declares as `SERVICE`."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from tests.support.fakes import FakeProducer, memory_engine


@pytest.fixture
def producer() -> FakeProducer:
    return FakeProducer()


@pytest.fixture
def engine(request: pytest.FixtureRequest) -> Iterator[Engine]:
    engine = memory_engine(request.module.SERVICE.metadata)
    yield engine
    engine.dispose()
