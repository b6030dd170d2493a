"""The operations console (issue 17): a process in the services' shape that consumes no queue
and publishes nothing. It reads the queues (attributes, and the DLQs' messages, which it can
redrive) and keeps the spans the other processes export to it, from which it draws every
conversation. It traces nothing itself: its own requests would be journeys of no one."""

from services.console import api, tables
from services.console.queues import Queues, Unreachable
from shared import aws
from shared.service import Service
from shared.settings import Settings


def _queues(settings: Settings) -> Queues:
    cloudwatch = None if settings.aws_endpoint_url else aws.client("cloudwatch", settings)
    return Queues(aws.client("sqs", settings), settings, cloudwatch)


SERVICE = Service("console", tables.metadata, routes=api.routes, resources=_queues,
                  errors={Unreachable: 503}, traced=False)
