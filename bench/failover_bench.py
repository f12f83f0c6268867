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
import threading
import time
from pathlib import Path

from lab import podman
from lab import state as lab_state
from lab import steps as lab_steps

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def nodes_by_name() -> dict[str, dict]:
    current = lab_state.load_state()
    if not current:
        raise SystemExit("the lab is not up: python -m lab up --bastion-per-az --nat-standby")
    return {n["name"]: n for n in current["nodes"]}


def ec2(env: dict):
    import boto3

    return boto3.client("ec2", endpoint_url=env["AWS_ENDPOINT_URL"], region_name=env["AWS_REGION"],
                        aws_access_key_id=env["AWS_ACCESS_KEY_ID"], aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"])


def default_target(client, subnet_id: str) -> str | None:
    """The instance private-subnet-2's default route names in the local API."""
    tables = client.describe_route_tables(Filters=[{"Name": "association.subnet-id", "Values": [subnet_id]}])
    for table in tables["RouteTables"]:
        for route in table["Routes"]:
            if route.get("DestinationCidrBlock") == "0.0.0.0/0":
                return route.get("InstanceId")
    return None


class EgressProbe(threading.Thread):
    """web02's source address at the lab internet every ``interval`` seconds: [(monotonic time, source or None)]."""

    def __init__(self, container: str, url: str, interval: float) -> None:
        super().__init__(daemon=True)
        self.container, self.url, self.interval = container, url, interval
        self.samples: list[tuple[float, str | None]] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            started = time.monotonic()
            source = lab_steps.egress_source(self.container, self.url)
            self.samples.append((started, source))
            self.stopping.wait(max(0.0, self.interval - (time.monotonic() - started)))

    def first(self, source: str, after: float) -> float | None:
        return next((t for t, s in self.samples if t >= after and s == source), None)

    def last(self, source: str, before: float) -> float | None:
        return next((t for t, s in reversed(self.samples) if t < before and s == source), None)


def wait_until(condition, timeout: float, interval: float = 0.5) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return condition()


def playbook(env: dict, name: str, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "ansible-playbook"), name, "-e", "@lab/vars.yml", *extra], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)


def wait_for_instance_units(container: str, timeout: float = 120) -> None:
    def up() -> bool:
        proc = podman.exec_in(container, "systemctl", "is-active", "fumidai-lab-net.service", check=False)
        return proc.stdout.decode().strip() == "active"
    if not wait_until(up, timeout, 1):
        raise SystemExit(f"{container} did not come back within {timeout:.0f}s")


def nat_failover_once(env: dict, nodes: dict, interval: float, timeout: float) -> dict:
    client = ec2(env)
    primary, standby, web02 = nodes["nat-instance"], nodes["nat-instance-standby"], nodes["web02"]
    subnet_id = client.describe_instances(InstanceIds=[web02["resource_id"]])["Reservations"][0]["Instances"][0][
        "SubnetId"]
    if default_target(client, subnet_id) != primary["resource_id"]:
        raise SystemExit("private-subnet-2's default route does not name the NAT instance: fail back first "
                         "(ansible-playbook playbooks/nat_failback.yml)")
    url = f"http://{lab_state.load_state()['internet_server_ip']}/"
    probe = EgressProbe(web02["container"], url, interval)
    probe.start()
    try:
        if not wait_until(lambda: [s for _, s in probe.samples[-3:]] == [primary["ip"]] * 3, 30):
            raise SystemExit(f"web02 does not leave through the NAT instance ({primary['ip']}): {probe.samples[-3:]}")
        stopped = time.monotonic()
        podman.podman("stop", "-t", "2", primary["container"])
        route_moved = None
        deadline = stopped + timeout
        while time.monotonic() < deadline:
            if route_moved is None and default_target(client, subnet_id) == standby["resource_id"]:
                route_moved = time.monotonic()
            back = probe.first(standby["ip"], stopped)
            if route_moved and back and len([t for t, s in probe.samples if t >= back and s == standby["ip"]]) >= 3:
                break
            time.sleep(0.5)
        back = probe.first(standby["ip"], stopped)
        last = probe.last(primary["ip"], stopped + 1e-3) or stopped
    finally:
        probe.stopping.set()
        probe.join()
    result = {"outage": (back - last) if back else float("nan"),
              "route": (route_moved - stopped) if route_moved else float("nan")}
    # Fail back: the NAT instance returns, then the deliberate playbook moves the route.
    podman.podman("start", primary["container"])
    wait_for_instance_units(primary["container"])
    started = time.monotonic()
    proc = playbook(env, "playbooks/nat_failback.yml")
    result["failback"] = time.monotonic() - started
    if proc.returncode != 0 or default_target(client, subnet_id) != primary["resource_id"]:
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
        wait_for_instance_units(down["container"])
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
