"""bastion_ec2 on several VPC topologies (moto in-process): groups, ansible_host, facts, the bastion each host uses."""

from __future__ import annotations

import json

import pytest
from ansible.errors import AnsibleError

from tests.support.aws_seed import REGION
from tests.unit import inventory_helpers as helpers
from tests.unit.inventory_helpers import control_path, expected_args, key_args, run_inventory, ssh_argv

aws = helpers.aws  # the fixture: in-process moto with the project's images, an AwsSeed


def test_project_topology_groups_hosts_and_hops(aws, tmp_path):
    project = aws.project()
    hosts = project.hosts
    bastion_ip = hosts["bastion"]["public"]
    result = run_inventory(tmp_path)

    assert result.hosts == {"bastion", "nat-instance", "web01", "web02"}
    assert result.group("public") == {"bastion", "nat-instance"}
    assert result.group("private") == {"web01", "web02"}
    assert result.group("subnet_public_subnet_1") == {"bastion"}
    assert result.group("subnet_public_subnet_2") == {"nat-instance"}
    assert result.group("subnet_private_subnet_1") == {"web01"}
    assert result.group("subnet_private_subnet_2") == {"web02"}
    assert result.group("role_bastion") == {"bastion"}
    assert result.group("role_nat") == {"nat-instance"}
    assert result.group("role_web") == {"web01", "web02"}
    assert result.group("az_ap_northeast_1a") == {"bastion", "web01"}
    assert result.group("az_ap_northeast_1c") == {"nat-instance", "web02"}
    assert result.group("vpc_fumidai_vpc") == {"bastion", "nat-instance", "web01", "web02"}
    assert result.warnings == []

    bastion = result.vars("bastion")
    assert bastion["ansible_host"] == bastion_ip
    assert bastion["ansible_user"] == "admin"
    # The bastion's own connection uses the hop's socket, so pinging it first opens the shared master.
    assert bastion["ansible_control_path"] == control_path(tmp_path, bastion_ip)
    # Every host, the bastion and direct hosts included, is checked against its pinned key.
    assert bastion["ansible_ssh_common_args"] == key_args(tmp_path, hosts["bastion"]["id"])
    nat = result.vars("nat-instance")
    assert nat["ansible_host"] == hosts["nat-instance"]["public"]
    assert nat["ansible_ssh_common_args"] == key_args(tmp_path, hosts["nat-instance"]["id"])

    for name in ("web01", "web02"):
        web = result.vars(name)
        assert web["ansible_host"] == hosts[name]["private"]
        assert web["ansible_ssh_common_args"] == expected_args(tmp_path, hosts[name], hosts["bastion"])
        assert web["bastion"] == {"name": "bastion", "instance_id": hosts["bastion"]["id"],
                                  "address": bastion_ip, "user": "admin", "port": 22}
        assert ssh_argv(web["ansible_ssh_common_args"], web["ansible_host"])[-3:] == [
            f"admin@{bastion_ip}", hosts[name]["private"], "22"]

    web01 = result.vars("web01")
    assert web01["instance_id"] == hosts["web01"]["id"]
    assert web01["instance_type"] == "t3.micro"
    assert web01["private_ip_address"] == hosts["web01"]["private"]
    assert web01["public_ip_address"] is None
    assert web01["subnet_id"] == hosts["web01"]["subnet"]
    assert web01["subnet_name"] == "private-subnet-1"
    assert web01["vpc_id"] == project.vpc_id
    assert web01["vpc_name"] == "fumidai-vpc"
    assert web01["availability_zone"] == "ap-northeast-1a"
    assert web01["state"] == "running"
    assert web01["image_id"] == aws.ami
    assert web01["ec2_tags"] == {"Name": "web01", "Project": "fumidai", "Role": "web"}
    assert web01["security_groups"] == [{"group_id": project.sgs["web"], "group_name": "fumidai-web"}]
    assert web01["security_groups"][0]["group_id"].startswith("sg-")
    assert web01["region"] == REGION
    json.dumps(web01)  # every fact is plain data (cacheable, printable by ansible-inventory)


def test_private_ip_mode_uses_private_addresses_everywhere(aws, tmp_path, monkeypatch):
    hosts = aws.project().hosts
    monkeypatch.setenv("FUMIDAI_BASTION_ADDRESS", "private_ip")
    result = run_inventory(tmp_path)
    bastion_ip = hosts["bastion"]["private"]
    assert result.vars("bastion")["ansible_host"] == bastion_ip
    assert result.vars("bastion")["ansible_control_path"] == control_path(tmp_path, bastion_ip)
    # On the VPN the NAT instance is reached on its private IP, directly; moto's public IPs are never used.
    assert result.vars("nat-instance")["ansible_host"] == hosts["nat-instance"]["private"]
    assert result.vars("nat-instance")["ansible_ssh_common_args"] == key_args(tmp_path, hosts["nat-instance"]["id"])
    for name in ("web01", "web02"):
        assert result.vars(name)["ansible_host"] == hosts[name]["private"]
        assert result.vars(name)["ansible_ssh_common_args"] == \
            expected_args(tmp_path, hosts[name], hosts["bastion"], bastion_ip)


def test_two_vpcs_each_hop_through_their_own_bastion(aws, tmp_path):
    first = aws.project("fumidai-vpc", "10.0").hosts
    second = aws.project("fumidai-dr", "10.1", suffix="-dr").hosts
    result = run_inventory(tmp_path)
    assert result.group("vpc_fumidai_vpc") == {"bastion", "nat-instance", "web01", "web02"}
    assert result.group("vpc_fumidai_dr") == {"bastion-dr", "nat-instance-dr", "web01-dr", "web02-dr"}
    assert result.group("role_bastion") == {"bastion", "bastion-dr"}
    assert result.group("private") == {"web01", "web02", "web01-dr", "web02-dr"}
    for suffix, hosts in (("", first), ("-dr", second)):
        for name in ("web01", "web02"):
            assert result.vars(name + suffix)["ansible_ssh_common_args"] == \
                expected_args(tmp_path, hosts[name + suffix], hosts["bastion" + suffix])
    assert first["bastion"]["public"] != second["bastion-dr"]["public"]
    assert result.warnings == []


def test_vpc_without_bastion_lists_hosts_without_proxy_and_warns(aws, tmp_path):
    aws.project()
    lonely = aws.vpc("lonely-vpc", "10.2.0.0/16")
    subnet = aws.subnet(lonely, "lonely-private", "10.2.1.0/24")
    app = aws.instance(subnet, "app01", "web")
    result = run_inventory(tmp_path)
    assert "app01" in result.group("private")
    assert "app01" in result.group("vpc_lonely_vpc")
    assert result.vars("app01")["ansible_host"] == app["private"]
    assert result.vars("app01")["ansible_ssh_common_args"] == key_args(tmp_path, app["id"])
    assert "bastion" not in result.vars("app01")
    assert len(result.warnings) == 1
    assert lonely in result.warnings[0] and "lonely-vpc" in result.warnings[0]
    assert "ProxyCommand" in result.vars("web01")["ansible_ssh_common_args"]  # the other VPC is unaffected


def test_stopped_instances_are_excluded_by_default(aws, tmp_path):
    hosts = aws.project().hosts
    aws.ec2.stop_instances(InstanceIds=[hosts["web02"]["id"]])
    assert "web02" not in run_inventory(tmp_path).hosts
    # Dropping the default state filter lists it again, stopped.
    result = run_inventory(tmp_path, filters={"instance-state-name": None})
    assert "web02" in result.hosts
    assert result.vars("web02")["state"] == "stopped"


def test_other_projects_are_filtered_out_server_side(aws, tmp_path):
    aws.project()
    subnet = aws.ec2.describe_subnets()["Subnets"][0]["SubnetId"]
    aws.instance(subnet, "someone-else", project="other")
    aws.instance(subnet, "untagged", project=None)
    assert run_inventory(tmp_path).hosts == {"bastion", "nat-instance", "web01", "web02"}
    assert "someone-else" in run_inventory(tmp_path, project_tag_value="other").hosts


def test_public_and_private_are_decided_by_route_tables_not_names(aws, tmp_path):
    vpc_id = aws.vpc("routes-vpc", "10.3.0.0/16")
    igw_id = aws.igw(vpc_id)
    # Named "private" but explicitly associated with an IGW table: public.
    explicit_public = aws.subnet(vpc_id, "private-looking", "10.3.1.0/24")
    aws.route_table(vpc_id, [explicit_public], GatewayId=igw_id)
    # No association: governed by the main table, which only has the local route -> private.
    by_main = aws.subnet(vpc_id, "public-looking", "10.3.2.0/24")
    bastion = aws.instance(explicit_public, "jump", "bastion", public=True)
    db01 = aws.instance(by_main, "db01", "db")
    result = run_inventory(tmp_path)
    assert result.group("public") == {"jump"}
    assert result.group("private") == {"db01"}
    assert result.vars("db01")["ansible_ssh_common_args"] == expected_args(tmp_path, db01, bastion)

    # Once the main table routes 0.0.0.0/0 to the IGW, the unassociated subnet is public.
    aws.ec2.create_route(RouteTableId=aws.main_table(vpc_id), DestinationCidrBlock="0.0.0.0/0", GatewayId=igw_id)
    result = run_inventory(tmp_path)
    assert result.group("public") == {"jump", "db01"}
    assert "subnet_public_looking" in result.data.groups


def test_public_host_without_public_ip_goes_through_the_bastion(aws, tmp_path):
    hosts = aws.project().hosts
    subnet = hosts["bastion"]["subnet"]
    quiet = aws.instance(subnet, "quiet", "web", public=False)
    result = run_inventory(tmp_path)
    assert "quiet" in result.group("public")
    assert result.vars("quiet")["ansible_host"] == quiet["private"]
    assert result.vars("quiet")["ansible_ssh_common_args"] == expected_args(tmp_path, quiet, hosts["bastion"])


# --------------------------------------------------------------------------- which bastion
def test_only_a_project_tagged_bastion_is_used(aws, tmp_path):
    """Anyone who can tag an instance Role=bastion in the VPC must not become the way in."""
    hosts = aws.project().hosts
    # A rogue "bastion" with a lower instance ID would have won before: untagged for the project, it is ignored.
    rogue = aws.instance(hosts["bastion"]["subnet"], "bastion-rogue", "bastion", public=True, project="other")
    result = run_inventory(tmp_path)
    assert result.vars("web01")["bastion"]["instance_id"] == hosts["bastion"]["id"]
    # Also when filters leave the bastion out and the plugin looks it up separately.
    result = run_inventory(tmp_path, filters={"tag:Role": "web"})
    assert result.vars("web01")["bastion"]["instance_id"] == hosts["bastion"]["id"]
    # With the project tag too, there are two candidates: an error naming both, never a silent pick.
    aws.ec2.create_tags(Resources=[rogue["id"]], Tags=[{"Key": "Project", "Value": "fumidai"}])
    for filters in ({}, {"tag:Role": "web"}):
        with pytest.raises(AnsibleError, match="more than one running instance is tagged as the bastion") as err:
            run_inventory(tmp_path, filters=filters)
        assert hosts["bastion"]["id"] in str(err.value) and rogue["id"] in str(err.value)
    # A stopped second bastion is no candidate.
    aws.ec2.stop_instances(InstanceIds=[rogue["id"]])
    result = run_inventory(tmp_path, filters={"instance-state-name": None})
    assert result.vars("web01")["bastion"]["instance_id"] == hosts["bastion"]["id"]


def test_filters_that_leave_out_the_bastion_still_hop_through_it(aws, tmp_path):
    hosts = aws.project().hosts
    result = run_inventory(tmp_path, filters={"tag:Role": "web"})
    assert result.hosts == {"web01", "web02"}
    assert result.vars("web01")["ansible_ssh_common_args"] == \
        expected_args(tmp_path, hosts["web01"], hosts["bastion"])


def test_proxy_public_hosts_sends_the_nat_instance_through_the_bastion(aws, tmp_path):
    hosts = aws.project().hosts
    result = run_inventory(tmp_path, proxy_public_hosts=True)
    nat = result.vars("nat-instance")
    assert nat["ansible_host"] == hosts["nat-instance"]["private"]
    assert nat["ansible_ssh_common_args"] == expected_args(tmp_path, hosts["nat-instance"], hosts["bastion"])
    assert "ProxyCommand" not in result.vars("bastion")["ansible_ssh_common_args"]
