"""The analytics HTTP API (docs/services/): parse, call a command, respond."""

from __future__ import annotations

from typing import Any

from flask_smorest import Blueprint

from services.analytics import commands
from services.analytics.schemas import SummaryOut
from shared.access import ANY, allow
from shared.runtime import Runtime


def routes(rt: Runtime) -> list[Blueprint]:
    blp = Blueprint("analytics", __name__, description="Counts of the school's events")

    @blp.route("/analytics/summary")
    @allow(admin=ANY)
    @blp.response(200, SummaryOut)
    def summary() -> Any:
        """Every figure from one snapshot, so they agree with each other."""
        return commands.summary(rt.engine)

    return [blp]
