"""Failover benchmark (issue 14): the NAT standby's outage and the bastion fallback's cost, on the running lab.

Needs a lab provisioned with both resilience options and following the local API:

    python -m lab up --bastion-per-az --nat-standby && python -m lab follow start
    python bench/failover_bench.py [--repeat 3]

NAT standby. web02 (behind the NAT instance) asks the lab internet server for its source address every
--probe-interval seconds. The NAT instance's container is stopped mid-run (what a crashed or hung instance
looks like from outside: EC2 still says running); the standby's watchdog notices, replaces the route through
the local API, `lab follow` moves web02's route, and web02's requests leave through the standby. Printed per
run: the outage (last answer through the NAT instance to first through the standby), the time until the
API's route names the standby. Then the NAT instance is started again and playbooks/nat_failback.yml
points the route back (timed too). The median of --repeat runs is the figure (goal: under 30 s).

Bastion per zone. `ansible private -m ping` with both bastions up, then with web01's own zone's bastion
stopped: cold (no failure remembered: each hop waits the connect timeout once, until the first hop's
failure file lets the others skip it) and remembered (the failure file is there). Printed: medians and
ratios to both up, and unreachable hosts (the goal: 0).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

from lab import podman, resilience
from lab import state as lab_state
from lab import steps as lab_steps

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def nodes_by_name() -> dict[str, dict]:
    current = lab_state.load_state()
    if not current:
        raise SystemExit("the lab is not up: python -m lab up --bastion-per-az --nat-standby")
    return {n["name"]: n for n in current["nodes"]}


def playbook(env: dict, name: str, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "ansible-playbook"), name, "-e", "@lab/vars.yml", *extra], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)


def nat_failover_once(env: dict, nodes: dict, interval: float, timeout: float) -> dict:
    url = f"http://{lab_state.load_state()['internet_server_ip']}/"
    run = resilience.nat_failover(env, nodes, url, interval, timeout)
    result = {"outage": run["outage"] if run["outage"] is not None else float("nan"),
              "route": run["route"] if run["route"] is not None else float("nan")}
    # Fail back: the NAT instance returns, then the deliberate playbook moves the route.
    primary = nodes["nat-instance"]
    podman.podman("start", primary["container"])
    resilience.wait_for_instance_units(primary["container"])
    started = time.monotonic()
    proc = playbook(env, "playbooks/nat_failback.yml")
    result["failback"] = time.monotonic() - started
    client = lab_state.aws_client(env, "ec2")
    subnet_id = resilience.subnet_of(client, nodes["web02"]["resource_id"])
    if proc.returncode != 0 or resilience.route_target(client, subnet_id) != primary["resource_id"]:
        raise SystemExit(f"fail-back did not return the route to the NAT instance:\n{proc.stdout[-3000:]}")
    return result


def ping_private(env: dict) -> tuple[float, int, int]:
    started = time.monotonic()
    proc = subprocess.run([str(BIN / "ansible"), "private", "-m", "ansible.builtin.ping", "-o"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    return time.monotonic() - started, proc.stdout.count("| SUCCESS"), proc.stdout.count("| UNREACHABLE!")


def close_masters(control_dir: Path, forget_failures: bool) -> None:
    for sock in control_dir.glob("*"):
        if sock.is_socket():
            subprocess.run(["ssh", "-o", f"ControlPath={sock}", "-O", "exit", "x"], capture_output=True, timeout=30)
            sock.unlink(missing_ok=True)
    if forget_failures:
        for marker in control_dir.glob("*.failed"):
            marker.unlink()


def bastion_fallback(env: dict, nodes: dict, repeat: int) -> dict:
    control_dir = Path(env["ANSIBLE_SSH_CONTROL_PATH_DIR"])
    control_dir.mkdir(parents=True, exist_ok=True)
    down = nodes["bastion"]
    results: dict[str, list] = {"both up": [], "one down, cold": [], "one down, remembered": []}
    for _ in range(repeat):
        close_masters(control_dir, forget_failures=True)
        results["both up"].append(ping_private(env))
    podman.podman("stop", "-t", "2", down["container"])
    try:
        for _ in range(repeat):
            close_masters(control_dir, forget_failures=True)
            results["one down, cold"].append(ping_private(env))
            close_masters(control_dir, forget_failures=False)
            results["one down, remembered"].append(ping_private(env))
    finally:
        podman.podman("start", down["container"])
        resilience.wait_for_instance_units(down["container"])
        close_masters(control_dir, forget_failures=True)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3, help="runs of each measurement; the median is reported")
    parser.add_argument("--probe-interval", type=float, default=1.0, help="seconds between web02's requests")
    parser.add_argument("--timeout", type=float, default=120, help="seconds to wait for a failover")
    parser.add_argument("--only", choices=["nat", "bastion"], help="one of the two measurements")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    nodes = nodes_by_name()
    missing = {"bastion-2", "nat-instance-standby"} - set(nodes)
    if missing:
        raise SystemExit(f"the lab has no {', '.join(sorted(missing))}: "
                         "python -m lab up --bastion-per-az --nat-standby")
    env = {**lab_steps.ansible_env(), "ANSIBLE_NOCOLOR": "1", "ANSIBLE_INVENTORY_CACHE": "false",
           "ANSIBLE_SSH_CONTROL_PATH_DIR": str(ROOT / ".cache" / "bench-failover-cp")}
    if args.only != "bastion":
        from lab import follow

        if not follow.running_pid():
            raise SystemExit("the lab does not follow the local API: python -m lab follow start")
        runs = []
        for number in range(1, args.repeat + 1):
            result = nat_failover_once(env, nodes, args.probe_interval, args.timeout)
            runs.append(result)
            print(f"  NAT run {number}: outage {result['outage']:5.1f}s  route on the standby after "
                  f"{result['route']:5.1f}s  fail-back playbook {result['failback']:5.1f}s", flush=True)
        outage = statistics.median(r["outage"] for r in runs)
        print(f"\nNAT standby: web02's egress outage, median of {args.repeat}: {outage:.1f}s "
              f"(goal under 30 s: {'met' if outage < 30 else 'NOT met'}); route replaced after "
              f"{statistics.median(r['route'] for r in runs):.1f}s; fail-back "
              f"{statistics.median(r['failback'] for r in runs):.1f}s")
    if args.only != "nat":
        results = bastion_fallback(env, nodes, args.repeat)
        base = statistics.median(s for s, _, _ in results["both up"])
        print(f"\nBastion per zone: ansible private -m ping, median of {args.repeat}")
        for label, runs in results.items():
            median = statistics.median(s for s, _, _ in runs)
            ok, unreachable = sum(r[1] for r in runs), sum(r[2] for r in runs)
            print(f"  {label:22} {median:6.1f}s  {median / base:5.2f}x  ok {ok}  unreachable {unreachable}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
