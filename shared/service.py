"""A service's declaration: everything the platform needs to know about it, in one place.

Each service writes one `services/<name>/service.py` holding `SERVICE = Service(...)`: its name,
its tables, the handler of every event it consumes, its routes, its background jobs, the
resources its handlers and routes share, its test controls and its own domain errors.
`shared.bootstrap` builds the API process, the worker process and the migrations from it, and
nothing else in the platform knows a service by more than its name.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import MetaData, Table

from shared.errors import DomainError
from shared.events import Catalogue
from shared.handling import Handler
from shared.settings import ConfigError
from shared.topology import Topology

if TYPE_CHECKING:
    from flask_smorest import Blueprint

    from shared.runtime import Runtime
    from shared.settings import Settings

Routes = Callable[["Runtime"], Sequence["Blueprint"]]
Job = Callable[[threading.Event], None]  # runs until the event is set


@dataclass(frozen=True)
class Simulator:
    """Test and demo controls, served and applied only with SCHOOL_SIMULATOR_CONTROLS=1, so that
    no production path carries them: routes that set the switches, and `around`, which wraps
    each handler of the worker (the grader's injected faults)."""

    routes: Routes
    around: Callable[[Handler], Handler] | None = None


@dataclass(frozen=True)
class Service:
    name: str
    metadata: MetaData  # every table of its own database, the platform's included
    consumes: Mapping[str, Handler] = field(default_factory=dict)  # event type -> handler
    on_duplicate: Handler | None = None  # runs for an already handled event (analytics counts)
    routes: Routes | None = None  # its API, built with the process's Runtime
    jobs: Mapping[str, Callable[[Runtime], Job]] = field(default_factory=dict)  # worker loops
    # Built once per process from the settings; handlers get it as ctx.resources and routes as
    # runtime.resources (the payment gateway).
    resources: Callable[[Settings], Any] | None = None
    simulator: Simulator | None = None
    errors: Mapping[type[DomainError], int] = field(default_factory=dict)  # beyond shared.web's
    # Exports its spans when tracing is on; not the operations console, whose own requests are
    # no one's journey.
    traced: bool = True
    # A browser sign-in beside bearer tokens (shared.access.Sessions), built per API process.
    sessions: Callable[[Runtime], Any] | None = None

    def table(self, name: str) -> Table | None:
        return self.metadata.tables.get(name)

    @property
    def outbox(self) -> Table | None:
        return self.table("outbox")

    @property
    def inbox(self) -> Table | None:
        return self.table("inbox")

    def check(self, topology: Topology, catalogue: Catalogue) -> None:
        """Refuse a declaration that disagrees with the topology: a handler for every event its
        queues receive and none for any other, and the platform tables that go with it."""
        routed = routed_events(self.name, topology, catalogue)
        missing, extra = routed - set(self.consumes), set(self.consumes) - routed
        if missing or extra:
            raise ConfigError(
                f"{self.name}: its queues receive {sorted(routed)}; handlers are missing for "
                f"{sorted(missing)} and have no queue for {sorted(extra)}")
        needs = ({"inbox", "handler_attempts"} if routed else set()) | (
            {"outbox"} if catalogue.produced_by(self.name) else set())
        if absent := needs - set(self.metadata.tables):
            raise ConfigError(f"{self.name}: its metadata lacks the platform tables "
                              f"{sorted(absent)} (shared.tables)")


def routed_events(service: str, topology: Topology, catalogue: Catalogue) -> set[str]:
    """The event types that reach the queues `service` consumes: a subscribed queue gets every
    event of the topic (all but the private ones) or those its filter names, and a direct
    queue gets the events sent to it."""
    events: set[str] = set()
    for spec in topology.consumed_by(service):
        if spec.subscribed:
            events |= set(spec.filter_events or topology.on_topic(catalogue.event_types()))
        events |= set(spec.sent_here)
    return events


def declaration(name: str) -> Service:
    """The declaration of the service called `name` (services/<name>/service.py)."""
    service = importlib.import_module(f"services.{name}.service").SERVICE
    if not isinstance(service, Service) or service.name != name:
        raise ConfigError(f"services/{name}/service.py must define SERVICE = Service({name!r}, "
                          "...)")
    return service
