"""Each service's declaration loads and agrees with the topology: a handler for every event its
queues receive, none for an event that never reaches them, and the platform tables it needs."""

from __future__ import annotations

from dataclasses import replace

import pytest
from sqlalchemy import MetaData

from shared.events import CATALOGUE
from shared.handling import Context
from shared.service import Service, declaration, routed_events
from shared.settings import SERVICES, ConfigError
from shared.topology import TOPOLOGY

ROUTED = {
    "enrollment": {"payment.succeeded", "payment.failed", "payment.refunded"},
    "payment": {"charge.requested", "refund.requested"},
    "assignment": {"submission.received"},
    "notification": {"contact.recorded", "student.registered", "enrollment.confirmed",
                     "enrollment.cancelled", "payment.refunded", "submission.graded"},
    # every event of the topic: all but the private messages, which carry personal data
    "analytics": set(CATALOGUE.event_types()) - {"charge.requested", "contact.recorded"},
}


def _nothing(ctx: Context) -> None:
    raise AssertionError("never called")


def test_the_five_services_are_the_ones_known() -> None:
    assert set(SERVICES) == set(ROUTED)


@pytest.mark.parametrize("name", SERVICES)
def test_each_declaration_loads_and_matches_the_topology(name: str) -> None:
    service = declaration(name)
    assert isinstance(service, Service)
    assert service.name == name
    service.check(TOPOLOGY, CATALOGUE)  # raises ConfigError on any disagreement
    assert set(service.consumes) == ROUTED[name] == routed_events(name, TOPOLOGY, CATALOGUE)
    assert all(callable(handler) for handler in service.consumes.values())
    assert {"inbox", "handler_attempts"} <= set(service.metadata.tables)
    assert (service.outbox is not None) == bool(CATALOGUE.produced_by(name))


@pytest.mark.parametrize("name", SERVICES)
def test_a_declaration_missing_a_routed_event_is_refused(name: str) -> None:
    service = declaration(name)
    dropped = sorted(service.consumes)[0]
    partial = replace(service, consumes={t: h for t, h in service.consumes.items()
                                         if t != dropped})
    with pytest.raises(ConfigError, match=dropped):
        partial.check(TOPOLOGY, CATALOGUE)


@pytest.mark.parametrize("name", [n for n in SERVICES if ROUTED[n] != ROUTED["analytics"]])
def test_a_declaration_handling_an_unrouted_event_is_refused(name: str) -> None:
    service = declaration(name)
    unrouted = sorted(set(CATALOGUE.event_types()) - ROUTED[name])[0]
    extra = replace(service, consumes={**service.consumes, unrouted: _nothing})
    with pytest.raises(ConfigError, match=unrouted):
        extra.check(TOPOLOGY, CATALOGUE)


def test_an_event_type_outside_the_catalogue_is_refused_too() -> None:
    analytics = declaration("analytics")  # receives every event: only an unknown one is extra
    extra = replace(analytics, consumes={**analytics.consumes, "course.renamed": _nothing})
    with pytest.raises(ConfigError, match="course.renamed"):
        extra.check(TOPOLOGY, CATALOGUE)


@pytest.mark.parametrize("name", SERVICES)
def test_a_declaration_without_its_platform_tables_is_refused(name: str) -> None:
    bare = replace(declaration(name), metadata=MetaData())
    with pytest.raises(ConfigError, match="platform tables"):
        bare.check(TOPOLOGY, CATALOGUE)


def test_a_module_whose_service_has_another_name_is_refused(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from services.payment import service as module
    monkeypatch.setattr(module, "SERVICE", replace(module.SERVICE, name="billing"))
    with pytest.raises(ConfigError, match="services/payment/service.py"):
        declaration("payment")
