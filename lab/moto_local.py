#!/usr/bin/env python3
"""Run a local AWS API (moto server) for fumidai: the embedded default.

    moto_local.py run -- ansible-playbook site.yml   # start, run, stop
    moto_local.py start                              # leave it running
    eval "$(moto_local.py env)"                      # export its settings
    moto_local.py stop

The server listens on 127.0.0.1 on a free port. ``start`` records the
endpoint in .cache/moto/state.json so later commands (the lab, make demo-down)
find it. The exported environment is what boto3 and every amazon.aws module
honour: AWS_ENDPOINT_URL plus dummy credentials and a region. Nothing in the
playbooks knows it is talking to moto.

Every resource is created in its final state unless FUMIDAI_MOTO_TRANSITIONS (or
--transition-delays), e.g. instance=2,nat_gateway=3,load_balancer=2, makes instances,
NAT gateways and load balancers pending for that many seconds (lab/moto_transitions.py).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

from lab import moto_transitions

ROOT = Path(__file__).resolve().parent.parent
STATE_DIR = ROOT / ".cache" / "moto"
STATE_FILE = STATE_DIR / "state.json"
DEFAULT_REGION = "ap-northeast-1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def environment(endpoint: str, region: str = DEFAULT_REGION) -> dict[str, str]:
    """The variables that point boto3 and amazon.aws at the local API."""
    return {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": region,
        "AWS_DEFAULT_REGION": region,
    }


def port_of(endpoint: str) -> int:
    """The port of an endpoint this module started (http://127.0.0.1:PORT)."""
    port = urllib.parse.urlsplit(endpoint).port
    if port is None:
        raise ValueError(f"{endpoint!r} names no port")
    return port


def wait_until_up(endpoint: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=2):
                return
        except OSError as err:
            if time.monotonic() > deadline:
                raise SystemExit(f"moto server at {endpoint} did not answer within {timeout:.0f}s") from err
            time.sleep(0.2)


def spawn(port: int, log_path: Path, lab_dir: Path | None = None,
          transitions: dict[str, float] | None = None) -> subprocess.Popen:
    """Start the server in its own process group (so stop kills it whole).

    ``lab_dir``: where a lab publishes its hosts' consoles and its ALB's health (lab/moto_server.py);
    without it the server synthesizes each instance's console. ``transitions``: seconds per kind
    (lab/moto_transitions.py) that instances, NAT gateways, load balancers spend pending; none: immediate.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = open(log_path, "ab")  # noqa: SIM115 - handed to the child
    command = [sys.executable, "-m", "lab.moto_server",
               "--host", "127.0.0.1", "--port", str(port)]
    if lab_dir:
        command += ["--lab-dir", str(lab_dir)]
    if transitions:
        command += ["--transition-delays", moto_transitions.format_delays(transitions)]
    return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def read_state() -> dict | None:
    try:
        state = json.loads(STATE_FILE.read_text())
    except (OSError, ValueError):
        return None
    try:
        os.kill(state["pid"], 0)
    except OSError:
        return None
    return state


def cmd_start(args) -> int:
    state = read_state()
    if state:
        print(f"moto server already running at {state['endpoint']} (pid {state['pid']})")
        return 0
    port = args.port or free_port()
    endpoint = f"http://127.0.0.1:{port}"
    proc = spawn(port, STATE_DIR / "server.log", args.lab_dir, args.transition_delays)
    wait_until_up(endpoint)
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    STATE_FILE.write_text(json.dumps({"pid": proc.pid, "endpoint": endpoint, "region": args.region,
                                      "lab_dir": str(args.lab_dir or "")}))
    print(f"moto server running at {endpoint} (pid {proc.pid})")
    return 0


def stop_pid(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGTERM)
    except OSError:
        return
    for _ in range(50):
        try:
            os.kill(pid, 0)
        except OSError:
            return
        time.sleep(0.1)
    with contextlib.suppress(OSError):
        os.killpg(pid, signal.SIGKILL)


def cmd_stop(_args) -> int:
    state = read_state()
    if state:
        stop_pid(state["pid"])
        print(f"moto server at {state['endpoint']} stopped")
    STATE_FILE.unlink(missing_ok=True)
    return 0


def cmd_env(_args) -> int:
    state = read_state()
    if not state:
        print("moto server is not running: run 'python -m lab.moto_local start'", file=sys.stderr)
        return 1
    for key, value in environment(state["endpoint"], state["region"]).items():
        print(f"export {key}={value}")
    return 0


def cmd_run(args) -> int:
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        print("run needs a command after --", file=sys.stderr)
        return 2
    port = args.port or free_port()
    endpoint = f"http://127.0.0.1:{port}"
    proc = spawn(port, STATE_DIR / f"server-{port}.log", transitions=args.transition_delays)
    try:
        wait_until_up(endpoint)
        env = {**os.environ, **environment(endpoint, args.region)}
        return subprocess.call(command, env=env)
    finally:
        stop_pid(proc.pid)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: a free one)")
    parser.add_argument("--region", default=DEFAULT_REGION)
    parser.add_argument("--transition-delays", type=moto_transitions.parse_delays,
                        default=os.environ.get(moto_transitions.ENVIRONMENT, ""),
                        help="e.g. instance=2,nat_gateway=3,load_balancer=2: seconds each kind stays pending "
                             f"(lab/moto_transitions.py; default: ${moto_transitions.ENVIRONMENT}, else none)")
    sub = parser.add_subparsers(dest="action", required=True)
    start = sub.add_parser("start")
    start.add_argument("--lab-dir", type=Path, help="a lab's directory of consoles and ALB health (the lab sets it)")
    start.set_defaults(func=cmd_start)
    sub.add_parser("stop").set_defaults(func=cmd_stop)
    sub.add_parser("env").set_defaults(func=cmd_env)
    run = sub.add_parser("run")
    run.add_argument("command", nargs=argparse.REMAINDER)
    run.set_defaults(func=cmd_run)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
