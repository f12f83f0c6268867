"""Renders the lab internet's HTTP server (198.18.0.10, and 198.18.0.12 for probes): logs each request's source."""

from __future__ import annotations

from pathlib import Path

from lab import config
from lab.podman import network_arg
from lab.render import text


def node(plan: dict) -> dict:
    """The internet server is no part of the VPC, hence not in the plan: its node is made here."""
    return {"name": "internet", "kind": "internet", "container": f"{config.PREFIX}-internet",
            "ip": plan["internet_server_ip"], "notes": []}


def files(plan: dict, node: dict) -> dict:
    # None: created empty when missing, never rewritten (the tests read what the server logged).
    return {"server.py": (text("internet-server.py"), 0o755), "requests.log": None}


def run_args(plan: dict, node: dict, files_dir: Path) -> list[str]:
    return ["--network", network_arg(config.NET_INTERNET, plan["internet_server_ip"]), "-v", f"{files_dir}:/lab",
            config.IMAGE, "sh", "-c",
            f"ip addr replace {config.INTERNET_PROBE_IP}/{config.INTERNET_CIDR.prefixlen} dev eth0 && "
            f"ip route replace {plan['vpc_cidr']} via {plan['internet_gateway_ip']} && exec python3 /lab/server.py"]
