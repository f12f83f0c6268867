"""The security audit's checks (plugins/module_utils/fumidai_checks.py) on
hand-built state: the topology fumidai builds passes, each violation is found
once, on the right resource, with a fix; hostile tag values are printed
escaped."""

from __future__ import annotations

import base64
import copy
import json
import struct

import pytest
from ansible_collections.fumidai.vpc.plugins.module_utils.fumidai_checks import CHECKS, audit

from tests.unit.fumidai_state import INSTANCES, SG, SUBNETS, VPC, clean_state, group, instance, route_table, tcp

WORLD = "0.0.0.0/0"
NAT_SUBNET = SUBNETS["private-subnet-2"][1]  # the one subnet routed through the NAT instance
KNOWN_HOSTS = "/home/admin/fumidai/.cache/known_hosts"


def icmp(cidrs=()) -> dict:
    return {"ip_protocol": "icmp", "from_port": -1, "to_port": -1, "ip_ranges": [{"cidr_ip": c} for c in cidrs],
            "ipv6_ranges": [], "prefix_list_ids": [], "user_id_group_pairs": []}


def all_traffic(cidrs=()) -> dict:
    return {"ip_protocol": "-1", "ip_ranges": [{"cidr_ip": c} for c in cidrs], "ipv6_ranges": [],
            "prefix_list_ids": [], "user_id_group_pairs": []}


def key_line(instance_id: str, key_type: str = "ssh-ed25519") -> str:
    blob = struct.pack(">I", len(key_type)) + key_type.encode() + struct.pack(">I", 32) + bytes(range(32))
    return f"{instance_id} {key_type} {base64.b64encode(blob).decode()}"


def pinned(*instance_ids: str) -> dict:
    text = "# pinned by fumidai\n" + "".join(key_line(i) + "\n" for i in instance_ids)
    return {"path": KNOWN_HOSTS, "text": text}


def fumidai_state() -> dict:
    """clean_state() with the security groups aws_security_groups builds and every instance's host key pinned."""
    state = clean_state()
    group(state, "bastion")["ip_permissions_egress"] = [tcp(22, cidrs=["10.0.0.0/16"]), tcp(80, cidrs=[WORLD]),
                                                        tcp(443, cidrs=[WORLD])]
    group(state, "alb")["ip_permissions_egress"] = [tcp(80, groups=[SG["web"]])]
    group(state, "web")["ip_permissions_egress"] = [tcp(80, cidrs=[WORLD]), tcp(443, cidrs=[WORLD]),
                                                    icmp([WORLD])]
    group(state, "nat")["ip_permissions"] = [tcp(80, cidrs=[NAT_SUBNET]), tcp(443, cidrs=[NAT_SUBNET]),
                                             icmp([NAT_SUBNET]), tcp(22, groups=[SG["bastion"]])]
    group(state, "nat")["ip_permissions_egress"] = [tcp(80, cidrs=[WORLD]), tcp(443, cidrs=[WORLD]), icmp([WORLD])]
    state["known_hosts"] = pinned(*(iid for iid, *_rest in INSTANCES.values()))
    return state


def violations(state: dict, check: str | None = None) -> list[dict]:
    found = audit(state)["violations"]
    return [v for v in found if check is None or v["check"] == check]


def only(state: dict, check: str) -> dict:
    found = violations(state)
    assert [v["check"] for v in found] == [check], [v["message"] for v in found]
    assert found[0]["fix"] and found[0]["title"] == CHECKS[check]
    return found[0]


def test_the_topology_fumidai_builds_has_no_violation():
    report = audit(fumidai_state())
    assert report["violations"] == [] and report["failed"] is False and report["notes"] == []
    assert report["summary"].startswith("clean: no violation in fumidai-vpc (vpc-0f00)")
    assert "5 security groups, 4 instances, 4 volumes" in report["summary"]
    assert report["lines"] == [report["summary"]]


@pytest.mark.parametrize("source", ["0.0.0.0/0", "::/0"])
def test_ssh_open_to_the_world(source):
    state = fumidai_state()
    rule = tcp(22, ipv6=[source]) if ":" in source else tcp(22, cidrs=[source])
    group(state, "bastion")["ip_permissions"].append(rule)
    # The whole internet is this check's finding alone (broad_admin_cidrs covers the other broad ranges).
    found = only(state, "ssh_open_to_world")
    assert found["resource_id"] == SG["bastion"]
    assert f"allows TCP 22 (SSH included) from {source}" in found["message"]
    assert "admin_cidrs" in found["fix"]


def test_all_traffic_from_the_world_to_the_nat_instance():
    state = fumidai_state()
    group(state, "nat")["ip_permissions"].append(all_traffic([WORLD]))
    checks = sorted(v["check"] for v in violations(state))
    assert checks == ["nat_sg_too_wide", "nat_ssh_from_outside", "open_to_internet", "ssh_open_to_world"]


def test_ssh_range_including_22_open_to_the_world():
    state = fumidai_state()
    group(state, "bastion")["ip_permissions"].append(tcp(0, 1024, cidrs=[WORLD]))
    checks = sorted(v["check"] for v in violations(state))
    assert checks == ["open_to_internet", "ssh_open_to_world"]


def test_non_alb_group_open_to_the_internet():
    state = fumidai_state()
    group(state, "web")["ip_permissions"].append(tcp(8080, cidrs=[WORLD]))
    found = violations(state, "open_to_internet")
    assert len(found) == 1 and found[0]["resource_id"] == SG["web"]
    assert "TCP 8080 from 0.0.0.0/0" in found[0]["message"]
    # A web server reachable on 8080 is not a port-80 violation.
    assert not violations(state, "web_http_not_only_alb")


def test_alb_group_may_face_the_internet_but_not_for_ssh():
    state = fumidai_state()
    group(state, "alb")["ip_permissions"].append(tcp(443, cidrs=[WORLD], ipv6=["::/0"]))
    assert violations(state) == []
    group(state, "alb")["ip_permissions"].append(tcp(22, cidrs=[WORLD]))
    assert only(state, "ssh_open_to_world")["resource_id"] == SG["alb"]


def test_private_instance_with_public_ip():
    state = fumidai_state()
    instance(state, "web01")["public_ip_address"] = "54.0.0.99"
    found = only(state, "private_instance_public_ip")
    assert found["resource_id"] == INSTANCES["web01"][0]
    assert "web01" in found["resource"] and "54.0.0.99" in found["message"]


def test_public_instance_with_public_ip_is_fine():
    state = fumidai_state()
    assert instance(state, "bastion")["public_ip_address"]
    assert violations(state, "private_instance_public_ip") == []


@pytest.mark.parametrize("tokens", ["optional", None])
def test_imdsv1_allowed(tokens):
    state = fumidai_state()
    metadata = instance(state, "web02")["metadata_options"]
    if tokens:
        metadata["http_tokens"] = tokens
    else:
        del metadata["http_tokens"]
    found = only(state, "imdsv1_allowed")
    assert found["resource_id"] == INSTANCES["web02"][0]
    assert "--http-tokens required" in found["fix"]


def test_imds_disabled_is_not_imdsv1():
    state = fumidai_state()
    instance(state, "web02")["metadata_options"] = {"http_endpoint": "disabled", "http_tokens": "optional"}
    assert violations(state) == []


def test_unencrypted_volume():
    state = fumidai_state()
    state["volumes"][2]["encrypted"] = False
    found = only(state, "unencrypted_volume")
    assert found["resource_id"] == state["volumes"][2]["id"]
    assert "web01" in found["message"]


def test_unattached_project_volume_counts_only_with_the_project_tag():
    state = fumidai_state()
    state["volumes"].append({"id": "vol-0loose", "encrypted": False, "tags": {"Project": "fumidai"},
                             "attachment_set": []})
    state["volumes"].append({"id": "vol-0other", "encrypted": False, "tags": {}, "attachment_set": []})
    assert violations(state) == []  # without project_tag nothing ties them to the VPC
    state["project_tag"] = {"key": "Project", "value": "fumidai"}
    found = only(state, "unencrypted_volume")
    assert found["resource_id"] == "vol-0loose" and "no instance" in found["message"]


def test_nat_instance_source_dest_check_on():
    state = fumidai_state()
    instance(state, "nat-instance")["source_dest_check"] = True
    found = only(state, "nat_source_dest_check")
    assert "--no-source-dest-check" in found["fix"]


def test_nat_instance_ssh_from_outside_the_vpc():
    state = fumidai_state()
    group(state, "nat")["ip_permissions"].append(tcp(22, cidrs=["198.51.100.0/24"]))
    found = violations(state)
    assert sorted(v["check"] for v in found) == ["nat_sg_too_wide", "nat_ssh_from_outside"]
    outside = next(v for v in found if v["check"] == "nat_ssh_from_outside")
    assert "198.51.100.0/24" in outside["message"] and outside["resource_id"] == INSTANCES["nat-instance"][0]


@pytest.mark.parametrize("rule", [
    tcp(80, cidrs=["10.0.0.0/16"]),
    tcp(80, groups=[SG["bastion"]]),
    tcp(0, 65535, cidrs=["10.0.1.0/24"]),
])
def test_web_reachable_on_80_from_anything_but_the_alb(rule):
    state = fumidai_state()
    group(state, "web")["ip_permissions"].append(rule)
    found = violations(state, "web_http_not_only_alb")
    # One per web server carrying the group.
    assert sorted(v["resource_id"] for v in found) == sorted([INSTANCES["web01"][0], INSTANCES["web02"][0]])
    assert "not only from the ALB" in found[0]["message"]


def test_only_audited_vpcs_count():
    state = fumidai_state()
    stray = dict(instance(state, "web01"), instance_id="i-0000000000000f0ff", vpc_id="vpc-0other",
                 public_ip_address="54.0.0.1", metadata_options={"http_tokens": "optional"})
    state["instances"].append(stray)  # not pinned either: another VPC is not this audit's business
    assert violations(state) == []


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


# ------------------------------------------------------------------ pinned host keys

def test_instance_without_a_pinned_host_key():
    state = fumidai_state()
    state["known_hosts"] = pinned(*(iid for name, (iid, *_r) in INSTANCES.items() if name != "web02"))
    found = only(state, "no_pinned_host_key")
    assert found["resource_id"] == INSTANCES["web02"][0]
    assert f"there is no line for it in {KNOWN_HOSTS}" in found["message"]
    assert "console output" in found["fix"]


@pytest.mark.parametrize(("known_hosts", "why"), [
    ({"path": KNOWN_HOSTS, "text": None}, f"{KNOWN_HOSTS} does not exist"),
    ({"path": KNOWN_HOSTS, "text": "i-0000000000000b001 ssh-ed25519 bm90IGEga2V5\n"},
     f"{KNOWN_HOSTS} cannot be used (line 1 is not"),
    (None, "no known_hosts file was given to the audit"),
])
def test_no_usable_known_hosts_means_nothing_is_pinned(known_hosts, why):
    state = fumidai_state()
    if known_hosts is None:
        del state["known_hosts"]
    else:
        state["known_hosts"] = known_hosts
    found = violations(state)
    assert {v["check"] for v in found} == {"no_pinned_host_key"}
    assert sorted(v["resource_id"] for v in found) == sorted(iid for iid, *_r in INSTANCES.values())
    assert all(why in v["message"] for v in found), found[0]["message"]


def test_a_key_for_another_instance_does_not_pin_this_one():
    state = fumidai_state()
    state["known_hosts"] = pinned(*(iid for name, (iid, *_r) in INSTANCES.items() if name != "bastion"),
                                  "i-0000000000000b0ff")
    assert only(state, "no_pinned_host_key")["resource_id"] == INSTANCES["bastion"][0]


def test_terminated_instances_need_no_key():
    state = fumidai_state()
    state["known_hosts"] = pinned(*(iid for name, (iid, *_r) in INSTANCES.items() if name != "web01"))
    instance(state, "web01")["state"] = {"name": "terminated"}
    assert violations(state) == []


# ------------------------------------------------------------------ hostile tag values

HOSTILE = {
    "newline": "web01\n[VIOLATION] forged: nothing to see\n      fix: none",
    "ansi": "\x1b[2J\x1b[1;31mweb01",
    "jinja": "{{ lookup('ansible.builtin.pipe', 'touch /tmp/fumidai-pwned') }}{% if 1 %}x{% endif %}{# c #}",
    "long": "w" * 300,
    "bidi": "web\u202e10bew",
    "separator": "web01\u2028[PASS] fine",
}


@pytest.mark.parametrize("kind", list(HOSTILE))
def test_hostile_names_cannot_forge_lines_or_be_templated(kind):
    hostile = HOSTILE[kind]
    state = fumidai_state()
    web01 = instance(state, "web01")
    web01["metadata_options"]["http_tokens"] = "optional"
    web01["tags"]["Name"] = hostile
    group(state, "web")["tags"]["Name"] = hostile
    group(state, "web")["ip_permissions"].append(tcp(80, cidrs=["10.0.0.0/16"]))
    state["vpcs"][0]["tags"]["Name"] = hostile
    report = audit(state)
    assert len(report["violations"]) == 3  # IMDSv1 on web01, port 80 on web01 and web02
    text = "\n".join(report["lines"])
    # One line per violation plus its fix line, and the summary: nothing the name could add.
    assert len(text.split("\n")) == 2 * 3 + 1
    assert not any(ch in text for ch in ("\x1b", "\u202e", "\u2028", "{{", "{%", "{#"))
    assert all(len(line) < 2000 for line in text.split("\n"))
    assert [line.split()[0] for line in text.split("\n")] == ["[VIOLATION]", "fix:"] * 3 + ["3"]
    # The name is shown quoted, so where it ends is never in doubt.
    assert '"' in report["violations"][0]["resource"]
    json.loads(json.dumps(report))


def test_hostile_names_are_shown_escaped_and_capped():
    state = fumidai_state()
    web01 = instance(state, "web01")
    web01["metadata_options"]["http_tokens"] = "optional"
    web01["tags"]["Name"] = "a\nb\x1b[2J {{ x }} " + "z" * 300
    found = only(state, "imdsv1_allowed")
    shown = found["resource"]
    assert shown.startswith('"a\\nb\\x1b[2J \\x7b{ x }} zzz') and shown.endswith(f'…" ({INSTANCES["web01"][0]})')
    assert len(shown) < 120


def test_plain_and_non_ascii_names_stay_readable():
    state = fumidai_state()
    web01 = instance(state, "web01")
    web01["metadata_options"]["http_tokens"] = "optional"
    web01["tags"]["Name"] = "踏み台 web"
    assert only(state, "imdsv1_allowed")["resource"] == f'"踏み台 web" ({INSTANCES["web01"][0]})'
    web01["tags"]["Name"] = "web-01.a_b"
    assert only(state, "imdsv1_allowed")["resource"] == f"web-01.a_b ({INSTANCES['web01'][0]})"


# ------------------------------------------------------------------ everything at once

def test_every_violation_of_a_broken_topology():
    state = fumidai_state()
    group(state, "bastion")["ip_permissions"].append(tcp(22, cidrs=[WORLD, "0.0.0.0/1"]))
    group(state, "bastion")["ip_permissions_egress"].append(all_traffic([WORLD]))
    group(state, "web")["ip_permissions"].append(tcp(80, cidrs=["10.0.0.0/16"]))
    group(state, "nat")["ip_permissions"].append(tcp(22, cidrs=["198.51.100.0/24"]))
    group(state, "nat")["ip_permissions"].append(tcp(3128, cidrs=[WORLD]))
    instance(state, "web02")["public_ip_address"] = "54.0.0.98"
    instance(state, "web02")["metadata_options"]["http_tokens"] = "optional"
    instance(state, "nat-instance")["source_dest_check"] = True
    state["volumes"][0]["encrypted"] = False
    state["known_hosts"] = pinned(INSTANCES["bastion"][0])
    report = audit(state)
    assert report["failed"]
    assert {v["check"] for v in report["violations"]} == set(CHECKS)
    assert report["summary"].startswith(f"{len(report['violations'])} violation(s) in fumidai-vpc ({VPC})")
    assert all(line.startswith("[VIOLATION]") for line in report["lines"][:-1])
    assert instance(state, "web02")["subnet_id"] == SUBNETS["private-subnet-2"][0]
