"""bastion_per_az against a moto server: provisioning launches a bastion in each public subnet with its own Elastic IP,
pins both bastions' host keys, a second run changes nothing, `ansible-inventory` gives every private host both
bastions with its own zone's first, and teardown removes the second bastion and its Elastic IP with the rest.

One provisioning run of its own (about two minutes), made once for the module; the default topology (one bastion)
is test_provision's and the seeder comparison's, on the shared stack."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.integration import provisioned
from tests.support.playbook import ROOT, plain, run_playbook

VENV_BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    yield from provisioned.provisioned_stack(tmp_path_factory, {"bastion_per_az": True})


@pytest.fixture(scope="module")
def described(stack):
    ec2 = stack.client("ec2")
    instances = {}
    for reservation in ec2.describe_instances(Filters=[{"Name": "tag:Project", "Values": ["fumidai"]},
                                                       {"Name": "instance-state-name", "Values": ["running"]}]
                                              )["Reservations"]:
        for instance in reservation["Instances"]:
            instances[tag(instance, "Name")] = instance
    subnets = {tag(s, "Name"): s for s in ec2.describe_subnets()["Subnets"] if tag(s, "Name")}
    eips = {tag(a, "Name"): a for a in ec2.describe_addresses()["Addresses"] if tag(a, "Name")}
    return {"instances": instances, "subnets": subnets, "eips": eips}


def tag(resource: dict, key: str) -> str | None:
    return next((t["Value"] for t in resource.get("Tags", []) if t["Key"] == key), None)


def recap(proc: subprocess.CompletedProcess) -> dict[str, int]:
    line = re.search(r"localhost\s*:\s*(.*)", proc.stdout.split("PLAY RECAP")[-1]).group(1)
    return {key: int(value) for key, value in re.findall(r"(\w+)=(\d+)", line)}


def test_two_bastions_each_with_its_elastic_ip_in_its_public_subnet(described):
    instances, subnets, eips = described["instances"], described["subnets"], described["eips"]
    assert {"bastion", "bastion-2"} <= set(instances)
    assert sorted(n for n, i in instances.items() if tag(i, "Role") == "bastion") == ["bastion", "bastion-2"]
    for name, subnet, eip in (("bastion", "public-subnet-1", "fumidai-bastion-eip"),
                              ("bastion-2", "public-subnet-2", "fumidai-bastion-2-eip")):
        bastion = instances[name]
        assert bastion["SubnetId"] == subnets[subnet]["SubnetId"], name
        assert eips[eip]["InstanceId"] == bastion["InstanceId"], name
        assert bastion["PublicIpAddress"] == eips[eip]["PublicIp"], name
        assert tag(eips[eip], "Project") == "fumidai"
    first, second = instances["bastion"], instances["bastion-2"]
    assert first["Placement"]["AvailabilityZone"] != second["Placement"]["AvailabilityZone"]
    assert [g["GroupName"] for g in first["SecurityGroups"]] == [g["GroupName"] for g in second["SecurityGroups"]] \
        == ["fumidai-bastion"]
    # Nothing else doubled: one NAT instance, the web servers, two bastion EIPs and the NAT gateway's.
    assert set(eips) == {"fumidai-nat-gateway-eip", "fumidai-bastion-eip", "fumidai-bastion-2-eip"}


def test_both_bastions_host_keys_are_pinned(stack, described):
    pinned = {line.split()[0] for line in stack.known_hosts.read_text().splitlines()
              if line.strip() and not line.startswith("#")}
    ids = {name: i["InstanceId"] for name, i in described["instances"].items()}
    assert ids["bastion"] in pinned and ids["bastion-2"] in pinned
    assert pinned == set(ids.values())  # positive control: every instance, nothing else


def test_outputs_list_every_bastion_and_keep_the_first(stack, described):
    outputs = yaml.safe_load(stack.outputs.read_text())
    instances, eips = described["instances"], described["eips"]
    assert outputs["bastion"] == {"instance_id": instances["bastion"]["InstanceId"],
                                  "public_ip": eips["fumidai-bastion-eip"]["PublicIp"],
                                  "private_ip": instances["bastion"]["PrivateIpAddress"]}
    assert [(b["name"], b["instance_id"], b["public_ip"]) for b in outputs["bastions"]] == [
        ("bastion", instances["bastion"]["InstanceId"], eips["fumidai-bastion-eip"]["PublicIp"]),
        ("bastion-2", instances["bastion-2"]["InstanceId"], eips["fumidai-bastion-2-eip"]["PublicIp"])]
    record = outputs["stack"]
    assert eips["fumidai-bastion-2-eip"]["AllocationId"] in record["eip_allocation_ids"]
    assert instances["bastion-2"]["InstanceId"] in record["instance_ids"]


def test_second_run_changes_nothing(stack):
    first, second = recap(stack.first), recap(stack.second_run())
    assert first["failed"] == 0 and first["changed"] > 0
    assert second["changed"] == 0 and second["failed"] == 0, stack.second_run().stdout[-4000:]


def test_inventory_gives_each_private_host_its_own_zones_bastion_first(stack, described):
    env = {**stack.env, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_INVENTORY_CACHE": "false"}
    proc = subprocess.run([str(VENV_BIN / "ansible-inventory"), "--list"], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, env={**os.environ, **env})
    assert proc.returncode == 0, proc.stderr
    hostvars = plain(json.loads(proc.stdout))["_meta"]["hostvars"]
    instances = described["instances"]
    ids = {name: i["InstanceId"] for name, i in instances.items()}
    expected = {"web01": ["bastion", "bastion-2"],           # private-subnet-1: zone a, with bastion
                "web02": ["bastion-2", "bastion"],           # private-subnet-2: zone c, with bastion-2
                "nat-instance": ["bastion-2", "bastion"]}    # public-subnet-2 (proxied): zone c
    for host, order in expected.items():
        assert [b["name"] for b in hostvars[host]["bastions"]] == order, host
        assert hostvars[host]["bastion"]["name"] == order[0]
        proxy = next(w for w in shlex.split(hostvars[host]["ansible_ssh_common_args"]) if w.startswith("ProxyCommand="))
        words = shlex.split(proxy[len("ProxyCommand="):].replace("%%", "%"))
        specs = [words[i + 1] for i, w in enumerate(words) if w == "--bastion"]
        assert [s.split(",")[2] for s in specs] == [ids[name] for name in order], host
        assert [s.split(",")[0] for s in specs] == [f"admin@{instances[n]['PublicIpAddress']}" for n in order]
    for bastion in ("bastion", "bastion-2"):  # the bastions themselves are reached directly, on their EIPs
        assert hostvars[bastion]["ansible_host"] == instances[bastion]["PublicIpAddress"]
        assert "ProxyCommand" not in hostvars[bastion]["ansible_ssh_common_args"]
        assert "bastions" not in hostvars[bastion]


def test_teardown_removes_the_second_bastion_and_its_elastic_ip(stack, described):
    """Last in the module (it ends the stack): everything goes, the second bastion and its address included."""
    stack.second_run()  # made before the stack is gone, if not yet
    proc = run_playbook("playbooks/teardown.yml", *stack.extra, env=stack.env)
    assert proc.returncode == 0, proc.stdout[-4000:]
    ec2 = stack.client("ec2")
    live = [i for r in ec2.describe_instances(Filters=[{"Name": "tag:Project", "Values": ["fumidai"]}])["Reservations"]
            for i in r["Instances"] if i["State"]["Name"] != "terminated"]
    assert live == []
    assert ec2.describe_addresses()["Addresses"] == []
    second = described["instances"]["bastion-2"]["InstanceId"]
    assert second not in stack.known_hosts.read_text()  # its pin is forgotten with it
