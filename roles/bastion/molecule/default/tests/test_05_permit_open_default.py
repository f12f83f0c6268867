"""bastion_permit_open's default, computed from bastion_ec2-shaped inventories.

The converge proves it on the scenario's three hosts (sshd -T in test_10);
this renders the role's own default on inventories the containers cannot
stand for: no vpc_id at all, an IPv6 address, other ports, hosts without an
address. No container is touched (connection local, no task on a host).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

DEFAULTS = Path(os.environ["MOLECULE_PROJECT_DIRECTORY"]) / "defaults" / "main.yml"


def permit_open_defaults(tmp_path: Path, hosts: dict, extra_vars: dict | None = None) -> dict[str, list[str]]:
    """{host: bastion_permit_open} as the role's default computes it for every host of the inventory."""
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(yaml.safe_dump({"all": {"hosts": hosts}}))
    playbook = tmp_path / "playbook.yml"
    playbook.write_text(
        yaml.safe_dump(
            [
                {
                    "name": "Render the default",
                    "hosts": "all",
                    "connection": "local",
                    "gather_facts": False,
                    "vars_files": [str(DEFAULTS)],
                    "tasks": [{"name": "Show it", "ansible.builtin.debug": {"msg": "{{ bastion_permit_open }}"}}],
                }
            ]
        )
    )
    result = subprocess.run(
        ["ansible-playbook", "-i", str(inventory), str(playbook), "-e", json.dumps(extra_vars or {})],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    task = json.loads(result.stdout)["plays"][0]["tasks"][0]
    return {host: outcome["msg"] for host, outcome in task["hosts"].items()}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    hosts = {
        "bastion": {"vpc_id": "vpc-a", "private_ip_address": "10.0.1.10"},
        "web02": {"vpc_id": "vpc-a", "private_ip_address": "10.0.12.7"},
        "web01": {"vpc_id": "vpc-a", "private_ip_address": "10.0.11.9"},
        "nat-instance": {"vpc_id": "vpc-a", "private_ip_address": "10.0.2.4"},
        "v6host": {"vpc_id": "vpc-a", "private_ip_address": "fd00::5"},
        "no-address": {"vpc_id": "vpc-a"},
        "other-vpc": {"vpc_id": "vpc-b", "private_ip_address": "10.0.11.9"},
        "static": {"ansible_host": "192.0.2.5"},
    }
    return permit_open_defaults(tmp_path_factory.mktemp("po"), hosts)


def test_every_other_host_of_the_vpc_on_port_22(rendered):
    # Sorted, the NAT instance included (it is reached through the bastion too), never itself.
    assert rendered["bastion"] == ["10.0.11.9:22", "10.0.12.7:22", "10.0.2.4:22", "[fd00::5]:22"]
    assert rendered["web01"] == ["10.0.1.10:22", "10.0.12.7:22", "10.0.2.4:22", "[fd00::5]:22"]


def test_nothing_from_other_vpcs_and_nothing_without_a_vpc(rendered):
    assert rendered["other-vpc"] == []
    # An inventory without vpc_id (a static one) gives nothing: PermitOpen none.
    assert rendered["static"] == []


def test_other_ports_come_from_the_port_list(tmp_path):
    hosts = {
        "bastion": {"vpc_id": "vpc-a", "private_ip_address": "10.0.1.10"},
        "web01": {"vpc_id": "vpc-a", "private_ip_address": "10.0.11.9"},
    }
    rendered = permit_open_defaults(tmp_path, hosts, {"bastion_permit_open_ports": [22, 2222]})
    assert rendered["bastion"] == ["10.0.11.9:22", "10.0.11.9:2222"]
