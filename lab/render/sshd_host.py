"""Renders a bare sshd host (no systemd, no VPC firewall) on podman's default network: the fan-out bench's hosts."""

from __future__ import annotations

import re
from pathlib import Path

from lab import config
from lab.podman import network_arg
from lab.proc import LabError
from lab.render import render
from lab.render.instance import LOGIN_USER

# sshd -o values: Keyword=value without spaces (MaxStartups=10:30:100, AllowTcpForwarding=yes).
SSHD_OPTION = re.compile(r"[A-Za-z]+=[A-Za-z0-9:._,-]+")


def node(name: str, container: str, ip: str, user: str, key: str, options: tuple[str, ...] = (),
         log_level: str = "INFO", network: str = "podman") -> dict:
    """An sshd host as the kinds table takes it (the bench makes these; they are in no lab plan)."""
    return {"name": name, "kind": "sshd_host", "container": container, "ip": ip, "login_user": user,
            "authorized_key": key, "sshd_options": list(options), "log_level": log_level, "network": network,
            "notes": []}


def files(plan: dict, node: dict) -> dict:
    bad = [o for o in node["sshd_options"] if not SSHD_OPTION.fullmatch(o)]
    if bad or not LOGIN_USER.fullmatch(node["login_user"]) or not node["log_level"].isalpha():
        raise LabError(f"{node['name']}: refusing sshd settings {bad or [node['login_user'], node['log_level']]}")
    script = render("sshd-host.sh", user=node["login_user"], key=node["authorized_key"],
                    options=node["sshd_options"], log_level=node["log_level"])
    return {"sshd-host.sh": (script, 0o755)}


def run_args(plan: dict, node: dict, files_dir: Path) -> list[str]:
    return ["--network", network_arg(node["network"], node["ip"]), "-v", f"{files_dir}:/lab:ro", config.IMAGE,
            "sh", "/lab/sshd-host.sh"]
