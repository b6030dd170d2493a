"""`make down`: stop whatever a `make up` left running, from its pid files under var/run/."""

from __future__ import annotations

from deploy.local import localstack
from deploy.local.up import OWN_PIDFILES, forget_processes
from shared.settings import Settings


def main() -> int:
    run_dir = Settings.from_env().var_dir / "run"
    stopped = 0
    for name in OWN_PIDFILES:
        pidfile = run_dir / f"{name}.pid"
        if not pidfile.exists():
            continue
        if localstack.stop_group(int(pidfile.read_text())):
            print(f"stopped {name}")
            stopped += 1
        pidfile.unlink(missing_ok=True)  # `up` may have removed it while stopping
    forget_processes(run_dir)
    if not stopped:
        print("nothing was running")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
