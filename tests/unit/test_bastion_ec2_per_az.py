"""bastion_ec2 with a bastion per availability zone (bastion_per_az, seeded as provisioning builds it): every private
host gets both bastions, its own zone's first, and a hop that falls back; the options that tune the fallback; two
bastions in one zone stay an error; hostile names stay harmless."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleError

from tests.support.hostile_names import HOSTILE_NAMES
from tests.unit import inventory_helpers as helpers
from tests.unit.inventory_helpers import HOP, control_path, run_inventory, ssh_argv

aws = helpers.aws  # the fixture: in-process moto with the project's images, an AwsSeed


def bastion_specs(argv: list[str]) -> list[list[str]]:
    """The hop's --bastion fields (login, port, instance ID, socket), in order."""
    return [argv[i + 1].split(",", 3) for i, word in enumerate(argv) if word == "--bastion"]


def option_value(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def test_each_private_host_gets_its_own_zones_bastion_first(aws, tmp_path):
    hosts = aws.project(bastion_per_az=True).hosts
    first, second = hosts["bastion"], hosts["bastion-2"]
    result = run_inventory(tmp_path)
    assert result.warnings == []
    assert result.group("role_bastion") == {"bastion", "bastion-2"}
    assert result.group("az_ap_northeast_1a") == {"bastion", "web01"}
    assert result.group("az_ap_northeast_1c") == {"bastion-2", "nat-instance", "web02"}

    for host, order in (("web01", (first, second)), ("web02", (second, first))):
        hostvars = result.vars(host)
        assert [b["instance_id"] for b in hostvars["bastions"]] == [b["id"] for b in order], host
        assert hostvars["bastion"] == hostvars["bastions"][0]
        assert hostvars["bastions"][0]["name"] == ("bastion" if order[0] is first else "bastion-2")
        argv = ssh_argv(hostvars["ansible_ssh_common_args"], hosts[host]["private"])
        assert argv[1] == str(HOP) and argv[-2:] == [hosts[host]["private"], "22"]
        assert bastion_specs(argv) == [[f"admin@{b['public']}", "22", b["id"], control_path(tmp_path, b["public"])]
                                       for b in order]
        assert option_value(argv, "--connect-timeout") == "5" and option_value(argv, "--failure-memory") == "300"
        # One pin file, strictly; each bastion's alias travels with its --bastion, none is shared.
        assert "StrictHostKeyChecking=yes" in argv and not [w for w in argv if w.startswith("HostKeyAlias")]
        assert "--control-path" not in argv
    # The bastions themselves: reached directly, each on its own master's socket, no hop.
    for name in ("bastion", "bastion-2"):
        hostvars = result.vars(name)
        assert hostvars["ansible_host"] == hosts[name]["public"]
        assert "ProxyCommand" not in hostvars["ansible_ssh_common_args"]
        assert hostvars["ansible_control_path"] == control_path(tmp_path, hosts[name]["public"])
        assert "bastions" not in hostvars


def test_one_bastion_keeps_todays_hop_and_lists_itself(aws, tmp_path):
    """Positive control for the above: without a second bastion the command is today's single-bastion one."""
    hosts = aws.project().hosts
    result = run_inventory(tmp_path)
    web01 = result.vars("web01")
    assert web01["ansible_ssh_common_args"] == helpers.expected_args(tmp_path, hosts["web01"], hosts["bastion"])
    assert [b["instance_id"] for b in web01["bastions"]] == [hosts["bastion"]["id"]]


def test_connect_timeout_and_failure_memory_options(aws, tmp_path):
    hosts = aws.project(bastion_per_az=True).hosts
    result = run_inventory(tmp_path, bastion_connect_timeout=2, bastion_failure_memory=0)
    argv = ssh_argv(result.vars("web01")["ansible_ssh_common_args"], hosts["web01"]["private"])
    assert option_value(argv, "--connect-timeout") == "2" and option_value(argv, "--failure-memory") == "0"
    for bad in ({"bastion_connect_timeout": 0}, {"bastion_failure_memory": -1}):
        with pytest.raises(AnsibleError, match=f"{next(iter(bad))} must be a whole number of seconds"):
            run_inventory(tmp_path, **bad)


def test_a_zone_without_a_bastion_gets_both_by_name(aws, tmp_path):
    project = aws.project(bastion_per_az=True)
    hosts = project.hosts
    elsewhere = aws.subnet(project.vpc_id, "private-subnet-d", "10.0.40.0/24", zone="d")
    db = aws.instance(elsewhere, "db01", "db")
    result = run_inventory(tmp_path)
    assert [b["name"] for b in result.vars("db01")["bastions"]] == ["bastion", "bastion-2"]
    argv = ssh_argv(result.vars("db01")["ansible_ssh_common_args"], db["private"])
    assert [s[2] for s in bastion_specs(argv)] == [hosts["bastion"]["id"], hosts["bastion-2"]["id"]]


def test_two_bastions_in_one_zone_stay_an_error(aws, tmp_path):
    hosts = aws.project(bastion_per_az=True).hosts
    # A third project-tagged "bastion" in bastion-2's subnet: a zone with two candidates is never a pick.
    rogue = aws.instance(hosts["bastion-2"]["subnet"], "bastion-3", "bastion", public=True)
    with pytest.raises(AnsibleError, match="more than one running instance is tagged as the bastion") as err:
        run_inventory(tmp_path)
    assert rogue["id"] in str(err.value) and hosts["bastion-2"]["id"] in str(err.value)
    assert hosts["bastion"]["id"] not in str(err.value)  # the other zone's is not in question
    aws.ec2.stop_instances(InstanceIds=[rogue["id"]])
    assert [b["name"] for b in run_inventory(tmp_path).vars("web02")["bastions"]] == ["bastion-2", "bastion"]


def test_filters_that_list_one_bastion_still_find_the_other(aws, tmp_path):
    hosts = aws.project(bastion_per_az=True).hosts
    result = run_inventory(tmp_path, filters={"tag:Name": ["bastion", "web02"]})
    assert result.hosts == {"bastion", "web02"}
    assert [b["instance_id"] for b in result.vars("web02")["bastions"]] == [hosts["bastion-2"]["id"],
                                                                             hosts["bastion"]["id"]]


def test_without_multiplex_the_first_bastion_only(aws, tmp_path):
    hosts = aws.project(bastion_per_az=True).hosts
    result = run_inventory(tmp_path, multiplex=False)
    argv = ssh_argv(result.vars("web02")["ansible_ssh_common_args"], hosts["web02"]["private"])
    assert argv[0] == "ssh" and argv[-1] == f"admin@{hosts['bastion-2']['public']}"
    assert "--bastion" not in argv
    assert [b["name"] for b in result.vars("web02")["bastions"]] == ["bastion-2", "bastion"]


def test_a_hostile_name_on_the_second_bastion_is_harmless(aws, tmp_path):
    hosts = aws.project(bastion_per_az=True).hosts
    second = hosts["bastion-2"]["id"]
    marker = tmp_path / "pwned"
    name = next(n for n in HOSTILE_NAMES if "\n" in n).replace("/tmp/fumidai-pwned", str(marker))
    aws.ec2.create_tags(Resources=[second], Tags=[{"Key": "Name", "Value": name}])
    result = run_inventory(tmp_path)
    assert second in result.hosts  # listed by its ID, with a warning
    assert any(second in w for w in result.warnings)
    web02 = result.vars("web02")
    assert [b["name"] for b in web02["bastions"]] == [second, "bastion"]
    command = web02["ansible_ssh_common_args"]
    assert "Match" not in command and "\n" not in command
    argv = ssh_argv(command, hosts["web02"]["private"])
    assert [s[2] for s in bastion_specs(argv)] == [second, hosts["bastion"]["id"]]
    assert not marker.exists()
