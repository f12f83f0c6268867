"""The lab follows the local AWS API: every few seconds, moto's routes, groups and ACLs reach the running hosts.

On AWS a changed route table takes effect at once; in the lab a host's routes are rules inside its container,
applied by `python -m lab step net`. `follow` does that in a loop, so a route a NAT standby's watchdog replaces
through the API (roles/nat_instance) moves the lab's traffic within seconds, as the VPC router would. Only
running hosts are touched; an instance that appeared or went away in the API is reported (a `hosts` step
rebuilds the lab), never acted on.

    python -m lab follow start [--interval S]   in the background (.cache/lab/follow.pid, follow.log)
    python -m lab follow stop
    python -m lab follow run [--interval S]     in the foreground
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from lab import config, moto_local, state, steps
from lab.proc import LabError, log

PID_FILE = config.CACHE / "follow.pid"
LOG_FILE = config.CACHE / "follow.log"
DEFAULT_INTERVAL = 1.0


def reconcile_once() -> int:
    """One pass: re-apply what changed on the hosts that are in both the lab and the API; returns how many."""
    old = state.load_state()
    if not old:
        raise LabError(steps.NOT_UP)
    plan = steps.current_plan()
    before, after = steps.node_addresses(old), steps.node_addresses(plan)
    common = {name for name, where in after.items() if before.get(name) == where}
    if before == after:
        state.save_state(plan)
    else:
        gone, new = sorted(set(before) - common), sorted(set(after) - common)
        log(f"the API's instances differ from the lab's (gone: {', '.join(gone) or '-'}; new: "
            f"{', '.join(new) or '-'}): following the others; `python -m lab step hosts` rebuilds the lab")
    return steps.apply_changes(plan, common)


def run(interval: float) -> None:
    stopping = False

    def stop(_signum, _frame):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    log(f"following the local AWS API every {interval:g}s")
    while not stopping:
        started = time.monotonic()
        try:
            changed = reconcile_once()
            if changed:
                log(f"{time.strftime('%H:%M:%S')} {changed} host(s) re-applied")
        except LabError as exc:
            # A transient API error or a host being rebuilt: the next pass tries again.
            log(f"{time.strftime('%H:%M:%S')} not applied: {exc}")
        time.sleep(max(0.0, interval - (time.monotonic() - started)))


def running_pid() -> int | None:
    try:
        pid = int(PID_FILE.read_text())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def start(interval: float) -> int:
    pid = running_pid()
    if pid:
        log(f"already following (pid {pid})")
        return pid
    config.CACHE.mkdir(parents=True, exist_ok=True)
    with open(LOG_FILE, "ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "lab", "follow", "run", "--interval", str(interval)],
                                cwd=config.ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    PID_FILE.write_text(f"{proc.pid}\n")
    log(f"following the local AWS API in the background (pid {proc.pid}, {LOG_FILE.relative_to(config.ROOT)})")
    return proc.pid


def stop() -> bool:
    pid = running_pid()
    PID_FILE.unlink(missing_ok=True)
    if not pid:
        return False
    moto_local.stop_pid(pid)
    return True
