"""vpc_rules: SG and NACL rules read once and evaluated for IPv4 and IPv6 (doctor, audit and lab share them)."""

from __future__ import annotations

import ipaddress

from ansible_collections.fumidai.vpc.plugins.module_utils import vpc_rules as rules

from tests.unit.fumidai_state import tcp

net = ipaddress.ip_network


def group(gid: str, ingress: list[dict], egress: list[dict] = (), name: str = "") -> dict:
    return {"group_id": gid, "group_name": name or gid, "ip_permissions": list(ingress),
            "ip_permissions_egress": list(egress), "tags": {"Name": name} if name else {}}


def test_protocols_by_name_and_number():
    assert rules.protocol_name("6") == "tcp" and rules.protocol_name("-1") == "all"
    assert rules.protocol_name(None) == "all" and rules.protocol_name("58") == "icmpv6"
    assert rules.protocol_matches("-1", "udp") and rules.protocol_matches("17", "udp")
    assert not rules.protocol_matches("tcp", "udp") and rules.protocol_matches("TCP", "6")


def test_normalised_rule_keeps_both_families_groups_and_prefix_lists():
    rule = tcp(22, cidrs=["192.0.2.0/24"], ipv6=["2001:db8::/32"], groups=["sg-1"])
    rule["prefix_list_ids"] = [{"prefix_list_id": "pl-1"}]
    normal = rules.normalize_sg_rule(rule)
    assert normal.protocol == "tcp" and normal.ports == (22, 22) and normal.icmp is None
    assert normal.cidrs_v4 == ("192.0.2.0/24",) and normal.cidrs_v6 == ("2001:db8::/32",)
    assert normal.group_ids == ("sg-1",) and normal.prefix_list_ids == ("pl-1",)
    assert set(normal.peers) == {"192.0.2.0/24", "2001:db8::/32", "sg-1", "pl-1"}


def test_normalised_all_traffic_and_icmp():
    everything = rules.normalize_sg_rule({"ip_protocol": "-1", "ipv6_ranges": [{"cidr_ipv6": "::/0"}]})
    assert everything.protocol == "all" and everything.ports is None and everything.cidrs_v6 == ("::/0",)
    ping = rules.normalize_sg_rule({"ip_protocol": "icmpv6", "from_port": 128, "to_port": -1})
    assert ping.protocol == "icmpv6" and ping.icmp == (128, None) and ping.ports is None
    any_icmp = rules.normalize_sg_rule({"ip_protocol": "1", "from_port": -1, "to_port": -1})
    assert any_icmp.protocol == "icmp" and any_icmp.icmp == (None, None)
    assert rules.normalize_sg_rule({"ip_protocol": "udp", "from_port": 53, "to_port": 53}).ports == (53, 53)
    assert len(rules.sg_rules(group("sg-1", [tcp(22)], [tcp(443)]), egress=True)) == 1


def test_sg_rule_matches_ipv4_ipv6_groups_and_ports():
    rule = tcp(20, 30, cidrs=["10.0.0.0/16"], ipv6=["2001:db8::/32"], groups=["sg-peer"])
    assert rules.sg_rule_matches(rule, 22, net("10.0.1.5/32")) == "10.0.0.0/16"
    assert rules.sg_rule_matches(rule, 22, net("2001:db8::1/128")) == "2001:db8::/32"
    assert rules.sg_rule_matches(rule, 22, None, {"sg-peer"}) == "group sg-peer"
    assert rules.sg_rule_matches(rule, 31, net("10.0.1.5/32")) is None
    assert rules.sg_rule_matches(rule, 22, net("2001:db9::1/128")) is None
    assert rules.sg_rule_matches(rule, 22, net("10.0.1.5/32"), protocol="udp") is None
    # An IPv4 range never admits an IPv6 peer, and the reverse (no ::/0 in ip_ranges tricks).
    assert rules.sg_rule_matches(tcp(22, cidrs=["0.0.0.0/0"]), 22, net("::1/128")) is None
    assert rules.sg_rule_matches(tcp(22, ipv6=["::/0"]), 22, net("192.0.2.1/32")) is None


def test_sg_rule_matches_prefix_lists_only_when_known_and_ignores_bad_cidrs():
    rule = tcp(443)
    rule["prefix_list_ids"] = [{"prefix_list_id": "pl-1"}]
    assert rules.sg_rule_matches(rule, 443, net("10.1.2.3/32")) is None
    assert rules.sg_rule_matches(rule, 443, net("10.1.2.3/32"), prefix_lists={"pl-1": ["10.1.0.0/16"]}) == \
        "prefix list pl-1"
    assert rules.sg_rule_matches(tcp(22, cidrs=["not-a-cidr"]), 22, net("10.0.0.1/32")) is None


def test_sg_allows_names_the_group_and_the_peer():
    peer = group("sg-peer", [], name="fumidai-alb")
    guarded = group("sg-web", [tcp(80, groups=["sg-peer"]), tcp(22, ipv6=["2001:db8::/32"])], name="fumidai-web")
    assert rules.sg_allows([guarded], 80, None, {"sg-peer"}, names={"sg-peer": peer}) == \
        "fumidai-web (sg-web) allows TCP 80 from security group fumidai-alb (sg-peer)"
    assert rules.sg_allows([guarded], 22, net("2001:db8::5/128")) == \
        "fumidai-web (sg-web) allows TCP 22 from 2001:db8::/32"
    assert rules.sg_allows([guarded], 22, net("192.0.2.1/32")) is None
    out = group("sg-out", [], [{"ip_protocol": "-1", "ipv6_ranges": [{"cidr_ipv6": "::/0"}]}])
    assert rules.sg_allows([out], 443, net("2600::1/128"), egress=True) == "sg-out allows TCP 443 to ::/0"
    assert rules.sg_match([out], 443, net("2600::1/128"), egress=True)[0] is out


def nacl(entries: list[tuple]) -> dict:
    """boto3 shape: (rule, egress, action, cidr, ports or None, protocol)."""
    out = []
    for number, egress, action, cidr, ports, proto in entries:
        entry = {"rule_number": number, "egress": egress, "rule_action": action, "protocol": proto}
        entry["ipv6_cidr_block" if ":" in cidr else "cidr_block"] = cidr
        if ports:
            entry["port_range"] = {"from": ports[0], "to": ports[1]}
        out.append(entry)
    return {"entries": out}


DEFAULT_NACL = nacl([(100, False, "allow", "0.0.0.0/0", None, "-1"), (101, False, "allow", "::/0", None, "-1"),
                     (32767, False, "deny", "0.0.0.0/0", None, "-1"), (32768, False, "deny", "::/0", None, "-1")])


def test_nacl_default_allows_both_families():
    for peer in ("192.0.2.1/32", "2001:db8::1/128", "0.0.0.0/0", "::/0"):
        allowed, rule = rules.nacl_verdict(DEFAULT_NACL, False, (22, 22), net(peer))
        assert allowed, peer
        assert rule["rule"] == (100 if "." in peer else 101)


def test_nacl_ipv6_deny_blocks_only_ipv6():
    acl = nacl([(90, False, "deny", "2001:db8::/32", (22, 22), "6"), (100, False, "allow", "0.0.0.0/0", None, "-1"),
                (101, False, "allow", "::/0", None, "-1")])
    deny = rules.nacl_entries(acl, False)[0]
    assert rules.nacl_verdict(acl, False, (22, 22), net("2001:db8::1/128")) == (False, deny)
    assert rules.nacl_verdict(acl, False, (22, 22), net("192.0.2.1/32"))[0]
    assert rules.nacl_verdict(acl, False, (80, 80), net("2001:db8::1/128"))[0]
    # A deny of part of the internet blocks some addresses, not the path from "anywhere".
    assert rules.nacl_verdict(acl, False, (22, 22), net("::/0"))[0]


def test_nacl_ephemeral_ranges_are_whittled_and_udp_is_told_apart():
    acl = nacl([(100, True, "allow", "::/0", (1024, 40000), "6"), (110, True, "allow", "::/0", (40001, 65535), "6")])
    assert rules.nacl_verdict(acl, True, (1024, 65535), net("2600::/128")) == (True, rules.nacl_entries(acl, True)[1])
    assert rules.nacl_verdict(acl, True, (1024, 65535), net("2600::/128"), protocol="udp") == (False, None)
    assert rules.nacl_verdict(acl, True, (1024, 65535), net("192.0.2.1/32")) == (False, None)


def test_nacl_info_list_shape_with_ipv6():
    acl = {"ingress": [[100, "6", "allow", "2001:db8::/32", None, None, 22, 22], [200, "-1", "deny", "::/0"]],
           "egress": []}
    assert rules.nacl_entries(acl, False)[0]["ports"] == (22, 22)
    assert rules.nacl_verdict(acl, False, (22, 22), net("2001:db8::9/128"))[0]
    assert not rules.nacl_verdict(acl, False, (23, 23), net("2001:db8::9/128"))[0]
