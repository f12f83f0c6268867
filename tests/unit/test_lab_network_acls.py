"""The lab's network ACLs without podman: ACL entries as moto describes them in, stateless iptables rules out."""

from __future__ import annotations

import ipaddress

import pytest

from lab.plan import build_plan
from lab.proc import LabError
from lab.render import render
from lab.render.network_acls import nacl_rules, network_acl_rules

OFFICE = ipaddress.ip_network("192.168.250.0/24")


def entry(rule, action, cidr="0.0.0.0/0", protocol="-1", egress=False, ports=None, icmp=None):
    found = {"rule_number": rule, "rule_action": action, "protocol": protocol, "egress": egress}
    found["ipv6_cidr_block" if ":" in cidr else "cidr_block"] = cidr
    if ports:
        found["port_range"] = {"from": ports[0], "to": ports[1]}
    if icmp:
        found["icmp_type_code"] = {"type": icmp[0], "code": icmp[1]}
    return found


DEFAULT_ACL = {"network_acl_id": "acl-default", "vpc_id": "vpc-1", "is_default": True, "associations": [],
               "entries": [entry(100, "allow"), entry(32767, "deny"),
                           entry(100, "allow", egress=True), entry(32767, "deny", egress=True)]}
# private-subnet-1's own ACL: ssh only from the admin subnet, web from anywhere, and - the part people forget -
# the ephemeral ports for the replies to its own downloads; out: anything.
PRIVATE_ACL = {"network_acl_id": "acl-private", "vpc_id": "vpc-1", "is_default": False,
               "associations": [{"subnet_id": "subnet-prv1", "network_acl_id": "acl-private"}],
               "entries": [entry(130, "allow", protocol="6", ports=(1024, 65535)),
                           entry(100, "deny", "10.0.1.0/24", "6", ports=(22, 22)),
                           entry(110, "allow", "10.0.0.0/16", "6", ports=(22, 22)),
                           entry(120, "allow", protocol="6", ports=(80, 80)),
                           entry(140, "allow", protocol="1", icmp=(8, -1)),
                           entry(150, "allow", "2001:db8::/32", "6", ports=(443, 443)),
                           entry(32767, "deny"),
                           entry(100, "allow", egress=True), entry(32767, "deny", egress=True)]}


def test_entries_become_rules_in_rule_number_order_allow_returning_and_deny_dropping():
    assert nacl_rules(PRIVATE_ACL, egress=False) == [
        "-s 10.0.1.0/24 -p tcp --dport 22 -m comment --comment rule-100 -j DROP",
        "-s 10.0.0.0/16 -p tcp --dport 22 -m comment --comment rule-110 -j RETURN",
        "-p tcp --dport 80 -m comment --comment rule-120 -j RETURN",
        "-p tcp --dport 1024:65535 -m comment --comment rule-130 -j RETURN",
        "-p icmp --icmp-type 8 -m comment --comment rule-140 -j RETURN",
        "-m comment --comment rule-32767 -j DROP",
    ]
    assert nacl_rules(PRIVATE_ACL, egress=True) == [
        "-m comment --comment rule-100 -j RETURN", "-m comment --comment rule-32767 -j DROP"]


def test_ipv6_entries_go_to_ip6tables_only_and_icmp_stays_in_its_family():
    assert nacl_rules(PRIVATE_ACL, egress=False, version=6) == [
        "-s 2001:db8::/32 -p tcp --dport 443 -m comment --comment rule-150 -j RETURN"]


@pytest.mark.parametrize(("field", "value"), [("protocol", "6 -j ACCEPT"), ("rule_action", "accept"),
                                              ("cidr_block", "10.0.0.0/16; reboot")])
def test_an_entry_in_a_form_aws_never_returns_is_refused_not_skipped(field, value):
    hostile = {**PRIVATE_ACL, "entries": [{**entry(100, "deny", "10.0.0.0/16", "6", ports=(22, 22)), field: value}]}
    with pytest.raises(LabError):
        nacl_rules(hostile, egress=False)


@pytest.fixture
def plan():
    subnets = [("subnet-pub1", "public-subnet-1", "10.0.1.0/24"), ("subnet-prv1", "private-subnet-1", "10.0.11.0/24"),
               ("subnet-prv2", "private-subnet-2", "10.0.12.0/24")]
    instances = [("i-0000000000000000b", "bastion", "subnet-pub1", "10.0.1.10"),
                 ("i-00000000000000001", "web01", "subnet-prv1", "10.0.11.10"),
                 ("i-00000000000000002", "web02", "subnet-prv2", "10.0.12.10")]
    topo = {
        "vpc": {"vpc_id": "vpc-1", "cidr_block": "10.0.0.0/16"},
        "subnets": [{"subnet_id": sid, "cidr_block": cidr, "availability_zone": "ap-northeast-1a", "vpc_id": "vpc-1",
                     "tags": {"Name": name}} for sid, name, cidr in subnets],
        "route_tables": [], "nat_gateways": [], "internet_gateways": [], "albs": [], "images": [],
        "security_groups": [{"group_id": "sg-1", "group_name": "all", "ip_permissions": [],
                             "ip_permissions_egress": []}],
        "network_acls": [DEFAULT_ACL, PRIVATE_ACL],
        "instances": [{"instance_id": iid, "private_ip_address": ip, "subnet_id": sid, "tags": {"Name": name},
                       "key_name": "fumidai", "network_interfaces": [{"groups": [{"group_id": "sg-1"}]}]}
                      for iid, name, sid, ip in instances],
        "key_pairs": {"fumidai": {"PublicKey": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB lab"}},
    }
    return build_plan(topo, OFFICE)


def node(plan, name):
    return next(n for n in plan["nodes"] if n["name"] == name)


def test_each_node_gets_its_subnets_acl_else_the_vpcs_default(plan):
    assert node(plan, "web01")["network_acl"] == "acl-private"
    assert node(plan, "web01")["subnet_cidrs"] == ["10.0.11.0/24"]
    assert node(plan, "web02")["network_acl"] == "acl-default"
    assert node(plan, "bastion")["network_acl"] == "acl-default"
    # Not in a subnet: no ACL (the VPN router stands for the office side of the VGW).
    assert node(plan, "vpn-gateway")["network_acl"] == ""
    assert network_acl_rules(plan, node(plan, "vpn-gateway")) == []


def test_net_sh_puts_the_acl_before_the_security_groups_and_exempts_the_subnet_and_loopback(plan):
    script = render("instance-net.sh", plan=plan, node=node(plan, "web01"), sg=[], user="admin", key="k")
    lines = script.splitlines()
    acl = [line for line in lines if "AWS-NACL-IN" in line and line.startswith("iptables")]
    assert acl[:2] == ["iptables -w -A AWS-NACL-IN -i lo -j RETURN",
                       "iptables -w -A AWS-NACL-IN -s 10.0.11.0/24 -j RETURN  # within the subnet: no ACL on the way"]
    assert acl[2] == "iptables -w -A AWS-NACL-IN -s 10.0.1.0/24 -p tcp --dport 22 -m comment --comment rule-100 -j DROP"
    assert acl[-1] == "iptables -w -A AWS-NACL-IN -j DROP"
    # Stateless: no conntrack shortcut in the ACL chains (a security group has one).
    assert not [line for line in lines if "AWS-NACL" in line and "conntrack" in line]
    # Inserted at the top of INPUT, OUTPUT and FORWARD after the groups' jumps were: evaluated first.
    jumps = [line for line in lines if line.startswith("jump_first")]
    assert jumps[-4:] == ["jump_first INPUT AWS-NACL-IN 1", "jump_first OUTPUT AWS-NACL-OUT 1",
                          "jump_first FORWARD AWS-NACL-OUT 1", "jump_first FORWARD AWS-NACL-IN 1"]
    assert "jump6_first INPUT AWS-NACL-IN 1" in lines


def test_an_acl_the_plan_names_but_moto_did_not_describe_is_an_error(plan):
    plan = {**plan, "network_acls": {}}
    with pytest.raises(LabError, match="acl-private is associated but not described"):
        network_acl_rules(plan, node(plan, "web01"))
