"""The rule evaluation the doctor's verdicts rest on (vpc_rules: NACL order and fragments, SG sources),
moved here from tests/unit/test_doctor_paths.py with the evaluator."""

from __future__ import annotations

import ipaddress

from ansible_collections.fumidai.vpc.plugins.module_utils.vpc_rules import nacl_verdict, sg_allows

from tests.unit.fumidai_state import tcp

# ------------------------------------------------------------------ rule evaluation

def net(text: str):
    return ipaddress.ip_network(text)


def nacl(*ingress) -> dict:
    return {"ingress": list(ingress), "egress": []}


def test_nacl_lowest_rule_wins():
    rules = nacl([200, "tcp", "allow", "0.0.0.0/0", None, None, 22, 22], [100, "tcp", "deny", "192.0.2.0/24",
                                                                          None, None, 0, 65535])
    allowed, rule = nacl_verdict(rules, False, (22, 22), net("192.0.2.10/32"))
    assert not allowed and rule["rule"] == 100
    assert nacl_verdict(rules, False, (22, 22), net("198.51.100.1/32"))[0]


def test_nacl_allow_fragments_add_up():
    rules = nacl([100, "tcp", "allow", "0.0.0.0/0", None, None, 1024, 40000],
                 [110, "tcp", "allow", "0.0.0.0/0", None, None, 40001, 65535])
    assert nacl_verdict(rules, False, (32768, 65535), net("0.0.0.0/0"))[0]
    assert not nacl_verdict(rules, False, (22, 22), net("0.0.0.0/0"))[0]


def test_nacl_deny_of_part_of_the_internet_does_not_block_the_internet():
    rules = nacl([90, "all", "deny", "203.0.113.0/24", None, None, 0, 65535],
                 [100, "all", "allow", "0.0.0.0/0", None, None, 0, 65535])
    assert nacl_verdict(rules, False, (80, 80), net("0.0.0.0/0"))[0]
    assert not nacl_verdict(rules, False, (80, 80), net("203.0.113.9/32"))[0]


def test_nacl_udp_and_ipv6_rules_do_not_count_for_tcp_over_ipv4():
    rules = nacl([100, "udp", "allow", "0.0.0.0/0", None, None, 0, 65535],
                 [110, "all", "allow", "::/0", None, None, 0, 65535])
    assert nacl_verdict(rules, False, (22, 22), net("192.0.2.1/32")) == (False, None)


def test_nacl_boto3_entry_shape():
    rules = {"entries": [{"rule_number": 100, "protocol": "6", "rule_action": "allow", "egress": False,
                          "cidr_block": "0.0.0.0/0", "port_range": {"from": 22, "to": 22}}]}
    assert nacl_verdict(rules, False, (22, 22), net("192.0.2.1/32"))[0]
    assert not nacl_verdict(rules, True, (22, 22), net("192.0.2.1/32"))[0]


def test_sg_rules():
    groups = [{"group_id": "sg-1", "ip_permissions": [
        {"ip_protocol": "-1", "user_id_group_pairs": [{"group_id": "sg-9"}]},
        tcp(8000, 8100, cidrs=["10.0.0.0/16"]), tcp(22, ipv6=["::/0"])]}]
    assert sg_allows(groups, 5432, None, {"sg-9"})
    assert sg_allows(groups, 8080, net("10.0.3.4/32"))
    assert not sg_allows(groups, 8080, net("10.1.3.4/32"))
    assert not sg_allows(groups, 8080, net("10.0.0.0/8"))  # a wider source is not fully covered
    assert not sg_allows(groups, 22, net("192.0.2.1/32"))
    assert sg_allows(groups, 22, net("2001:db8::1/128"))

