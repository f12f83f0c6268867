"""Watching the resilience options in a running lab: where a route points, web02's way out, a host coming back.

Shared by bench/failover_bench.py (which times them) and tests/lab/test_resilience.py (which asserts them).
"""

from __future__ import annotations

import threading
import time

from lab import podman, state, steps
from lab.proc import LabError

DEFAULT_ROUTE = "0.0.0.0/0"


def subnet_of(client, instance_id: str) -> str:
    reservations = client.describe_instances(InstanceIds=[instance_id])["Reservations"]
    return reservations[0]["Instances"][0]["SubnetId"]


def route_target(client, subnet_id: str, destination: str = DEFAULT_ROUTE) -> str | None:
    """The instance the subnet's route to ``destination`` names in the local API (None: no such route, or
    it targets a gateway)."""
    tables = client.describe_route_tables(Filters=[{"Name": "association.subnet-id", "Values": [subnet_id]}])
    for table in tables["RouteTables"]:
        for route in table["Routes"]:
            if route.get("DestinationCidrBlock") == destination:
                return route.get("InstanceId")
    return None


def lab_default_gateway(container: str) -> str | None:
    """The next hop of the host's own default route (what `lab follow` applied), or None."""
    proc = podman.exec_in(container, "ip", "-4", "route", "show", "default", check=False)
    words = proc.stdout.decode().split()
    return words[words.index("via") + 1] if "via" in words else None


class EgressProbe(threading.Thread):
    """A host's source address at the lab internet every ``interval`` seconds: [(monotonic time, source or
    None)] (the internet server answers with the address it saw)."""

    def __init__(self, container: str, url: str, interval: float) -> None:
        super().__init__(daemon=True)
        self.container, self.url, self.interval = container, url, interval
        self.samples: list[tuple[float, str | None]] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            started = time.monotonic()
            source = steps.egress_source(self.container, self.url)
            self.samples.append((started, source))
            self.stopping.wait(max(0.0, self.interval - (time.monotonic() - started)))

    def stop(self) -> None:
        self.stopping.set()
        self.join()

    def first(self, source: str, after: float) -> float | None:
        return next((t for t, s in self.samples if t >= after and s == source), None)

    def last(self, source: str, before: float) -> float | None:
        return next((t for t, s in reversed(self.samples) if t < before and s == source), None)

    def settled_on(self, source: str, count: int = 3) -> bool:
        """The last ``count`` samples all left through ``source``."""
        return [s for _, s in self.samples[-count:]] == [source] * count


def wait_until(condition, timeout: float, interval: float = 0.5) -> bool:
    """Poll until the condition holds or ``timeout`` seconds pass (a bound on waiting, not a timing check)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return condition()


def wait_for_instance_units(container: str, timeout: float = 120) -> None:
    """After `podman start`: the host's network unit (routes, security groups) is active again."""
    def up() -> bool:
        proc = podman.exec_in(container, "systemctl", "is-active", "fumidai-lab-net.service", check=False)
        return proc.stdout.decode().strip() == "active"
    if not wait_until(up, timeout, 1):
        raise LabError(f"{container} did not come back within {timeout:.0f}s")


def nat_failover(env: dict, nodes: dict, url: str, interval: float = 1.0, timeout: float = 120) -> dict:
    """Stop the NAT instance's container while web02 asks ``url`` for its source address every ``interval``
    seconds; return when web02 has left through the standby three times in a row and the API's route names
    it, or after ``timeout``. Keys: stopped, route_moved, back, last_through_primary (monotonic times; None
    when it did not happen), outage and route (seconds from the stop; None likewise), samples."""
    client = state.aws_client(env, "ec2")
    primary, standby, web02 = nodes["nat-instance"], nodes["nat-instance-standby"], nodes["web02"]
    subnet_id = subnet_of(client, web02["resource_id"])
    if route_target(client, subnet_id) != primary["resource_id"]:
        raise LabError("private-subnet-2's default route does not name the NAT instance: fail back first "
                       "(ansible-playbook playbooks/nat_failback.yml)")
    probe = EgressProbe(web02["container"], url, interval)
    probe.start()
    try:
        if not wait_until(lambda: probe.settled_on(primary["ip"]), 30):
            raise LabError(f"web02 does not leave through the NAT instance ({primary['ip']}): {probe.samples[-3:]}")
        stopped = time.monotonic()
        podman.podman("stop", "-t", "2", primary["container"])
        route_moved = None
        deadline = stopped + timeout
        while time.monotonic() < deadline:
            if route_moved is None and route_target(client, subnet_id) == standby["resource_id"]:
                route_moved = time.monotonic()
            back = probe.first(standby["ip"], stopped)
            if route_moved and back and len([t for t, s in probe.samples if t >= back and s == standby["ip"]]) >= 3:
                break
            time.sleep(0.5)
    finally:
        probe.stop()
    back = probe.first(standby["ip"], stopped)
    last = probe.last(primary["ip"], stopped + 1e-3) or stopped
    return {"stopped": stopped, "route_moved": route_moved, "back": back, "last_through_primary": last,
            "outage": (back - last) if back else None, "route": (route_moved - stopped) if route_moved else None,
            "samples": probe.samples}
