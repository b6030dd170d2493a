"""`make chaos`: the project's own fault-injection run, the delivery guarantees under faults.

It starts a stack of its own (SCHOOL_ENV, LocalStack, ports, databases), drives a seeded workload
through the public HTTP APIs while it kills workers, freezes LocalStack, stops the SMTP sink,
duplicates deliveries and kills database connections, then checks the delivery guarantees
through the APIs and the SMTP sink only. `python -m deploy.local.chaos --help`.
"""


def say(text: str) -> None:
    """Progress for the person at the terminal (command-line output, so print)."""
    print(f"[chaos] {text}", flush=True)
