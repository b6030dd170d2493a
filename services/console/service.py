"""The operations console: a process in the services' shape that consumes no queue
and publishes nothing. It reads the queues (attributes, and the DLQs' messages, which it can
redrive) and keeps the spans the other processes export to it, from which it draws every
conversation. It traces nothing itself: its own requests would be journeys of no one.

Its operators sign in with the school's identity provider (services/console/signin.py); the
gate (shared.access) takes their session beside bearer tokens."""

from __future__ import annotations

from dataclasses import dataclass

from services.console import api, tables
from services.console.queues import Queues, Unreachable
from services.console.sessions import Sessions
from services.console.signin import SignIn
from shared import aws
from shared.runtime import Runtime
from shared.service import Service
from shared.settings import Settings


@dataclass(frozen=True)
class Console:
    """What the console's routes share, built once per process: the queues it reads and its
    sign-in, whose sessions the gate asks about every request."""

    queues: Queues
    signin: SignIn


def _queues(settings: Settings) -> Queues:
    cloudwatch = None if settings.aws_endpoint_url else aws.client("cloudwatch", settings)
    return Queues(aws.client("sqs", settings), settings, cloudwatch)


def _resources(settings: Settings) -> Console:
    return Console(_queues(settings), SignIn.of(settings))


def _sessions(runtime: Runtime) -> Sessions:
    return runtime.resources.signin.sessions  # type: ignore[no-any-return]


SERVICE = Service("console", tables.metadata, routes=api.routes, resources=_resources,
                  errors={Unreachable: 503}, traced=False, sessions=_sessions)
