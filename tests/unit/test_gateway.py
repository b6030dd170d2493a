"""The simulated gateway's sandbox tokens and idempotency (on a throwaway SQLite file)."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.payment.gateway import GatewayUnavailable, SimulatedGateway
from shared import db


@pytest.fixture
def gateway(tmp_path: Path) -> SimulatedGateway:
    return SimulatedGateway(db.make_engine(f"sqlite:///{tmp_path / 'gateway.sqlite'}"))


def test_sandbox_tokens(gateway: SimulatedGateway) -> None:
    assert gateway.charge("k1", "tok_ok", 100).succeeded
    declined = gateway.charge("k2", "tok_declined", 100)
    assert (declined.outcome, declined.reason) == ("declined", "card_declined")
    assert gateway.charge("k3", "tok_mystery", 100).reason == "invalid_token"


def test_flaky_fails_n_times_then_succeeds(gateway: SimulatedGateway) -> None:
    for _ in range(2):
        with pytest.raises(GatewayUnavailable):
            gateway.charge("k", "tok_flaky_2", 100)
    assert gateway.charge("k", "tok_flaky_2", 100).succeeded
    assert gateway.attempts("k") == 3


def test_down_until_the_outage_ends(gateway: SimulatedGateway) -> None:
    assert gateway.outage()
    with pytest.raises(GatewayUnavailable):
        gateway.charge("k", "tok_down", 100)
    gateway.set_outage(False)
    assert gateway.charge("k", "tok_down", 100).succeeded and not gateway.outage()


def test_a_repeated_key_gets_the_first_result_and_is_recorded(gateway: SimulatedGateway) -> None:
    assert gateway.charge("k", "tok_declined", 100).outcome == "declined"
    assert gateway.charge("k", "tok_ok", 100).outcome == "declined"  # first result wins
    assert gateway.attempts("k") == 2
