"""The lab's routes without podman: a subnet's route table as moto describes it in, the node's ip routes out."""

from __future__ import annotations

import ipaddress

import pytest

from lab.plan import build_plan
from lab.proc import LabError
from lab.render import render

OFFICE = ipaddress.ip_network("192.168.250.0/24")
PUBLIC_RT = "rtb-public"
PRIVATE2_RT = "rtb-private2"


def topo(public_routes, private2_default):
    subnets = [("subnet-pub1", "public-subnet-1", "10.0.1.0/24"), ("subnet-pub2", "public-subnet-2", "10.0.2.0/24"),
               ("subnet-prv2", "private-subnet-2", "10.0.12.0/24")]
    instances = [("i-000000000000000b1", "bastion", "subnet-pub1", "10.0.1.10"),
                 ("i-000000000000000a1", "nat-instance", "subnet-pub2", "10.0.2.10"),
                 ("i-000000000000000a2", "nat-instance-standby", "subnet-pub1", "10.0.1.20"),
                 ("i-00000000000000002", "web02", "subnet-prv2", "10.0.12.10")]
    return {
        "vpc": {"vpc_id": "vpc-1", "cidr_block": "10.0.0.0/16"},
        "subnets": [{"subnet_id": sid, "cidr_block": cidr, "availability_zone": "ap-northeast-1a", "vpc_id": "vpc-1",
                     "tags": {"Name": name}} for sid, name, cidr in subnets],
        "route_tables": [
            {"route_table_id": PUBLIC_RT, "vpc_id": "vpc-1",
             "associations": [{"subnet_id": "subnet-pub1"}, {"subnet_id": "subnet-pub2"}],
             "routes": [{"destination_cidr_block": "10.0.0.0/16", "gateway_id": "local", "state": "active"},
                        {"destination_cidr_block": "0.0.0.0/0", "gateway_id": "igw-1", "state": "active"},
                        *public_routes]},
            {"route_table_id": PRIVATE2_RT, "vpc_id": "vpc-1", "associations": [{"subnet_id": "subnet-prv2"}],
             "routes": [{"destination_cidr_block": "10.0.0.0/16", "gateway_id": "local", "state": "active"},
                        {"destination_cidr_block": "0.0.0.0/0", "instance_id": private2_default,
                         "state": "active"}]}],
        "nat_gateways": [], "internet_gateways": [{"internet_gateway_id": "igw-1"}], "albs": [], "images": [],
        "security_groups": [{"group_id": "sg-1", "group_name": "all", "ip_permissions": [],
                             "ip_permissions_egress": []}],
        "network_acls": [],
        "instances": [{"instance_id": iid, "private_ip_address": ip, "subnet_id": sid, "tags": {"Name": name},
                       "key_name": "fumidai", "network_interfaces": [{"groups": [{"group_id": "sg-1"}]}]}
                      for iid, name, sid, ip in instances],
        "key_pairs": {"fumidai": {"PublicKey": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB lab"}},
    }


def node(plan, name):
    return next(n for n in plan["nodes"] if n["name"] == name)


def script_lines(plan, name):
    return render("instance-net.sh", plan=plan, node=node(plan, name), sg=[], user="admin", key="k").splitlines()


PROBE_ROUTE = {"destination_cidr_block": "198.18.0.12/32", "instance_id": "i-000000000000000a1", "state": "active"}


def test_a_more_specific_route_to_an_instance_reaches_every_node_of_the_subnet():
    plan = build_plan(topo([PROBE_ROUTE], "i-000000000000000a1"), OFFICE)
    for name in ("bastion", "nat-instance-standby", "nat-instance"):
        assert node(plan, name)["routes"] == [{"cidr": "198.18.0.12/32", "via": "10.0.2.10"}]
        assert node(plan, name)["default_via"] == plan["igw_ip"]
    assert "ip route replace 198.18.0.12/32 via 10.0.2.10 dev eth0 proto 77" in script_lines(plan, "bastion")
    # Control: a subnet whose table has no such route gets none, and its default route is the table's.
    assert node(plan, "web02")["routes"] == []
    assert node(plan, "web02")["default_via"] == "10.0.2.10"
    assert not [line for line in script_lines(plan, "web02") if "proto 77" in line and "replace" in line]


def test_a_probe_route_in_the_standby_subnets_own_table_reaches_that_subnets_nodes_only():
    """nat_instance_standby: public-subnet-1 (the standby's) has a table of its own with the probe address's /32 to
    the active NAT instance; public-subnet-2 (the active's) keeps the public table, without it (it would loop)."""
    topology = topo([], "i-000000000000000a1")
    public = topology["route_tables"][0]
    public["associations"] = [{"subnet_id": "subnet-pub2"}]
    topology["route_tables"].append(
        {"route_table_id": "rtb-public-standby", "vpc_id": "vpc-1", "associations": [{"subnet_id": "subnet-pub1"}],
         "routes": [*public["routes"], PROBE_ROUTE]})
    plan = build_plan(topology, OFFICE)
    for name in ("bastion", "nat-instance-standby"):
        assert node(plan, name)["routes"] == [{"cidr": "198.18.0.12/32", "via": "10.0.2.10"}]
        assert node(plan, name)["default_via"] == plan["igw_ip"]
        assert "ip route replace 198.18.0.12/32 via 10.0.2.10 dev eth0 proto 77" in script_lines(plan, name)
    # The active NAT instance's subnet: the same default route, no probe route (and none rendered).
    assert node(plan, "nat-instance")["routes"] == []
    assert node(plan, "nat-instance")["default_via"] == plan["igw_ip"]
    assert not [line for line in script_lines(plan, "nat-instance") if "198.18.0.12" in line]
    assert node(plan, "web02")["routes"] == [] and node(plan, "web02")["default_via"] == "10.0.2.10"


def test_a_re_run_removes_routes_the_table_no_longer_has_before_adding_the_current_ones():
    lines = script_lines(build_plan(topo([PROBE_ROUTE], "i-000000000000000a1"), OFFICE), "bastion")
    flush = lines.index("ip route flush proto 77 2>/dev/null || true")
    assert flush < lines.index("ip route replace 198.18.0.12/32 via 10.0.2.10 dev eth0 proto 77")


def test_a_replaced_default_route_moves_the_subnets_nodes_to_the_new_target():
    before = build_plan(topo([], "i-000000000000000a1"), OFFICE)
    after = build_plan(topo([], "i-000000000000000a2"), OFFICE)
    assert node(before, "web02")["default_via"] == "10.0.2.10"
    assert node(after, "web02")["default_via"] == "10.0.1.20"
    assert "ip route replace default via 10.0.1.20 dev eth0" in script_lines(after, "web02")


def test_a_blackhole_route_or_one_to_a_target_the_lab_does_not_run_drops_its_traffic():
    gone = {"destination_cidr_block": "198.18.0.13/32", "instance_id": "i-0000000000000dead", "state": "active"}
    black = {**PROBE_ROUTE, "state": "blackhole"}
    plan = build_plan(topo([black, gone], "i-000000000000000a1"), OFFICE)
    assert node(plan, "bastion")["routes"] == [{"cidr": "198.18.0.12/32", "via": None},
                                               {"cidr": "198.18.0.13/32", "via": None}]
    lines = script_lines(plan, "bastion")
    assert any(line.startswith("ip route replace blackhole 198.18.0.12/32 proto 77") for line in lines)
    assert any(line.startswith("ip route replace blackhole 198.18.0.13/32 proto 77") for line in lines)


@pytest.mark.parametrize("cidr", ["198.18.0.12/32; reboot", "198.18.0.0/33", "fd00::/64", "10.0.0.1/8"])
def test_a_destination_that_is_not_an_ipv4_cidr_is_refused_before_any_script_is_written(cidr):
    with pytest.raises(LabError, match="is not an IPv4 CIDR"):
        build_plan(topo([{**PROBE_ROUTE, "destination_cidr_block": cidr}], "i-000000000000000a1"), OFFICE)
