"""Fixtures for the bastion scenario: podman:// hosts, addresses and an SSH client.

Addresses come from molecule.yml (one place); the controller's key was made by
prepare.yml in the scenario's ephemeral directory.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import testinfra
import yaml

SCENARIO = yaml.safe_load((Path(os.environ["MOLECULE_SCENARIO_DIRECTORY"]) / "molecule.yml").read_text())
PLATFORMS = {p["groups"][0]: p for p in SCENARIO["platforms"]}
ADMIN_CIDRS = SCENARIO["provisioner"]["inventory"]["group_vars"]["all"]["admin_cidrs"]
# The admin CIDRs the role exempts from the rate limit and fail2ban: not the
# /0 ranges the scenario also lists with allow_ssh_from_anywhere.
EXEMPT_CIDRS = [cidr for cidr in ADMIN_CIDRS if not cidr.endswith("/0")]
# The same by family: iptables gets the IPv4 ones, ip6tables the IPv6 ones.
EXEMPT_CIDRS_V4 = [cidr for cidr in EXEMPT_CIDRS if ":" not in cidr]
EXEMPT_CIDRS_V6 = [cidr for cidr in EXEMPT_CIDRS if ":" in cidr]
BASTION_VARS = SCENARIO["provisioner"]["inventory"]["group_vars"]["bastion"]
HOST_VARS = SCENARIO["provisioner"]["inventory"]["host_vars"]
EPHEMERAL = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])
KEY = EPHEMERAL / "id_ed25519"
VENV_BIN = Path(sys.executable).parent
# The controller's address on the scenario network (the bridge gateway).
CONTROLLER_IP = EXEMPT_CIDRS_V4[0].split("/")[0]
# Its IPv6 address there (the bridge's fd89:10::1).
CONTROLLER_IP6 = EXEMPT_CIDRS_V6[0].split("/")[0]


def ip_of(group: str) -> str:
    return PLATFORMS[group]["ip"]


def ip6_of(group: str) -> str:
    """The container's IPv6 address on the scenario network (create.yml assigns it)."""
    return HOST_VARS[PLATFORMS[group]["name"]]["scenario_ipv6_address"]


def podman_host(group: str):
    return testinfra.get_host(f"podman://{PLATFORMS[group]['name']}")


@pytest.fixture(scope="session")
def bastion():
    return podman_host("bastion")


@pytest.fixture(scope="session")
def private():
    return podman_host("private")


@pytest.fixture(scope="session")
def outsider():
    return podman_host("outsider")


@pytest.fixture(scope="session")
def ssh_config(tmp_path_factory) -> Path:
    """An ssh_config for the controller: the scenario key, no host-key prompts."""
    path = tmp_path_factory.mktemp("ssh") / "config"
    path.write_text(
        "Host *\n"
        "  User admin\n"
        f"  IdentityFile {KEY}\n"
        "  IdentitiesOnly yes\n"
        "  StrictHostKeyChecking no\n"
        "  UserKnownHostsFile /dev/null\n"
        "  BatchMode yes\n"
        "  LogLevel ERROR\n"
        "  ConnectTimeout 10\n"
    )
    return path


@pytest.fixture(scope="session")
def ssh(ssh_config):
    """Run the controller's ssh client with the scenario config; returns CompletedProcess."""

    def run(*args: str, timeout: int = 60) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["ssh", "-F", str(ssh_config), *args],
            stdin=subprocess.DEVNULL,  # ssh -W relays stdin: nothing to send
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    return run


RATELIMIT_CHAIN = "BASTION-SSH-RATELIMIT"


def chain_counters(host, tables: str = "iptables") -> dict[str, int]:
    """Packet counters of the rate-limit chain's rules (iptables or ip6tables), keyed by target (RETURN / DROP)."""
    out = host.check_output(f"{tables} -w -L {RATELIMIT_CHAIN} -n -v -x")
    counters: dict[str, int] = {}
    for line in out.splitlines()[2:]:
        fields = line.split()
        counters[fields[2]] = counters.get(fields[2], 0) + int(fields[0])
    return counters


def connect_burst(address: str, attempts: int, port: int = 22) -> list[bool]:
    """Open attempts TCP connections to address:port at once from the controller; True for each that connected."""

    def connect(_: int) -> bool:
        try:
            with socket.create_connection((address, port), timeout=5):
                return True
        except OSError:
            return False

    with ThreadPoolExecutor(max_workers=attempts) as pool:
        return list(pool.map(connect, range(attempts)))


def banned(host) -> list[str]:
    """The addresses fail2ban's sshd jail has banned (both families)."""
    out = host.check_output("fail2ban-client get sshd banned")
    return [ip.strip(" '\"") for ip in out.strip("[]\n ").split(",") if ip.strip(" '\"")]


def failed_logins(from_host, target: str, count: int) -> None:
    """Log in to target as a user that does not exist (sshd logs "Invalid user ... from <ip>")."""
    cmd = (
        "-o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o ConnectTimeout=5"
        f" -i /root/id_ed25519 nosuchuser@{target} true"
    )
    for _ in range(count):
        # Bounded: a ban that lands mid-handshake drops the packets, and ssh would wait forever.
        from_host.run(f"timeout 20 ssh {cmd}")


def wait_until(predicate, timeout: float = 60, interval: float = 1.0):
    """Poll predicate() until it returns something truthy; return it (or the last falsy value)."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(interval)
