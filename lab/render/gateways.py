"""Renders the VPC's managed gateways: the internet gateway, the VPN router and the NAT gateway."""

from __future__ import annotations

from pathlib import Path

from lab import config
from lab.podman import network_arg
from lab.render import render

# A service container applies its net.sh (mounted at /lab) and then only keeps running.
APPLY_AND_SLEEP = ["sh", "-c", "/lab/net.sh && exec sleep infinity"]


def internet_gateway_files(plan: dict, node: dict) -> dict:
    # Only what has a public IP (or EIP) talks to the internet; a private
    # instance that routed here directly would get nowhere, as on AWS.
    public = [other for other in plan["nodes"] if other["public"] and other["kind"] != "internet_gateway"]
    return {"net.sh": (render("internet-gateway-net.sh", plan=plan, node=node, public_nodes=public), 0o755)}


def _router_args(node: dict, files_dir: Path, *other_network: str) -> list[str]:
    """A forwarding container in the VPC (and on ``other_network``: name, address) that applies its net.sh."""
    networks = ["--network", network_arg(config.NET_VPC, node["ip"])]
    if other_network:
        networks += ["--network", network_arg(*other_network)]
    return [*networks, "--sysctl", "net.ipv4.ip_forward=1", "-v", f"{files_dir}:/lab:ro", config.IMAGE,
            *APPLY_AND_SLEEP]


def internet_gateway_args(plan: dict, node: dict, files_dir: Path) -> list[str]:
    return _router_args(node, files_dir, config.NET_INTERNET, plan["internet_gateway_ip"])


def vpn_gateway_files(plan: dict, node: dict) -> dict:
    return {"net.sh": (render("vpn-gateway-net.sh", plan=plan, node=node), 0o755)}


def vpn_gateway_args(plan: dict, node: dict, files_dir: Path) -> list[str]:
    return _router_args(node, files_dir, config.NET_OFFICE, plan["office_router_ip"])


def nat_gateway_files(plan: dict, node: dict) -> dict:
    return {"net.sh": (render("nat-gateway-net.sh", plan=plan, node=node), 0o755)}


def nat_gateway_args(plan: dict, node: dict, files_dir: Path) -> list[str]:
    return _router_args(node, files_dir)
