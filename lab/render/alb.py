"""Renders an application load balancer: HAProxy from its listeners, target groups and health checks."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path

from ansible_collections.fumidai.vpc.plugins.module_utils import fumidai_host_keys as host_keys
from ansible_collections.fumidai.vpc.plugins.module_utils import ssh_args

from lab import config
from lab.podman import network_arg
from lab.proc import LabError
from lab.render import render
from lab.render.instance import security_group_rules


def check_haproxy_inputs(group: dict) -> None:
    """Strings from the API become HAProxy words: only the forms AWS itself accepts get through."""
    def refuse(what: str, value: object) -> None:
        raise LabError(f"target group {ssh_args.shown(group.get('target_group_name'))}: {what} "
                       f"{ssh_args.shown(value)} is not a form AWS accepts")
    if not re.fullmatch(r"[A-Za-z0-9-]{1,32}", str(group.get("target_group_name"))):
        refuse("name", group.get("target_group_name"))
    if not re.fullmatch(r"/[A-Za-z0-9._~/%?=&:@+$'-]{0,1023}", str(group.get("health_check_path") or "/")):
        refuse("health check path", group.get("health_check_path"))
    if not re.fullmatch(r"[0-9]{3}(-[0-9]{3})?(,[0-9]{3})*", str((group.get("matcher") or {}).get("http_code", "200"))):
        refuse("success codes", (group.get("matcher") or {}).get("http_code"))
    for target in group.get("targets") or []:
        if not (host_keys.valid_instance_id(target["id"]) or _is_ipv4(target["id"])):
            refuse("target", target["id"])


def _is_ipv4(value: object) -> bool:
    try:
        return isinstance(ipaddress.ip_address(str(value)), ipaddress.IPv4Address)
    except ValueError:
        return False


def _port(value: object, what: str) -> int:
    """A port number from the API (an HAProxy word): a whole number 1-65535 or refused."""
    try:
        port = int(str(value))
    except ValueError:
        port = 0
    if not 1 <= port <= 65535:
        raise LabError(f"{what} {ssh_args.shown(value)} is not a port number")
    return port


def _seconds(value: object, what: str) -> int:
    try:
        return int(str(value))
    except ValueError:
        raise LabError(f"{what} {ssh_args.shown(value)} is not a whole number") from None


def _listener(listener: dict, groups: dict) -> dict:
    if listener.get("protocol") != "HTTP":
        # Shown in a comment only, reduced to a safe form.
        return {"skipped": True, "protocol": re.sub(r"[^A-Z0-9]", "_", str(listener.get("protocol")))[:8],
                "port": _port(listener.get("port"), "listener port")}
    forward = next((a for a in listener.get("default_actions") or [] if a.get("type") == "forward"), None)
    backend = None
    if forward and forward.get("target_group_arn") in groups:
        backend = groups[forward["target_group_arn"]]["target_group_name"]
    return {"skipped": False, "port": _port(listener["port"], "listener port"), "backend": backend}


def _backend(group: dict, addresses: dict) -> dict:
    matcher = (group.get("matcher") or {}).get("http_code", "200")
    if "-" in matcher:
        low, high = matcher.split("-", 1)
        codes = "|".join(str(c) for c in range(int(low), int(high) + 1))
    else:
        codes = "|".join(c.strip() for c in matcher.split(","))
    check_port = group.get("health_check_port", "traffic-port")
    extra = "" if check_port in ("traffic-port", None) else f" port {_port(check_port, 'health check port')}"
    servers = [{"id": target["id"], "address": addresses.get(target["id"], target["id"]),
                "port": _port(target.get("port") or group.get("port"), "target port"), "extra": extra}
               for target in group.get("targets") or []]
    return {"name": group["target_group_name"], "path": group.get("health_check_path") or "/", "codes": codes,
            "timeout": _seconds(group.get("health_check_timeout_seconds", 5), "health check timeout"),
            "interval": _seconds(group.get("health_check_interval_seconds", 30), "health check interval"),
            "rise": _seconds(group.get("healthy_threshold_count", 5), "healthy threshold"),
            "fall": _seconds(group.get("unhealthy_threshold_count", 2), "unhealthy threshold"),
            "servers": servers}


def render_haproxy(plan: dict, alb: dict) -> str:
    """HAProxy from the ALB's listeners and target groups, with real health checks."""
    addresses = {n["resource_id"]: n["ip"] for n in plan["nodes"] if n["kind"] == "instance"}
    groups = {g["target_group_arn"]: g for g in alb["target_groups"]}
    for group in groups.values():
        check_haproxy_inputs(group)
    config_text = render("haproxy.cfg", stats_dir=config.ALB_STATS_DIR, alb_ip=alb["ip"],
                         listeners=[_listener(listener, groups) for listener in alb["listeners"]],
                         backends=[_backend(group, addresses) for group in groups.values()])
    return config_text.rstrip("\n") + "\n"


def _alb(plan: dict, node: dict) -> dict:
    return next(a for a in plan["albs"] if a["node"] == node["name"])


def files(plan: dict, node: dict) -> dict:
    net = render("alb-net.sh", plan=plan, node=node, sg=security_group_rules(plan, node))
    return {"net.sh": (net, 0o755), "haproxy.cfg": (render_haproxy(plan, _alb(plan, node)), 0o644)}


def run_args(plan: dict, node: dict, files_dir: Path) -> list[str]:
    stats_dir = config.AWS_DIR / "alb" / node["name"]
    stats_dir.mkdir(parents=True, exist_ok=True)
    return ["--network", network_arg(config.NET_VPC, node["ip"]), "--sysctl", "net.ipv4.ip_forward=0",
            "-v", f"{files_dir}:/lab:ro", "-v", f"{stats_dir}:{config.ALB_STATS_DIR}", config.IMAGE, "sh", "-c",
            "/lab/net.sh && haproxy -c -q -f /lab/haproxy.cfg && exec haproxy -W -db -f /lab/haproxy.cfg"]
