"""Configuration, read once from the environment into a typed object (docs/configuration.md)."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SERVICES = ("enrollment", "payment", "assignment", "notification", "analytics")
# The one place the services' ports are written: everything else reads them from here.
PORTS = {"enrollment": 8001, "payment": 8002, "assignment": 8003, "notification": 8004,
         "analytics": 8005, "console": 8000, "issuer": 8006}
# The operations console: a process in the services' shape, with a database of its
# own (the spans it has received), that consumes no queue and publishes nothing.
CONSOLE = "console"


# Queue and topic names allow ASCII letters, digits, - and _; the env prefixes them all.
ENV_NAME = re.compile(r"[A-Za-z0-9-]{1,20}")


class ConfigError(ValueError):
    """A setting has a value the platform cannot use."""


def env_number(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw in (None, ""):
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number, got {raw!r}")
    if value < 0:
        raise ConfigError(f"{name} must not be negative, got {raw!r}")
    return value


@dataclass(frozen=True)
class Settings:
    school_env: str = "dev"
    aws_endpoint_url: str | None = None
    aws_region: str = "us-east-1"
    var_dir: Path = ROOT / "var"
    db: str = "sqlite"
    pg_host: str = "127.0.0.1"
    pg_port: int = 5432
    pg_user: str = "postgres"
    pg_password: str = ""
    log_level: str = "INFO"
    consumer_concurrency: int | None = None  # None: by database (Runtime.handler_threads)
    backoff_base: float = 2.0
    backoff_cap: float = 120.0
    shutdown_deadline: float = 20.0
    relay_interval: float = 0.2
    outbox_retention_hours: float = 24.0
    inbox_retention_days: float = 15.0
    idempotency_retention_hours: float = 24.0  # how long a retry may replay a POST's response
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 1025
    simulator_controls: bool = False
    oidc_issuer: str | None = None  # the identity provider's `iss` (Cognito, the local issuer)
    oidc_client_ids: tuple[str, ...] = ()  # the app clients whose access tokens are accepted
    console_client_id: str = "school-console"  # the console's own app client, for its sign-in
    otlp_token: str | None = None  # the credential the console's span intake accepts

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        db = env.get("DB", "sqlite") or "sqlite"
        if db not in ("sqlite", "postgres"):
            raise ConfigError(f"DB must be 'sqlite' or 'postgres', got {db!r}")
        school_env = env.get("SCHOOL_ENV", "dev") or "dev"
        if not ENV_NAME.fullmatch(school_env):
            raise ConfigError(
                f"SCHOOL_ENV must be letters, digits and dashes, at most 20, got {school_env!r}"
            )
        return cls(
            school_env=school_env,
            aws_endpoint_url=env.get("AWS_ENDPOINT_URL") or None,
            aws_region=env.get("AWS_DEFAULT_REGION") or env.get("AWS_REGION") or "us-east-1",
            var_dir=Path(env.get("SCHOOL_VAR_DIR") or ROOT / "var"),
            db=db,
            pg_host=env.get("PGHOST", "127.0.0.1") or "127.0.0.1",
            pg_port=int(env_number(env, "PGPORT", 5432)),
            pg_user=env.get("PGUSER", "postgres") or "postgres",
            pg_password=env.get("PGPASSWORD", ""),
            log_level=(env.get("LOG_LEVEL") or "INFO").upper(),
            consumer_concurrency=(max(1, int(env_number(env, "SCHOOL_CONSUMER_CONCURRENCY", 1)))
                                  if env.get("SCHOOL_CONSUMER_CONCURRENCY") else None),
            backoff_base=env_number(env, "SCHOOL_BACKOFF_BASE", 2.0),
            backoff_cap=env_number(env, "SCHOOL_BACKOFF_CAP", 120.0),
            shutdown_deadline=env_number(env, "SCHOOL_SHUTDOWN_DEADLINE", 20.0),
            relay_interval=env_number(env, "SCHOOL_RELAY_INTERVAL", 0.2),
            outbox_retention_hours=env_number(env, "SCHOOL_OUTBOX_RETENTION_HOURS", 24.0),
            inbox_retention_days=env_number(env, "SCHOOL_INBOX_RETENTION_DAYS", 15.0),
            idempotency_retention_hours=env_number(env, "SCHOOL_IDEMPOTENCY_RETENTION_HOURS",
                                                   24.0),
            smtp_host=env.get("SMTP_HOST", "127.0.0.1") or "127.0.0.1",
            smtp_port=int(env_number(env, "SMTP_PORT", 1025)),
            simulator_controls=env.get("SCHOOL_SIMULATOR_CONTROLS", "0") == "1",
            oidc_issuer=(env.get("OIDC_ISSUER") or "").strip() or None,
            oidc_client_ids=tuple(c.strip() for c in (env.get("OIDC_CLIENT_IDS") or "")
                                  .split(",") if c.strip()),
            console_client_id=env.get("CONSOLE_CLIENT_ID") or "school-console",
            otlp_token=env.get("SCHOOL_OTLP_TOKEN") or None,
        )
