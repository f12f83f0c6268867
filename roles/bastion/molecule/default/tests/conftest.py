"""Fixtures for the bastion scenario: podman:// hosts, addresses and an SSH client.

Addresses come from molecule.yml (one place); the controller's key was made by
prepare.yml in the scenario's ephemeral directory.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
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
BASTION_VARS = SCENARIO["provisioner"]["inventory"]["group_vars"]["bastion"]
HOST_VARS = SCENARIO["provisioner"]["inventory"]["host_vars"]
EPHEMERAL = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])
KEY = EPHEMERAL / "id_ed25519"
VENV_BIN = Path(sys.executable).parent
# The controller's address on the scenario network (the bridge gateway).
CONTROLLER_IP = ADMIN_CIDRS[0].split("/")[0]


def ip_of(group: str) -> str:
    return PLATFORMS[group]["ip"]


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


def wait_until(predicate, timeout: float = 60, interval: float = 1.0):
    """Poll predicate() until it returns something truthy; return it (or the last falsy value)."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(interval)
