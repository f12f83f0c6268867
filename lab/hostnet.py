"""This machine's side of the lab's networks: prohibit routes, unaddressed veth pairs, the office route."""

from __future__ import annotations

from lab import config
from lab.proc import log, out, run


def host_route(action: str, spec: list[str]) -> None:
    run(["ip", "route", action, *spec], check=False)


def prohibit_routes(cidrs: list[str]) -> list[str]:
    """A ``prohibit`` route for each CIDR (nothing for it leaves the machine); returns the ones added now."""
    existing = out(["ip", "route", "show", "type", "prohibit"])
    added = []
    for cidr in cidrs:
        if f"prohibit {cidr} metric {config.PROHIBIT_METRIC}" not in existing:
            run(["ip", "route", "add", "prohibit", cidr, "metric", str(config.PROHIBIT_METRIC)])
            log(f"prohibit route for {cidr} (nothing for it leaves the machine)")
            added.append(cidr)
    return added


def remove_prohibit_route(cidr: str) -> None:
    host_route("del", ["prohibit", cidr, "metric", str(config.PROHIBIT_METRIC)])


def ensure_veth(pair: tuple[str, str]) -> None:
    if run(["ip", "link", "show", pair[0]], check=False).returncode != 0:
        run(["ip", "link", "add", pair[0], "type", "veth", "peer", "name", pair[1]])
    for name in pair:
        run(["ip", "link", "set", name, "up"])


def remove_veth(pair: tuple[str, str]) -> bool:
    if run(["ip", "link", "show", pair[0]], check=False).returncode != 0:
        return False
    run(["ip", "link", "del", pair[0]])
    return True


def route_via(cidr: str, gateway: str) -> None:
    host_route("replace", [cidr, "via", gateway, "metric", str(config.ROUTE_METRIC)])


def remove_route_via(cidr: str, gateway: str) -> None:
    host_route("del", [cidr, "via", gateway, "metric", str(config.ROUTE_METRIC)])
