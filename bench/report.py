"""The figures of a bench run: collected per run, printed as a table (median and min-max),
written as JSON, and drawn as a bar chart of the consumer rates against the raw limits."""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PARTS = {"raw": "raw emulator limits (one client, one thread)",
         "consumers": "consumers (one worker process, Procfile defaults)",
         "grading": "grading (assignment worker processes)",
         "hops": "SQS + SNS calls, counted by the proxy",
         "idle": "idle ReceiveMessage calls",
         "api": "POST /enrollments against a raw SendMessage",
         "access": "the access token check, on and off",
         "tracing": "tracing off and on (OTLP/HTTP export)"}


@dataclass
class Figure:
    part: str
    label: str
    unit: str
    values: list[float | None] = field(default_factory=list)

    @property
    def numbers(self) -> list[float]:
        return [v for v in self.values if v is not None]

    def summary(self) -> dict[str, Any]:
        nums = self.numbers
        return {"part": self.part, "label": self.label, "unit": self.unit, "runs": self.values,
                "median": statistics.median(nums) if nums else None,
                "min": min(nums) if nums else None, "max": max(nums) if nums else None}


@dataclass
class Results:
    figures: dict[str, Figure] = field(default_factory=dict)
    details: dict[str, list[Any]] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)

    def add(self, part: str, key: str, label: str, unit: str, value: float | None) -> None:
        self.figures.setdefault(key, Figure(part, label, unit)).values.append(value)

    def detail(self, key: str, value: Any) -> None:
        """A per-run breakdown that is not a single number (calls by action, say)."""
        self.details.setdefault(key, []).append(value)

    def run_value(self, key: str, run: int) -> float | None:
        """The figure measured in run `run` (None if that part did not run)."""
        figure = self.figures.get(key)
        return figure.values[run] if figure and len(figure.values) > run else None

    def median(self, key: str) -> float | None:
        figure = self.figures.get(key)
        return statistics.median(figure.numbers) if figure and figure.numbers else None

    def ratio(self, part: str, key: str, label: str, numerator: float | None,
              denominator: float | None) -> None:
        if numerator is not None and denominator:
            self.add(part, key, label, "x", numerator / denominator)


def number(value: float | None, unit: str) -> str:
    if value is None:
        return "timeout" if unit == "ms" else "-"
    if unit in ("x", "calls/hop"):
        return f"{value:.2f}"
    if unit in ("ms", "per min", "calls/enrollment"):
        return f"{value:.1f}"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.1f}"


def table(results: Results, meta: dict[str, Any]) -> str:
    """The table printed at the end: median and spread (min-max) of the runs of each figure."""
    lines = [f"make bench: DB={meta['db']}, {meta['runs']} run(s), median (min-max); "
             f"{meta['cpus']} CPUs, load {meta['load'][0]} before and {meta['load'][1]} after, "
             f"LocalStack {meta['localstack']}, {meta['seconds']} s",
             f"{'figure':<62} {'median':>9}  {'min-max':<19} unit", "-" * 100]
    for part, title in PARTS.items():
        figures = [f for f in results.figures.values() if f.part == part]
        if not figures:
            continue
        lines.append(title)
        for fig in figures:
            s = fig.summary()
            spread = f"{number(s['min'], fig.unit)}-{number(s['max'], fig.unit)}"
            if not fig.numbers:
                spread = f"in all {len(fig.values)} runs"
            elif len(fig.values) != len(fig.numbers):
                spread += f" ({len(fig.values) - len(fig.numbers)} runs timed out)"
            lines.append(f"  {fig.label:<60} {number(s['median'], fig.unit):>9}  "
                         f"{spread:<19} {fig.unit}")
    lines += [f"note: {text}" for text in results.notes.values()]
    return "\n".join(lines)


def write_json(results: Results, meta: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {"meta": meta, "figures": {k: f.summary() for k, f in results.figures.items()},
            "details": results.details, "notes": results.notes}
    path.write_text(json.dumps(body, indent=2, default=str) + "\n")


# The chart: each panel is one queue kind, raw limits first (grey), then the consumers (blue).
PANELS = {
    "standard queue": [("raw.standard.send", "raw send\nbatch"),
                       ("raw.standard.batch", "raw receive(10)\n+ delete batch"),
                       ("raw.standard.one", "raw receive-one\n/delete-one"),
                       ("consumer.analytics", "analytics\nworker")],
    "FIFO queue": [("raw.fifo.send", "raw send\nbatch"),
                   ("raw.fifo.batch", "raw receive(10)\n+ delete batch"),
                   ("raw.fifo.one", "raw receive-one\n/delete-one"),
                   ("consumer.payment.groups", "payment\n20 groups"),
                   ("consumer.payment.per_message", "payment\ngroup/msg"),
                   ("grading.student", "grading by\nstudent (2 proc.)"),
                   ("grading.assignment", "grading by\nassignment (2 proc.)")],
}


def chart(results: Results, meta: dict[str, Any], path: Path) -> bool:
    """A PNG of the consumer rates against the raw limits; False when nothing to draw."""
    import matplotlib
    matplotlib.use("Agg")  # no display: write the file only
    import matplotlib.pyplot as plt

    panels = {title: [(k, label) for k, label in bars if results.median(k) is not None]
              for title, bars in PANELS.items()}
    panels = {title: bars for title, bars in panels.items() if bars}
    if not panels:
        return False
    fig, axes = plt.subplots(1, len(panels), figsize=(2.5 + 1.1 * sum(map(len, panels.values())),
                                                       5.5), squeeze=False,
                             gridspec_kw={"width_ratios": [len(b) for b in panels.values()]})
    for ax, (title, bars) in zip(axes[0], panels.items(), strict=True):
        summaries = [results.figures[k].summary() for k, _ in bars]
        medians = [s["median"] for s in summaries]
        errors = [[m - s["min"] for m, s in zip(medians, summaries, strict=True)],
                  [s["max"] - m for m, s in zip(medians, summaries, strict=True)]]
        colours = ["#9e9e9e" if k.startswith("raw.") else "#1f77b4" for k, _ in bars]
        ax.bar(range(len(bars)), medians, yerr=errors, capsize=4, color=colours)
        for i, (m, s) in enumerate(zip(medians, summaries, strict=True)):
            ax.annotate(f"{m:,.0f}", (i, s["max"]), textcoords="offset points", xytext=(0, 4),
                        ha="center", fontsize=8)  # above the error bar, not through it
        ax.set_xticks(range(len(bars)), [label for _, label in bars], fontsize=8)
        ax.set_ylim(0, max(s["max"] for s in summaries) * 1.12)
        ax.set_ylabel("messages per second")
        ax.set_title(title)
        ax.grid(axis="y", alpha=0.3)
    runs = "1 run" if meta["runs"] == 1 else f"median and min-max of {meta['runs']} runs"
    fig.suptitle(f"Consumers (blue) against the raw LocalStack limits (grey), one client or "
                 f"worker process; DB={meta['db']}, {runs}", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
