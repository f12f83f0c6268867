"""nat_instance_ssh_sources' default, computed from bastion_ec2-shaped inventories.

The scenario sets the list (its client stands in for the bastion); this
renders the role's own default on the inventories it is written for -- the
bastion of the same VPC, bastions of other VPCs only, no VPC at all. No
container is touched (connection local, no task on a host).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import yaml

DEFAULTS = Path(os.environ["MOLECULE_PROJECT_DIRECTORY"]) / "defaults" / "main.yml"


def test_default_is_the_vpcs_bastion_else_the_vpc(tmp_path):
    inventory = {
        "all": {
            "vars": {"vpc_cidr": "10.0.0.0/16"},
            "hosts": {
                "nat-instance": {"vpc_id": "vpc-a", "private_ip_address": "10.0.2.4"},
                "lonely-nat": {"vpc_id": "vpc-c", "private_ip_address": "10.0.2.5"},
                "static-nat": {"ansible_host": "192.0.2.7"},
            },
            "children": {
                "role_bastion": {
                    "hosts": {
                        "bastion": {"vpc_id": "vpc-a", "private_ip_address": "10.0.1.10"},
                        "bastion-b": {"vpc_id": "vpc-b", "private_ip_address": "10.0.1.11"},
                    }
                }
            },
        }
    }
    (tmp_path / "inventory.yml").write_text(yaml.safe_dump(inventory))
    play = {
        "name": "Render the default",
        "hosts": "nat-instance,lonely-nat,static-nat",
        "connection": "local",
        "gather_facts": False,
        "vars_files": [str(DEFAULTS)],
        "tasks": [{"name": "Show it", "ansible.builtin.debug": {"msg": "{{ nat_instance_ssh_sources }}"}}],
    }
    (tmp_path / "playbook.yml").write_text(yaml.safe_dump([play]))
    result = subprocess.run(
        ["ansible-playbook", "-i", str(tmp_path / "inventory.yml"), str(tmp_path / "playbook.yml")],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    task = json.loads(result.stdout)["plays"][0]["tasks"][0]
    rendered = {host: outcome["msg"] for host, outcome in task["hosts"].items()}
    assert rendered == {
        # The bastion of its own VPC, as a /32 (iptables-save's form).
        "nat-instance": ["10.0.1.10/32"],
        # No bastion in its VPC (bastion-b is in another one), or no VPC known: the VPC CIDR.
        "lonely-nat": ["10.0.0.0/16"],
        "static-nat": ["10.0.0.0/16"],
    }
