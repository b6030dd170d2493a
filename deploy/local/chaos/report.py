"""The run's result: a table for the terminal and the same as JSON under the run's folder."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deploy.local.chaos.checks import Finding


@dataclass
class Report:
    config: dict[str, Any]
    driven: dict[str, int] = field(default_factory=dict)
    faults: list[tuple[str, str]] = field(default_factory=list)
    fault_counts: dict[str, int] = field(default_factory=dict)
    invariants: dict[str, Finding] = field(default_factory=dict)
    dead_letters: dict[str, int] = field(default_factory=dict)  # before the redrive
    notes: dict[str, Any] = field(default_factory=dict)
    duration: float = 0.0
    error: str | None = None

    @property
    def violations(self) -> int:
        return sum(f.count for f in self.invariants.values())

    @property
    def passed(self) -> bool:
        return self.error is None and bool(self.invariants) and self.violations == 0

    def table(self) -> str:
        lines = [f"make chaos: {self.config['events']} enrollments, seed {self.config['seed']}, "
                 f"DB={self.config['db']}, SCHOOL_ENV={self.config['school_env']}", ""]
        lines += _section("events driven", list(self.driven.items()))
        lines += _section("faults injected", self.faults)
        lines += _section("dead-lettered before the redrive (queue, event, dlq_reason)",
                          list(self.dead_letters.items()) or [("(none)", "")])
        lines += _section("invariant (violations)",
                          [(name, f.count) for name, f in self.invariants.items()])
        for name, finding in self.invariants.items():
            lines += [f"  {name}: {example}" for example in finding.examples]
        lines += ["", "notes"] + [f"  {k}: {json.dumps(v, default=str)}"
                                  for k, v in self.notes.items()]
        lines += ["", f"duration: {self.duration:.0f} s"]
        if self.error:
            lines.append(f"the run did not finish: {self.error}")
        verdict = "PASS: every invariant held" if self.passed else (
            f"FAIL: {self.violations} violation(s)" if not self.error else "FAIL")
        return "\n".join(lines + [verdict])

    def as_json(self) -> dict[str, Any]:
        return {"config": self.config, "events_driven": self.driven,
                "faults": self.fault_counts, "fault_details": dict(self.faults),
                "dead_letters_before_redrive": self.dead_letters,
                "invariants": {name: {"violations": f.count, "examples": f.examples}
                               for name, f in self.invariants.items()},
                "violations": self.violations, "passed": self.passed, "notes": self.notes,
                "duration_seconds": round(self.duration, 1), "error": self.error}

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.as_json(), indent=2, default=str) + "\n")


def _section(title: str, rows: list[tuple[str, Any]]) -> list[str]:
    width = max([len(title)] + [len(str(k)) for k, _ in rows])
    out = [title, "-" * (width + 10)]
    out += [f"{k!s:<{width}}  {v!s:>7}" for k, v in rows]
    return out + [""]
