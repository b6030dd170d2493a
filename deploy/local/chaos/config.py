"""The run's settings: size, seed, database and fault budget, read once from the environment."""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from shared.settings import ROOT, SERVICES, ConfigError, env_number

# Workers whose messages come back within a minute of a SIGKILL (their queue's visibility
# timeout). The assignment queue's is 300 s, so killing its worker makes a run wait 5 minutes.
QUICK_WORKERS = ("enrollment", "payment", "notification", "analytics")


@dataclass(frozen=True)
class ChaosConfig:
    events: int = 1000  # enrollment requests to courses with free seats
    seed: int = 12
    db: str = "sqlite"
    run_dir: Path = ROOT / "var" / "chaos"
    freeze_seconds: float = 30.0
    smtp_down_seconds: float = 20.0
    settle_timeout: float = 900.0
    quiet_seconds: float = 30.0
    kill_services: tuple[str, ...] = SERVICES
    concurrency: int = 8
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:6])

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ChaosConfig:
        env = os.environ if env is None else env
        events = int(env_number(env, "CHAOS_EVENTS", 1000))
        if events < 20:
            raise ConfigError(f"CHAOS_EVENTS must be at least 20, got {events}")
        kill = tuple(s for s in (env.get("CHAOS_KILL") or ",".join(SERVICES)).split(",") if s)
        unknown = set(kill) - set(SERVICES)
        if unknown:
            raise ConfigError(f"CHAOS_KILL names unknown services: {', '.join(sorted(unknown))}")
        return cls(events=events, seed=int(env_number(env, "CHAOS_SEED", 12)),
                   db=env.get("DB") or "sqlite",
                   run_dir=Path(env.get("CHAOS_DIR") or ROOT / "var" / "chaos"),
                   freeze_seconds=env_number(env, "CHAOS_FREEZE_SECONDS", 30),
                   smtp_down_seconds=env_number(env, "CHAOS_SMTP_DOWN_SECONDS", 20),
                   settle_timeout=env_number(env, "CHAOS_SETTLE_TIMEOUT", 900),
                   kill_services=kill)

    @property
    def pace(self) -> float:
        """Seconds the requests are spread over: long enough for every fault to meet traffic."""
        return max(60.0, self.events * 0.15)

    @property
    def school_env(self) -> str:
        return f"chaos-{self.run_id}"

    @property
    def folder(self) -> Path:
        return self.run_dir / f"run-{self.run_id}"

    @property
    def db_prefix(self) -> str:
        """Every PostgreSQL database of this run starts with it (dropped at the end)."""
        return f"chaos_{self.run_id}_"

    def fault_budget(self) -> dict[str, int]:
        """How many times each kind of fault is injected; grows with the workload."""
        n = self.events
        return {"worker_kill": max(3, n // 125), "localstack_freeze": max(1, n // 500),
                "smtp_down": max(1, n // 500), "duplicate_topic": max(2, n // 333),
                "duplicate_fifo": max(2, n // 333),
                "db_kill": max(2, n // 333) if self.db == "postgres" else 0}
