"""The audit's checks of the bastion's SSH sources and egress and of the NAT instance's security group
(moved from tests/unit/test_audit_checks.py)."""

from __future__ import annotations

import copy

import pytest
from ansible_collections.fumidai.vpc.plugins.module_utils.audit_report import audit

from tests.unit.audit.audit_helpers import (
    NAT_SUBNET,
    WORLD,
    all_traffic,
    fumidai_state,
    only,
    violations,
)
from tests.unit.fumidai_state import INSTANCES, SG, group, instance, route_table, tcp

# ------------------------------------------------------------------ broad admin ranges on the bastion

@pytest.mark.parametrize(("sources", "words", "revoked"), [
    (["0.0.0.0/1", "128.0.0.0/1"], ["0.0.0.0/1 is broader than a /8", "128.0.0.0/1 is broader than a /8"],
     ["CidrIp=0.0.0.0/1", "CidrIp=128.0.0.0/1"]),
    (["::/1"], ["::/1 is broader than a /32"], ["CidrIpv6=::/1"]),
    (["2001:db8::/31"], ["2001:db8::/31 is broader than a /32"], ["CidrIpv6=2001:db8::/31"]),
    # admin_cidrs' 192.0.2.0/24 is already there: with a /8 it is more than one /8 in total.
    (["10.0.0.0/8"], ["together the IPv4 ranges (192.0.2.0/24, 10.0.0.0/8) cover 16,777,472 addresses",
                      "more than one /8 (16,777,216"], ["CidrIp=192.0.2.0/24", "CidrIp=10.0.0.0/8"]),
])
def test_bastion_ssh_sources_broader_than_the_admin_limit(sources, words, revoked):
    state = fumidai_state()
    v4 = [s for s in sources if ":" not in s]
    v6 = [s for s in sources if ":" in s]
    group(state, "bastion")["ip_permissions"].append(tcp(22, cidrs=v4, ipv6=v6))
    found = only(state, "broad_admin_cidrs")
    assert found["resource_id"] == INSTANCES["bastion"][0]
    for word in words + ["fumidai-bastion (sg-0ba5)", "allow_ssh_from_anywhere"]:
        assert word in found["message"], found["message"]
    assert f"revoke-security-group-ingress --group-id {SG['bastion']}" in found["fix"]
    # The fix removes the ranges too broad alone (all of them when only their total is too broad).
    assert sorted(part.split("[{")[1].rstrip("}]).") for part in found["fix"].split("; ")) == sorted(revoked)


def test_broad_ranges_split_across_two_groups_of_the_bastion_count_together():
    state = fumidai_state()
    extra = copy.deepcopy(group(state, "bastion"))
    extra.update(group_id="sg-0ba6", group_name="extra", tags={"Name": "extra"},
                 ip_permissions=[tcp(22, cidrs=["11.0.0.0/9"])])
    state["security_groups"].append(extra)
    group(state, "bastion")["ip_permissions"].append(tcp(22, cidrs=["12.0.0.0/9"]))
    assert violations(state) == []  # half a /8 is within the limit, and the extra group is not the bastion's
    instance(state, "bastion")["security_groups"].append({"group_id": "sg-0ba6", "group_name": "extra"})
    found = only(state, "broad_admin_cidrs")  # the bastion admits both: more than a /8 in total
    assert ("together the IPv4 ranges (192.0.2.0/24, 12.0.0.0/9, 11.0.0.0/9) cover 16,777,472 addresses"
            in found["message"]), found["message"]


def test_admin_ranges_within_the_limit_pass():
    state = fumidai_state()
    group(state, "bastion")["ip_permissions"].append(tcp(22, cidrs=["10.0.0.0/9"], ipv6=["2001:db8::/32"]))
    assert violations(state) == []


def test_allow_ssh_from_anywhere_is_honoured_for_the_bastion_only():
    state = fumidai_state()
    group(state, "bastion")["ip_permissions"].append(tcp(22, cidrs=[WORLD, "0.0.0.0/1"]))
    group(state, "alb")["ip_permissions"].append(tcp(22, cidrs=[WORLD]))
    state["policy"] = {"allow_ssh_from_anywhere": True}
    report = audit(state)
    # The bastion's SSH from anywhere is the design's choice (noted); the ALB's is still a violation.
    assert [(v["check"], v["resource_id"]) for v in report["violations"]] == [("ssh_open_to_world", SG["alb"])]
    assert report["notes"] == [
        "allow_ssh_from_anywhere is true: SSH from anywhere to the bastion's security group fumidai-bastion "
        "(sg-0ba5) is accepted as the design's choice, not reported",
        f"allow_ssh_from_anywhere is true: bastion ({INSTANCES['bastion'][0]})'s SSH sources broader than the admin "
        f"limit (192.0.2.0/24, 0.0.0.0/1) are accepted as the design's choice, not reported"]
    assert report["lines"][-3:-1] == [f"[NOTE] {note}" for note in report["notes"]]
    state["policy"] = {"allow_ssh_from_anywhere": "false"}  # as a string, the way extra vars may arrive
    assert {v["check"] for v in violations(state)} == {"ssh_open_to_world", "broad_admin_cidrs"}


# ------------------------------------------------------------------ bastion egress

@pytest.mark.parametrize(("rule", "peer"), [
    (all_traffic([WORLD]), WORLD),
    (tcp(22, cidrs=[WORLD]), WORLD),
    (tcp(22, cidrs=["10.1.0.0/16"]), "10.1.0.0/16"),
    (tcp(8080, cidrs=["10.0.0.0/16"]), "10.0.0.0/16"),
    (tcp(0, 65535, cidrs=[WORLD]), WORLD),
    ({**tcp(53, cidrs=[WORLD]), "ip_protocol": "udp"}, WORLD),
])
def test_bastion_egress_wider_than_ssh_into_the_vpc_and_updates(rule, peer):
    state = fumidai_state()
    group(state, "bastion")["ip_permissions_egress"].append(rule)
    found = only(state, "bastion_egress_open")
    assert found["resource_id"] == INSTANCES["bastion"][0]
    assert f"to {peer} (outbound rule of fumidai-bastion (sg-0ba5))" in found["message"]
    assert "SSH into its VPC (10.0.0.0/16) and TCP 80, 443 for updates" in found["message"]
    assert f"revoke-security-group-egress --group-id {SG['bastion']}" in found["fix"]


def test_bastion_egress_aws_default_is_open():
    state = fumidai_state()
    group(state, "bastion")["ip_permissions_egress"] = [all_traffic([WORLD])]
    assert "may open all traffic to 0.0.0.0/0" in only(state, "bastion_egress_open")["message"]


@pytest.mark.parametrize("rule", [tcp(22, groups=[SG["web"]]), tcp(22, cidrs=["10.0.11.0/24"]),
                                  tcp(443, ipv6=["::/0"])])
def test_bastion_egress_within_the_rules(rule):
    state = fumidai_state()
    group(state, "bastion")["ip_permissions_egress"].append(rule)
    assert violations(state) == []


def test_bastion_update_ports_follow_the_policy():
    state = fumidai_state()
    state["policy"] = {"update_ports": [443]}
    found = only(state, "bastion_egress_open")
    assert "TCP 80 to 0.0.0.0/0" in found["message"] and "TCP 443 for updates" in found["message"]


# ------------------------------------------------------------------ NAT instance security group

@pytest.mark.parametrize(("rule", "egress", "words"), [
    (all_traffic([NAT_SUBNET]), False, "all traffic from 10.0.12.0/24 (inbound)"),
    (tcp(22, cidrs=[NAT_SUBNET]), False, "TCP 22 from 10.0.12.0/24"),       # its own sshd, from the private hosts
    (tcp(22, cidrs=["10.0.1.0/24"]), False, "TCP 22 from 10.0.1.0/24"),     # SSH only from the bastion's group
    (tcp(22, groups=[SG["web"]]), False, f"TCP 22 from {SG['web']}"),
    (tcp(80, cidrs=["10.0.11.0/24"]), False, "TCP 80 from 10.0.11.0/24"),   # routed through the NAT gateway
    (tcp(3306, cidrs=[NAT_SUBNET]), False, "TCP 3306 from 10.0.12.0/24"),
    (all_traffic([WORLD]), True, "all traffic to 0.0.0.0/0 (outbound)"),
    (tcp(25, cidrs=[WORLD]), True, "TCP 25 to 0.0.0.0/0"),
])
def test_nat_security_group_wider_than_needed(rule, egress, words):
    state = fumidai_state()
    group(state, "nat")["ip_permissions_egress" if egress else "ip_permissions"].append(rule)
    found = only(state, "nat_sg_too_wide")
    assert found["resource_id"] == INSTANCES["nat-instance"][0]
    assert words in found["message"], found["message"]
    assert "TCP 80, 443 and ICMP from the subnets routed through it (10.0.12.0/24)" in found["message"]
    command = "revoke-security-group-egress" if egress else "revoke-security-group-ingress"
    assert f"{command} --group-id {SG['nat']}" in found["fix"]


def test_nat_forward_policy_is_honoured():
    """The forward list in nat_instance_forward_ports's shape: here HTTPS and DNS over UDP, no HTTP, no ICMP."""
    state = fumidai_state()
    state["policy"] = {"forward_ports": [{"proto": "tcp", "port": 443}, {"proto": "udp", "port": 53}],
                       "update_ports": [443]}
    group(state, "nat")["ip_permissions"].append({**tcp(53, cidrs=[NAT_SUBNET]), "ip_protocol": "udp"})
    found = violations(state, "nat_sg_too_wide")
    assert sorted(v["message"].split(" allows ")[1].split(":")[0] for v in found) == [
        "ICMP (all types) from 10.0.12.0/24 (inbound)", "ICMP (all types) to 0.0.0.0/0 (outbound)",
        "TCP 80 from 10.0.12.0/24 (inbound)", "TCP 80 to 0.0.0.0/0 (outbound)"]
    assert "need TCP 443 and UDP 53 from the subnets routed through it" in found[0]["message"]


def test_nat_route_by_network_interface_counts_as_routed():
    state = fumidai_state()
    table = route_table(state, "rtb-0prv2")
    default = next(r for r in table["routes"] if r["destination_cidr_block"] == WORLD)
    default.update(instance_id=None, network_interface_id=f"eni-{INSTANCES['nat-instance'][0][2:]}")
    assert violations(state) == []
    default.update(network_interface_id="eni-0someoneelse")
    found = violations(state, "nat_sg_too_wide")
    assert found and all("no subnet routes through it" in v["message"] for v in found)


