"""The one admin_cidrs validator (plugins/module_utils/fumidai_access.py), as
preflight and the bastion role call it (the fumidai_admin_cidr_problems
filter) and as the audit calls it (breadth_problems); and the port and
forward-list checks and rules (fumidai_port_problems, fumidai_forward_problems,
fumidai_forward_rules) preflight and aws_security_groups share."""

from __future__ import annotations

import ipaddress

import pytest
from ansible_collections.fumidai.vpc.plugins.filter.fumidai_net import (
    FilterModule,
    fumidai_admin_cidr_problems,
    fumidai_forward_problems,
    fumidai_forward_rules,
    fumidai_port_problems,
)
from ansible_collections.fumidai.vpc.plugins.module_utils import fumidai_access as access


def problems(cidrs, allow=False) -> list[str]:
    return fumidai_admin_cidr_problems(cidrs, allow)


def test_the_filter_is_registered_under_its_name():
    assert FilterModule().filters()["admin_cidr_problems"] is fumidai_admin_cidr_problems


def test_the_caller_may_name_its_variable():
    """The bastion role validates bastion_admin_cidrs (from admin_cidrs) with the same filter."""
    assert fumidai_admin_cidr_problems(["0.0.0.0/1"], False, "bastion_admin_cidrs")[0].startswith(
        "bastion_admin_cidrs[0]: 0.0.0.0/1 is broader than a /8")
    assert fumidai_admin_cidr_problems([], False, "bastion_admin_cidrs")[0].startswith("bastion_admin_cidrs: is empty")


@pytest.mark.parametrize("cidrs", [
    ["203.0.113.0/24"],
    ["203.0.113.10/32", "198.51.100.0/24", "2001:db8:1234::/48"],
    ["10.0.0.0/8"],                       # exactly the IPv4 limit
    ["2001:db8::/32"],                    # exactly the IPv6 limit
    ["10.0.0.0/8", "10.1.0.0/16"],        # overlaps are counted once: still one /8
    ["10.0.0.0/9", "10.128.0.0/9"],       # two halves: exactly one /8 in total
    ["10.0.0.0/8", "2001:db8::/32"],      # each family has its own limit
])
def test_ranges_within_the_limit_pass(cidrs):
    assert problems(cidrs) == []


@pytest.mark.parametrize(("cidrs", "expected"), [
    (["0.0.0.0/0"], ["admin_cidrs[0]: 0.0.0.0/0 opens SSH to the whole internet; set allow_ssh_from_anywhere: "
                     "true if you really mean it"]),
    (["203.0.113.0/24", "::/0"], ["admin_cidrs[1]: ::/0 opens SSH to the whole internet"]),
    (["0.0.0.0/1", "128.0.0.0/1"], ["admin_cidrs[0]: 0.0.0.0/1 is broader than a /8", "2,147,483,648 addresses",
                                    "admin_cidrs[1]: 128.0.0.0/1 is broader than a /8"]),
    (["::/1"], ["admin_cidrs[0]: ::/1 is broader than a /32", "it covers 2^127 addresses"]),
    (["10.0.0.0/7"], ["admin_cidrs[0]: 10.0.0.0/7 is broader than a /8", "33,554,432 addresses"]),
    (["2001:db8::/31"], ["admin_cidrs[0]: 2001:db8::/31 is broader than a /32", "2^97 addresses"]),
    (["10.0.0.0/8", "172.16.0.0/12"], ["admin_cidrs: together the IPv4 ranges (10.0.0.0/8, 172.16.0.0/12) cover "
                                       "17,825,792 addresses, more than one /8 (16,777,216"]),
    ([f"{n}.0.0.0/8" for n in range(1, 224)], ["admin_cidrs: together the IPv4 ranges (1.0.0.0/8, 2.0.0.0/8",
                                               "cover 3,741,319,168 addresses"]),
    (["2001:db8::/32", "2001:db9::/48"], ["admin_cidrs: together the IPv6 ranges", "more than 2^96 addresses"]),
])
def test_too_broad_is_refused_with_the_entry_and_the_way_out(cidrs, expected):
    found = problems(cidrs)
    text = " | ".join(found)
    for words in expected:
        assert words in text, text
    assert all("allow_ssh_from_anywhere" in p for p in found)
    # With the opt-in, all of it is accepted.
    assert problems(cidrs, True) == []


def test_a_range_too_broad_alone_is_not_reported_again_in_the_total():
    found = problems(["0.0.0.0/1", "128.0.0.0/1", "10.0.0.0/8"])
    assert len(found) == 2 and not any("together" in p for p in found)


@pytest.mark.parametrize("opt_in", [True, "true", "yes", 1])
def test_the_opt_in_may_arrive_as_a_string_or_number(opt_in):
    assert problems(["0.0.0.0/0", "::/0"], opt_in) == []


@pytest.mark.parametrize("opt_out", [False, "false", "no", "", 0, None])
def test_false_values_keep_the_limit(opt_out):
    assert len(problems(["0.0.0.0/0"], opt_out)) == 1


@pytest.mark.parametrize(("value", "words"), [
    ("203.0.113.0/24", "must be a list of CIDRs (got the string '203.0.113.0/24'"),
    ([], "admin_cidrs: is empty"),
    (None, "admin_cidrs: is empty"),
    (["203.0.113.0/33"], "admin_cidrs[0]: '203.0.113.0/33' is not a valid CIDR"),
    (["203.0.113.1/24"], "admin_cidrs[0]: '203.0.113.1/24' is not a valid CIDR (203.0.113.1/24 has host bits set)"),
    (["203.0.113.10"], "admin_cidrs[0]: '203.0.113.10' is not a CIDR (write 203.0.113.10/32)"),
    (["::ffff:0:0/96"], "admin_cidrs[0]: ::ffff:0:0/96 is an IPv4-mapped IPv6 range"),
    (["::ffff:203.0.113.0/120"], "admin_cidrs[0]: ::ffff:cb00:7100/120 is an IPv4-mapped IPv6 range"),
])
def test_malformed_input_is_refused_even_with_the_opt_in(value, words):
    for allow in (False, True):
        found = problems(value, allow)
        assert len(found) == 1 and words in found[0], found


def test_breadth_problems_name_the_entries_the_caller_gives():
    """The audit passes the security group holding each range as its label."""
    entries = [("fumidai-bastion (sg-1)", ipaddress.ip_network("0.0.0.0/1"))]
    assert access.breadth_problems(entries, "its SSH sources")[0].startswith(
        "fumidai-bastion (sg-1): 0.0.0.0/1 is broader than a /8")
    entries = [("sg-1", ipaddress.ip_network("10.0.0.0/8")), ("sg-2", ipaddress.ip_network("11.0.0.0/24"))]
    assert access.breadth_problems(entries, "its SSH sources")[0].startswith(
        "its SSH sources: together the IPv4 ranges (10.0.0.0/8, 11.0.0.0/24)")


# ------------------------------------------------------------------ the port lists the security groups are built from

@pytest.mark.parametrize("ports", [[80, 443], ["80", " 443 "], [], [1, 65535]])
def test_port_lists_that_are_fine(ports):
    assert fumidai_port_problems(ports, "aws_security_groups_forward_ports") == []


@pytest.mark.parametrize(("ports", "words"), [
    ("80,443", "aws_security_groups_forward_ports: must be a list of TCP ports (1-65535), e.g. [80, 443] "
               "(got '80,443')"),
    (443, "must be a list of TCP ports"),
    ({"http": 80}, "must be a list of TCP ports"),
    ([80, 0], "aws_security_groups_forward_ports: 0 is not a TCP port (1-65535)"),
    ([65536, "http", True, -1], "65536, 'http', True, -1 are not TCP ports (1-65535)"),
])
def test_port_lists_that_are_refused(ports, words):
    found = fumidai_port_problems(ports, "aws_security_groups_forward_ports")
    assert len(found) == 1 and words in found[0], found


# ------------------------------------------------------------------ the forward list (nat_instance_forward_ports)

def test_the_default_forward_list_is_the_nat_instance_roles():
    assert access.DEFAULT_FORWARD == [{"proto": "tcp", "port": 80}, {"proto": "tcp", "port": 443}, {"proto": "icmp"}]
    assert fumidai_forward_problems(access.DEFAULT_FORWARD) == []
    assert fumidai_forward_problems([{"proto": "UDP", "port": "53"}, {"proto": "icmp"}]) == []


@pytest.mark.parametrize(("entries", "words"), [
    ([80], "nat_instance_forward_ports[0]: 80 must be {proto: tcp|udp, port: N} or {proto: icmp}"),
    ("tcp/80", "nat_instance_forward_ports: must be a list of {proto: tcp|udp, port: N} or {proto: icmp} entries"),
    ([{"proto": "sctp", "port": 9}], "nat_instance_forward_ports[0]: proto 'sctp' must be one of tcp, udp, icmp"),
    ([{"proto": "tcp"}], "nat_instance_forward_ports[0]: port None is not a TCP port (1-65535)"),
    ([{"proto": "udp", "port": 70000}], "nat_instance_forward_ports[0]: port 70000 is not a UDP port (1-65535)"),
    ([{"proto": "tcp", "port": True}], "port True is not a TCP port"),
    ([{"proto": "icmp", "port": 8}], "nat_instance_forward_ports[0]: icmp takes no port"),
])
def test_forward_lists_that_are_refused(entries, words):
    found = fumidai_forward_problems(entries)
    assert len(found) == 1 and words in found[0], found


def test_forward_rules_for_each_peer():
    entries = [{"proto": "tcp", "port": 443}, {"proto": "udp", "port": "53"}, {"proto": "icmp"},
               {"proto": "tcp", "port": 443}]
    assert fumidai_forward_rules(entries, ["10.0.12.0/24"], "cidr_ip", "From a private subnet") == [
        {"proto": "tcp", "from_port": 443, "to_port": 443, "cidr_ip": "10.0.12.0/24",
         "rule_desc": "From a private subnet"},
        {"proto": "udp", "from_port": 53, "to_port": 53, "cidr_ip": "10.0.12.0/24",
         "rule_desc": "From a private subnet"},
        {"proto": "icmp", "from_port": -1, "to_port": -1, "cidr_ip": "10.0.12.0/24",
         "rule_desc": "From a private subnet"},
    ]
    # The NAT instance's egress: the forward list plus its own update ports, once each.
    out = fumidai_forward_rules(entries, ["0.0.0.0/0"], "cidr_ip", "", [80, 443])
    assert [(r["proto"], r["from_port"]) for r in out] == [("tcp", 80), ("tcp", 443), ("udp", 53), ("icmp", -1)]
    assert all("rule_desc" not in r for r in out)
    assert fumidai_forward_rules(entries, [], "cidr_ip") == []
