"""Alembic's env.py for every service: the target metadata is the service's declaration's
(shared.db.alembic_config names the service and its versions directory)."""

from alembic import context

from shared.migrations import run_env
from shared.service import declaration

run_env(declaration(context.config.get_main_option("service") or "").metadata)
