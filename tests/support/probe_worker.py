"""A worker process for the probe topology, built the way every service's worker is built."""

from __future__ import annotations

import os

from shared import db, logs
from shared.bootstrap import serve
from shared.runtime import Runtime
from shared.settings import Settings
from tests.support import probe


def main() -> int:
    settings = Settings.from_env()
    logs.configure("probe", settings.log_level)
    runtime = Runtime("probe", settings, db.make_engine(os.environ["PROBE_DATABASE_URL"]),
                      probe.outbox, probe.inbox,
                      topology=probe.topology(fifo_visibility=4, max_receives=4),
                      catalogue=probe.catalogue())
    dispatcher = runtime.dispatcher({"probe.ping": probe.Probe()})
    consumer = runtime.consumer(dispatcher, runtime.topology.queue("probe-all"))
    return serve(runtime, consumer, relay=None, jobs={})


if __name__ == "__main__":
    raise SystemExit(main())
