"""fumidai NAT watchdog: on the standby NAT instance, take over the NAT subnet's route when the active one fails.

    fumidai-nat-watchdog [--config /etc/fumidai/nat-watchdog.json]  # the loop (fumidai-nat-watchdog.service)
    fumidai-nat-watchdog --check-peer        # check the peer's forwarding once: exit 0 it forwards,
                                             # 1 it does not, 2 the control does not answer directly either
    fumidai-nat-watchdog --check-config --config FILE   # validate a configuration file (exit 0, else 3)

Every cycle it opens one TCP connection (connect only, nothing sent) to the probe address, which reaches the
internet *through the peer* (the active NAT instance): not by a route of this host (on AWS the VPC router, not the
peer, answers a next hop in another subnet), but by the route table of this instance's subnet, whose
<probe address>/32 route targets the peer (provisioning adds it: roles/aws_routing). After N consecutive failures it
connects to the control address (the same service, same port) by this instance's own way out; only when the
control answers (so the peer, not the service, is at fault) and the route table still sends the destination to the
peer does it call ReplaceRoute to point it at itself. Once the route targets this instance it only reports; failing
back is a person's decision (playbooks/nat_failback.yml). Every decision goes to the journal.
The decision logic (class FailoverPolicy) does no I/O, so it is unit-tested with fake probes and clients.
"""

from __future__ import annotations

import argparse
import json
import logging
import socket
import sys
import time
from dataclasses import dataclass

CONFIG_FILE = "/etc/fumidai/nat-watchdog.json"
LOG = logging.getLogger("fumidai-nat-watchdog")


# --------------------------------------------------------------------------- configuration
@dataclass(frozen=True)
class Config:
    region: str
    route_table_id: str
    self_instance_id: str
    peer_instance_id: str
    peer_ip: str  # reported only: the probe reaches the peer by the subnet's route table, not by this address
    probe_address: str  # reached through the peer (the subnet's /32 route); dedicated to the probe
    control_address: str  # the same service, reached directly (this instance's own way out)
    probe_port: int
    endpoint_url: str = ""  # empty: AWS's own endpoints
    destination: str = "0.0.0.0/0"
    interval: float = 2.0
    timeout: float = 2.0
    failures_before_failover: int = 3
    route_check_every: int = 15  # cycles between route reads while nothing is wrong (reporting)

    @classmethod
    def load(cls, path: str) -> Config:
        with open(path, encoding="utf-8") as handle:
            raw = json.load(handle)
        known = {k: v for k, v in raw.items() if k in cls.__dataclass_fields__}
        config = cls(**known)
        problems = config.problems()
        if problems:
            raise ValueError(f"{path}: " + "; ".join(problems))
        return config

    def problems(self) -> list[str]:
        found = []
        for name in ("region", "route_table_id", "self_instance_id", "peer_instance_id", "peer_ip", "probe_address",
                     "control_address"):
            if not str(getattr(self, name) or "").strip():
                found.append(f"{name} is empty")
        if self.self_instance_id and self.self_instance_id == self.peer_instance_id:
            found.append("self_instance_id and peer_instance_id are the same instance")
        for name in ("peer_ip", "probe_address", "control_address"):
            if not _is_ipv4(getattr(self, name)):
                found.append(f"{name} {getattr(self, name)!r} is not an IPv4 address")
        if self.probe_address and self.probe_address == self.control_address:
            found.append("probe_address and control_address are the same address: the control must not go "
                         "through the peer")
        if not 0 < int(self.probe_port) < 65536:
            found.append(f"probe_port {self.probe_port} is not a port")
        if int(self.failures_before_failover) < 1:
            found.append("failures_before_failover must be at least 1")
        if not 0 < float(self.timeout) <= 60 or not 0 < float(self.interval) <= 3600:
            found.append("timeout and interval must be positive (timeout at most 60 s)")
        return found


def _is_ipv4(text) -> bool:
    """A dotted-quad IPv4 address, nothing else (no CIDR, no name, no inet_aton shorthand such as '1.1')."""
    try:
        return isinstance(text, str) and text.count(".") == 3 and socket.inet_ntoa(socket.inet_aton(text)) == text
    except OSError:
        return False


# --------------------------------------------------------------------------- the decision (no I/O)
@dataclass(frozen=True)
class Decision:
    action: str  # "none" | "confirm" (probe the control and read the route) | "replace" | "report"
    reason: str


class FailoverPolicy:
    """What to do, from probe results and the route's current target. Pure: the caller does every probe and call."""

    def __init__(self, self_id: str, peer_id: str, threshold: int):
        self.self_id, self.peer_id, self.threshold = self_id, peer_id, threshold
        self.failures = 0
        self.route_on_self = False

    def after_peer_probe(self, ok: bool) -> Decision:
        """After the probe through the peer: reset on success, ask for confirmation at the threshold. Once the
        route is on this instance, only changes of the peer's health are reported (no journal line per cycle)."""
        quiet = "report" if self.route_on_self else "none"
        if ok:
            recovered, self.failures = self.failures > 0, 0
            if not recovered:
                return Decision(quiet, "")
            if self.route_on_self:
                return Decision("report", "the peer forwards again; the route stays on this instance until "
                                          "someone fails back (playbooks/nat_failback.yml)")
            return Decision("none", "the peer forwards again")
        self.failures += 1
        if self.route_on_self:
            return Decision("report", "the peer does not forward; the route is on this instance already"
                            if self.failures == 1 else "")
        if self.failures < self.threshold:
            return Decision("none", f"probe through the peer failed ({self.failures}/{self.threshold})")
        return Decision("confirm", f"{self.failures} probes in a row through the peer failed: checking the control "
                                   "address directly and the route table")

    def decide(self, direct_ok: bool, route_target: str | None) -> Decision:
        """After a 'confirm': the direct probe's result and the instance the route sends the destination to."""
        if route_target == self.self_id:
            self.route_on_self = True
            return Decision("report", "the route already targets this instance: reporting only")
        if not direct_ok:
            return Decision("none", "the control address does not answer directly either: the service (or "
                                    "this instance's own way out) is slow or down, not the peer; no failover")
        if route_target != self.peer_id:
            return Decision("none", f"the route targets {route_target or 'nothing'}, neither the peer nor this "
                                    "instance: not this watchdog's to move")
        return Decision("replace", "the peer does not forward while the control answers directly: pointing "
                                   "the route at this instance")

    def replaced(self, ok: bool) -> None:
        """After ReplaceRoute: on success only report from now on; on failure keep the count (retry next cycle)."""
        if ok:
            self.route_on_self = True
            self.failures = 0

    def route_seen(self, route_target: str | None) -> None:
        """A periodic route read: a fail-back (route on the peer again) resumes watching."""
        self.route_on_self = route_target == self.self_id


# --------------------------------------------------------------------------- I/O: probes, the EC2 API
def tcp_probe(address: str, port: int, timeout: float) -> bool:
    """One TCP connection (connect only, nothing sent), routed by the kernel's main table like any other."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect((address, port))
            return True
        except OSError:
            return False


def ec2_client(config: Config):
    import boto3  # only the loop and --check-peer's callers need it: the policy tests run without it

    kwargs = {"region_name": config.region}
    if config.endpoint_url:
        kwargs["endpoint_url"] = config.endpoint_url
    return boto3.client("ec2", **kwargs)


def route_target(client, config: Config) -> str | None:
    """The instance the route table sends the destination to (None: no such route, or not to an instance)."""
    tables = client.describe_route_tables(RouteTableIds=[config.route_table_id])["RouteTables"]
    for table in tables:
        for route in table.get("Routes", []):
            if route.get("DestinationCidrBlock") == config.destination:
                return route.get("InstanceId")
    return None


def replace_route(client, config: Config) -> None:
    client.replace_route(RouteTableId=config.route_table_id, DestinationCidrBlock=config.destination,
                         InstanceId=config.self_instance_id)


# --------------------------------------------------------------------------- one cycle, the loop, the check
@dataclass
class Probes:
    """The two probes, injectable: through the peer, and direct."""

    through_peer: object
    direct: object


def cycle(policy: FailoverPolicy, probes: Probes, client, config: Config, number: int) -> str:
    """One watchdog cycle; returns the action taken (for tests). Errors of the API are logged, never fatal."""
    if number % config.route_check_every == 0:
        try:
            policy.route_seen(route_target(client, config))
        except Exception as exc:  # noqa: BLE001 - the API may be unreachable for a while; keep probing
            LOG.warning("could not read route table %s: %s", config.route_table_id, exc)
    decision = policy.after_peer_probe(probes.through_peer())
    if decision.reason:
        LOG.info("%s", decision.reason)
    if decision.action != "confirm":
        return decision.action
    direct_ok = probes.direct()
    try:
        target = route_target(client, config)
    except Exception as exc:  # noqa: BLE001
        LOG.error("could not read route table %s: %s; retrying next cycle", config.route_table_id, exc)
        return "error"
    decision = policy.decide(direct_ok, target)
    LOG.warning("%s (direct probe %s, route %s -> %s)", decision.reason, "ok" if direct_ok else "failed",
                config.destination, target)
    if decision.action != "replace":
        return decision.action
    try:
        replace_route(client, config)
    except Exception as exc:  # noqa: BLE001
        policy.replaced(False)
        LOG.error("ReplaceRoute %s %s -> %s failed: %s; retrying next cycle", config.route_table_id,
                  config.destination, config.self_instance_id, exc)
        return "error"
    policy.replaced(True)
    LOG.warning("FAILOVER: route table %s now sends %s to this instance %s (was %s)", config.route_table_id,
                config.destination, config.self_instance_id, config.peer_instance_id)
    return "replace"


def real_probes(config: Config) -> Probes:
    port, timeout = int(config.probe_port), float(config.timeout)
    return Probes(lambda: tcp_probe(config.probe_address, port, timeout),
                  lambda: tcp_probe(config.control_address, port, timeout))


def check_peer(config: Config, probes: Probes, attempts: int = 3) -> int:
    """0: the peer forwards (a probe through it succeeded); 2: the control address does not answer directly
    either (nothing can be said of the peer); 1: the peer does not forward."""
    probe = f"{config.probe_address}:{config.probe_port}"
    control = f"{config.control_address}:{config.probe_port}"
    if any(probes.through_peer() for _attempt in range(attempts)):  # stops at the first success
        print(f"peer {config.peer_instance_id} ({config.peer_ip}) forwards: {probe} answered through it")
        return 0
    if not probes.direct():
        print(f"{probe} does not answer through the peer, and the control {control} does not answer directly "
              "either: cannot judge the peer")
        return 2
    print(f"peer {config.peer_instance_id} ({config.peer_ip}) does not forward: {probe} does not answer through "
          f"it while the control {control} answers directly")
    return 1


def run(config: Config, probes: Probes, client, cycles: int | None = None, sleep=time.sleep) -> FailoverPolicy:
    policy = FailoverPolicy(config.self_instance_id, config.peer_instance_id, config.failures_before_failover)
    LOG.info("watching %s (%s) through %s:%s (control %s) every %ss; route table %s %s", config.peer_instance_id,
             config.peer_ip, config.probe_address, config.probe_port, config.control_address, config.interval,
             config.route_table_id, config.destination)
    number = 0
    while cycles is None or number < cycles:
        started = time.monotonic()
        cycle(policy, probes, client, config, number)
        number += 1
        sleep(max(0.0, config.interval - (time.monotonic() - started)))
    return policy


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=CONFIG_FILE)
    parser.add_argument("--check-peer", action="store_true", help="check the peer's forwarding once and exit")
    parser.add_argument("--check-config", action="store_true", help="validate the configuration file and exit")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s", stream=sys.stdout)
    try:
        config = Config.load(args.config)
        if args.check_config:
            return 0
    except (OSError, ValueError, TypeError) as exc:
        LOG.error("%s", exc)
        return 3
    if args.check_peer:
        return check_peer(config, real_probes(config))
    run(config, real_probes(config), ec2_client(config))
    return 0


if __name__ == "__main__":
    sys.exit(main())
