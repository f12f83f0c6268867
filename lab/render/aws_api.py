"""Renders the local AWS API's endpoint on the lab internet and its relay to the moto server on this machine.

A lab host calls the API as an EC2 instance calls AWS's: over the internet (a NAT standby's watchdog replacing a
route). The endpoint container sits on the lab internet (config.AWS_API_IP, port 80) and on the office bridge;
it relays to this machine's office address, where a host-network container relays to the moto server on
127.0.0.1. Nothing listens beyond the office bridge, and nothing connects anywhere but 127.0.0.1 and lab
addresses.
"""

from __future__ import annotations

import ipaddress
import shlex
from pathlib import Path

from lab import config
from lab.podman import network_arg
from lab.render import text

ENDPOINT_PORT = 80


def endpoint_url() -> str:
    return f"http://{config.AWS_API_IP}"


def endpoint_office_ip(plan: dict) -> str:
    """The endpoint's address on the office bridge: the one below the VPN router's."""
    return str(ipaddress.ip_address(plan["office_router_ip"]) - 1)


def nodes(plan: dict) -> list[dict]:
    """Not part of the VPC, hence not in the plan: made here (plan["aws_api_port"]: the moto server's port)."""
    if not plan.get("aws_api_port"):
        return []
    return [{"name": "aws-api", "kind": "aws_api", "container": f"{config.PREFIX}-aws-api",
             "ip": str(config.AWS_API_IP), "notes": []},
            {"name": "aws-api-relay", "kind": "aws_api_relay", "container": f"{config.PREFIX}-aws-api-relay",
             "ip": plan["office_host_ip"], "notes": []}]


def endpoint_files(plan: dict, node: dict) -> dict:
    return {"relay.py": (text("tcp-relay.py"), 0o755)}


def endpoint_args(plan: dict, node: dict, files_dir: Path) -> list[str]:
    # Answers VPC hosts through the internet gateway, as the lab internet server does.
    relay = shlex.join(["python3", "/lab/relay.py", str(config.AWS_API_IP), str(ENDPOINT_PORT),
                        plan["office_host_ip"], str(config.AWS_API_RELAY_PORT)])
    return ["--network", network_arg(config.NET_INTERNET, str(config.AWS_API_IP)),
            "--network", network_arg(config.NET_OFFICE, endpoint_office_ip(plan)),
            "-v", f"{files_dir}:/lab:ro", config.IMAGE, "sh", "-c",
            f"ip route replace {plan['vpc_cidr']} via {plan['internet_gateway_ip']} && exec {relay}"]


relay_files = endpoint_files


def relay_args(plan: dict, node: dict, files_dir: Path) -> list[str]:
    # This machine's network: the only way to its 127.0.0.1; it listens on the office address only.
    return ["--network", "host", "-v", f"{files_dir}:/lab:ro", config.IMAGE, "python3", "/lab/relay.py",
            plan["office_host_ip"], str(config.AWS_API_RELAY_PORT), "127.0.0.1", str(int(plan["aws_api_port"]))]
