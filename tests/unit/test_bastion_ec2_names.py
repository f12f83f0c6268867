"""bastion_ec2 host names: duplicates, missing and hostile Name tags, the 63-character limit, the hostnames option."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleError

from tests.support.hostile_names import HOSTILE_NAMES
from tests.unit import inventory_helpers as helpers
from tests.unit.inventory_helpers import key_args, run_inventory

aws = helpers.aws  # the fixture: in-process moto with the project's images, an AwsSeed


def test_duplicate_and_missing_names(aws, tmp_path):
    hosts = aws.project().hosts
    subnet = hosts["web01"]["subnet"]
    twin = aws.instance(subnet, "web01", "web")
    nameless = aws.instance(subnet, None, "web")
    result = run_inventory(tmp_path)
    first, second = sorted([hosts["web01"]["id"], twin["id"]])
    assert f"web01_{first}" in result.hosts and f"web01_{second}" in result.hosts
    assert "web01" not in result.hosts
    assert nameless["id"] in result.hosts
    assert result.group("role_web") == {f"web01_{first}", f"web01_{second}", "web02", nameless["id"]}
    assert len(result.warnings) == 1 and "web01" in result.warnings[0] and twin["id"] in result.warnings[0]
    # Stable: the same names on the next run, whatever order EC2 lists them in.
    assert run_inventory(tmp_path).hosts == result.hosts




def test_hostile_names_fall_back_to_the_instance_id_with_a_warning(aws, tmp_path):
    hosts = aws.project().hosts
    subnet = hosts["web01"]["subnet"]
    hostile = {name: aws.instance(subnet, name, "web") for name in HOSTILE_NAMES}
    # A name that is another instance's ID would let one host answer to the other's pin.
    impostor = aws.instance(subnet, hosts["web02"]["id"], "web")
    result = run_inventory(tmp_path)
    expected = {"bastion", "nat-instance", "web01", "web02", impostor["id"]} | {h["id"] for h in hostile.values()}
    assert result.hosts == expected
    assert result.group("role_web") == expected - {"bastion", "nat-instance"}
    assert len(result.warnings) == len(HOSTILE_NAMES) + 1
    for name, host in {**hostile, hosts["web02"]["id"]: impostor}.items():
        warning = next(w for w in result.warnings if host["id"] in w)
        assert "not a safe host name" in warning
        # Shown escaped and cut short: no control characters or newlines reach the operator's terminal.
        assert "\n" not in warning and "\t" not in warning and len(warning) < 300
        assert result.vars(host["id"])["ec2_tags"]["Name"] == name  # the raw tag stays data, never a name
        assert result.vars(host["id"])["ansible_ssh_common_args"].startswith(
            key_args(tmp_path, host["id"]) + " -o 'ProxyCommand=")


def test_safe_names_are_kept_and_collisions_stay_within_63_characters(aws, tmp_path):
    hosts = aws.project().hosts
    subnet = hosts["web01"]["subnet"]
    long_name = "a" * 63
    first = aws.instance(subnet, long_name, "web")
    second = aws.instance(subnet, long_name, "web")
    kept = aws.instance(subnet, "db_01.example-x", "db")
    result = run_inventory(tmp_path)
    assert "db_01.example-x" in result.hosts and result.vars("db_01.example-x")["instance_id"] == kept["id"]
    twins = {h for h in result.hosts if h.endswith((first["id"], second["id"]))}
    assert len(twins) == 2 and all(len(h) <= 63 and h.startswith("a" * 30) for h in twins)


def test_hostnames_option(aws, tmp_path):
    hosts = aws.project().hosts
    result = run_inventory(tmp_path, hostnames=["private-ip-address"])
    assert result.hosts == {h["private"] for h in hosts.values()}
    with pytest.raises(AnsibleError, match="unknown hostnames entry 'nonsense'"):
        run_inventory(tmp_path, hostnames=["nonsense"])
