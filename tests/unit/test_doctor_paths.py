"""The doctor's path walking (plugins/module_utils/fumidai_paths.py) on
hand-built state: every path passes on the clean topology, each fault blocks
the right hop with the right fix."""

from __future__ import annotations

import ipaddress

import pytest
from ansible_collections.fumidai.vpc.plugins.module_utils import fumidai_paths as paths
from ansible_collections.fumidai.vpc.plugins.module_utils.fumidai_paths import (
    BLOCKED,
    PASS,
    SKIPPED,
    DoctorError,
    nacl_verdict,
    sg_allows,
    walk,
)

from tests.unit.fumidai_state import (
    ADMIN_CIDR,
    IGW,
    INSTANCES,
    NAT_GW,
    SG,
    SUBNETS,
    clean_state,
    group,
    instance,
    route_table,
    tcp,
)

ADMIN_IP = "192.0.2.10/32"


def run(state: dict, target: str, path: str, **kwargs) -> dict:
    kwargs.setdefault("source_cidr", ADMIN_IP if path == "ssh" else None)
    return walk(state, path, target, **kwargs)


def first_blocked(report: dict) -> dict:
    blocked = [h for h in report["hops"] if h["status"] == BLOCKED]
    assert blocked, report["lines"]
    return blocked[0]


def assert_blocked_at(report: dict, hop: str, *fix_words: str, detail=()) -> dict:
    assert report["blocked"] is True
    found = first_blocked(report)
    assert found["hop"] == hop, report["lines"]
    for word in fix_words:
        assert word in found["fix"], found
    for word in detail:
        assert word in found["detail"], found
    assert f"BLOCKED at '{hop}'" in report["summary"]
    return found


# ------------------------------------------------------------------ clean

@pytest.mark.parametrize("path", paths.PATHS)
@pytest.mark.parametrize("target", ["web01", "web02"])
def test_clean_topology_passes(path, target):
    report = run(clean_state(), target, path)
    assert not report["blocked"], report["lines"]
    assert all(h["status"] == PASS for h in report["hops"])
    assert report["summary"].endswith("every hop passes")
    assert report["lines"][-1] == report["summary"]


def test_ssh_to_the_bastion_itself_stops_at_the_bastion():
    report = run(clean_state(), "bastion", "ssh")
    assert not report["blocked"]
    assert [h["hop"] for h in report["hops"]][-1] == "bastion network ACL"


def test_target_by_instance_id():
    report = run(clean_state(), INSTANCES["web02"][0], "egress")
    assert report["target_name"] == "web02" and not report["blocked"]


def test_egress_through_nat_gateway_names_it():
    report = run(clean_state(), "web01", "egress")
    nat = next(h for h in report["hops"] if h["hop"] == "NAT")
    assert NAT_GW in nat["detail"] and "public-subnet-1" in nat["detail"]


# ------------------------------------------------------------------ input

def test_unknown_target_is_an_error():
    with pytest.raises(DoctorError, match="no target instance named or with id 'web99'"):
        run(clean_state(), "web99", "ssh")


def test_ambiguous_name_asks_for_the_id():
    state = clean_state()
    twin = dict(instance(state, "web01"), instance_id="i-0000000000000e0ff")
    state["instances"].append(twin)
    with pytest.raises(DoctorError, match="2 instances are named 'web01'.*give the instance id"):
        run(state, "web01", "http")


def test_terminated_instances_are_ignored():
    state = clean_state()
    instance(state, "web01")["state"] = {"name": "terminated"}
    with pytest.raises(DoctorError):
        run(state, "web01", "http")


@pytest.mark.parametrize("bad", ["", "not-an-ip", "300.1.1.1/32"])
def test_ssh_needs_a_valid_source(bad):
    with pytest.raises(DoctorError):
        walk(clean_state(), "ssh", "web01", source_cidr=bad)


def test_unknown_path():
    with pytest.raises(DoctorError, match="path must be one of"):
        walk(clean_state(), "ftp", "web01")


# ------------------------------------------------------------------ the nine faults of the issue

def test_missing_nat_route():
    state = clean_state()
    table = route_table(state, "rtb-0prv2")
    table["routes"] = [r for r in table["routes"] if r["destination_cidr_block"] != "0.0.0.0/0"]
    report = run(state, "web02", "egress")
    assert_blocked_at(report, "default route", "Add 0.0.0.0/0 -> a NAT gateway",
                      detail=("private-subnet-2", "fumidai-private-2 (rtb-0prv2)", "has no 0.0.0.0/0 route"))
    assert all(h["status"] == SKIPPED for h in report["hops"][2:])


def test_nat_instance_source_dest_check_on():
    state = clean_state()
    instance(state, "nat-instance")["source_dest_check"] = True
    found = assert_blocked_at(run(state, "web02", "egress"), "NAT", "Disable it", "--no-source-dest-check",
                              "Actions > Networking > Change source/destination check")
    nat_id = INSTANCES["nat-instance"][0]
    assert found["detail"] == (f"private-subnet-2 ({SUBNETS['private-subnet-2'][0]})'s route table sends 0.0.0.0/0 "
                               f"to nat-instance ({nat_id}), but its source/destination check is on: AWS drops "
                               f"forwarded packets")


def test_web_sg_missing_alb_rule():
    state = clean_state()
    group(state, "web")["ip_permissions"] = [tcp(22, groups=[SG["bastion"]])]
    assert_blocked_at(run(state, "web01", "http"), "target security group",
                      "TCP 80 from the ALB's security group fumidai-alb (sg-0a1b)", "--source-group sg-0a1b",
                      detail=("fumidai-web (sg-0eb0) does not allow TCP 80",))


def test_bastion_sg_not_allowing_admin_cidr():
    state = clean_state()
    group(state, "bastion")["ip_permissions"] = [tcp(22, cidrs=["198.51.100.0/24"])]
    assert_blocked_at(run(state, "web01", "ssh"), "bastion security group", f"TCP 22 from {ADMIN_IP}",
                      f"--cidr {ADMIN_IP}", detail=("fumidai-bastion (sg-0ba5)",))


def test_admin_outside_the_allowed_range_is_blocked():
    report = run(clean_state(), "web01", "ssh", source_cidr="203.0.113.7/32")
    assert_blocked_at(report, "bastion security group", "203.0.113.7/32")


def test_web_sg_allows_ssh_only_from_wrong_sg():
    state = clean_state()
    group(state, "web")["ip_permissions"] = [tcp(80, groups=[SG["alb"]]), tcp(22, groups=[SG["nat"]])]
    assert_blocked_at(run(state, "web02", "ssh"), "target security group", "--source-group sg-0ba5",
                      detail=("does not allow TCP 22 from the bastion",))


def test_web_sg_allowing_the_bastion_ip_is_enough():
    state = clean_state()
    group(state, "web")["ip_permissions"] = [tcp(80, groups=[SG["alb"]]), tcp(22, cidrs=["10.0.1.10/32"])]
    assert not run(state, "web02", "ssh")["blocked"]


def test_alb_in_one_subnet_only():
    state = clean_state()
    alb = state["load_balancers"][0]
    alb["availability_zones"] = alb["availability_zones"][:1]
    assert_blocked_at(run(state, "web01", "http"), "load balancer subnets", "set-subnets",
                      detail=("1 subnet(s) in 1 availability zone(s)",))


def test_alb_in_two_subnets_of_one_az():
    state = clean_state()
    alb = state["load_balancers"][0]
    for zone in alb["availability_zones"]:
        zone["zone_name"] = "ap-northeast-1a"
    assert_blocked_at(run(state, "web01", "http"), "load balancer subnets", detail=("1 availability zone(s)",))


def test_alb_in_a_private_subnet():
    state = clean_state()
    alb = state["load_balancers"][0]
    alb["availability_zones"][1] = {"subnet_id": SUBNETS["private-subnet-2"][0], "zone_name": "ap-northeast-1c"}
    assert_blocked_at(run(state, "web01", "http"), "load balancer subnets", detail=("private subnet(s)",))


def test_target_not_registered():
    state = clean_state()
    tg = state["target_groups"][0]
    tg["targets_health_description"] = tg["targets_health_description"][:1]
    report = run(state, "web02", "http")
    assert_blocked_at(report, "target registration", "register-targets", f"Id={INSTANCES['web02'][0]}",
                      detail=("not registered in target group fumidai-web",))


def test_igw_detached():
    state = clean_state()
    state["internet_gateways"][0]["attachments"] = []
    for path in ("ssh", "egress", "http"):
        report = run(state, "web01", path)
        hop = next(h for h in report["hops"] if h["hop"] == "internet gateway")
        assert hop["status"] == BLOCKED, (path, report["lines"])
    found = assert_blocked_at(run(state, "web01", "ssh"), "internet gateway", "Attach it",
                              f"--internet-gateway-id {IGW}")
    assert "fumidai-igw (igw-0f00) is not attached" in found["detail"]


def test_nacl_denying_22():
    state = clean_state()
    state["network_acls"][0]["ingress"].insert(0, [50, "tcp", "deny", "0.0.0.0/0", None, None, 22, 22])
    found = assert_blocked_at(run(state, "web01", "ssh"), "bastion network ACL", "numbered below 50",
                              "remove that deny rule",
                              detail=("rule 50 denies it", "TCP 22 inbound from 192.0.2.10/32"))
    assert "acl-0def" in found["detail"]


# ------------------------------------------------------------------ more faults

def test_target_stopped():
    state = clean_state()
    instance(state, "web02")["state"] = {"name": "stopped"}
    assert_blocked_at(run(state, "web02", "http"), "target instance", "start-instances")


def test_no_bastion_in_the_vpc():
    state = clean_state()
    state["instances"] = [i for i in state["instances"] if i["tags"]["Role"] != "bastion"]
    report = run(state, "web01", "ssh")
    assert_blocked_at(report, "bastion", "-e bastion=")
    assert all(h["status"] == SKIPPED for h in report["hops"][1:])


def test_bastion_given_by_name():
    state = clean_state()
    report = run(state, "web01", "ssh", bastion="bastion")
    assert not report["blocked"] and "given with -e bastion" in report["hops"][0]["detail"]


def test_bastion_without_public_ip():
    state = clean_state()
    del instance(state, "bastion")["public_ip_address"]
    assert_blocked_at(run(state, "web01", "ssh"), "bastion public address", "Elastic IP")


def test_bastion_in_a_private_subnet():
    state = clean_state()
    instance(state, "bastion")["subnet_id"] = SUBNETS["private-subnet-1"][0]
    assert_blocked_at(run(state, "web02", "ssh"), "bastion subnet routing", "move the bastion to a public subnet",
                      detail=("not public", NAT_GW))


def test_nacl_blocking_ephemeral_replies_to_the_admin():
    state = clean_state()
    state["network_acls"][0]["egress"] = [[100, "tcp", "allow", "0.0.0.0/0", None, None, 22, 22],
                                          [110, "tcp", "allow", "0.0.0.0/0", None, None, 80, 443]]
    found = assert_blocked_at(run(state, "bastion", "ssh"), "bastion network ACL", "outbound",
                              detail=("TCP 32768-65535 outbound", "no rule allows it"))
    assert "stateless" in found["fix"]


def test_blackhole_default_route():
    state = clean_state()
    route = route_table(state, "rtb-0prv2")["routes"][1]
    route["state"] = "blackhole"
    assert_blocked_at(run(state, "web02", "egress"), "default route", detail=("blackhole",))


def test_nat_gateway_not_available():
    state = clean_state()
    state["nat_gateways"][0]["state"] = "failed"
    assert_blocked_at(run(state, "web01", "egress"), "NAT", detail=("it is failed",))


def test_nat_gateway_in_a_private_subnet():
    state = clean_state()
    state["nat_gateways"][0]["subnet_id"] = SUBNETS["private-subnet-2"][0]
    assert_blocked_at(run(state, "web01", "egress"), "NAT", "public subnet", detail=("does not route 0.0.0.0/0",))


def test_nat_instance_route_by_network_interface():
    state = clean_state()
    route = route_table(state, "rtb-0prv2")["routes"][1]
    route["instance_id"] = None
    route["network_interface_id"] = f"eni-{INSTANCES['nat-instance'][0][2:]}"
    assert not run(state, "web02", "egress")["blocked"]
    instance(state, "nat-instance")["source_dest_check"] = True
    assert_blocked_at(run(state, "web02", "egress"), "NAT", "--no-source-dest-check")


def test_nat_instance_sg_not_admitting_the_private_subnet():
    state = clean_state()
    group(state, "nat")["ip_permissions"] = [tcp(22, groups=[SG["bastion"]])]
    assert_blocked_at(run(state, "web02", "egress"), "NAT instance security group",
                      detail=("does not allow TCP 80 from private-subnet-2",))


def test_nat_instance_without_public_ip():
    state = clean_state()
    del instance(state, "nat-instance")["public_ip_address"]
    assert_blocked_at(run(state, "web02", "egress"), "NAT", "Elastic IP", detail=("no public IP",))


def test_target_sg_egress_removed():
    state = clean_state()
    group(state, "web")["ip_permissions_egress"] = [tcp(443, cidrs=["0.0.0.0/0"])]
    found = assert_blocked_at(run(state, "web01", "egress"), "target outbound rules", "TCP 80 to 0.0.0.0/0")
    assert "443" not in found["detail"]


def test_egress_ports_are_configurable():
    state = clean_state()
    group(state, "web")["ip_permissions_egress"] = [tcp(443, cidrs=["0.0.0.0/0"])]
    assert not run(state, "web01", "egress", egress_ports=[443])["blocked"]


def test_private_subnet_nacl_denying_https_out():
    state = clean_state()
    state["network_acls"].append({
        "nacl_id": "acl-0prv", "vpc_id": "vpc-0f00", "is_default": False, "tags": {"Name": "private"},
        "subnets": [SUBNETS["private-subnet-1"][0]],
        "ingress": [[100, "all", "allow", "0.0.0.0/0", None, None, 0, 65535]],
        "egress": [[90, "tcp", "deny", "0.0.0.0/0", None, None, 443, 443],
                   [100, "all", "allow", "0.0.0.0/0", None, None, 0, 65535]]})
    state["network_acls"][0]["subnets"].remove(SUBNETS["private-subnet-1"][0])
    found = assert_blocked_at(run(state, "web01", "egress"), "network ACLs", detail=("private (acl-0prv)",
                                                                                    "TCP 443 outbound"))
    assert "rule 90" in found["detail"]


def test_alb_internal():
    state = clean_state()
    state["load_balancers"][0]["scheme"] = "internal"
    assert_blocked_at(run(state, "web01", "http"), "load balancer", "internet-facing")


def test_no_alb():
    state = clean_state()
    state["load_balancers"] = []
    report = run(state, "web01", "http")
    assert_blocked_at(report, "load balancer", "Create an internet-facing ALB")


def test_alb_sg_not_open_to_the_internet():
    state = clean_state()
    group(state, "alb")["ip_permissions"] = [tcp(80, cidrs=["10.0.0.0/8"])]
    assert_blocked_at(run(state, "web01", "http"), "load balancer security group", "TCP 80 from 0.0.0.0/0")


def test_listener_missing():
    state = clean_state()
    state["load_balancers"][0]["listeners"] = []
    assert_blocked_at(run(state, "web01", "http"), "listener", "Add a listener on port 80")


def test_http_redirect_to_https_listener_is_followed():
    state = clean_state()
    alb = state["load_balancers"][0]
    alb["listeners"] = [
        {"port": 80, "default_actions": [{"type": "redirect", "redirect_config": {"protocol": "HTTPS",
                                                                                 "port": "443"}}]},
        {"port": 443, "default_actions": [{"type": "forward", "target_group_arn": alb["listeners"][0][
            "default_actions"][0]["target_group_arn"]}]}]
    assert_blocked_at(run(state, "web01", "http"), "load balancer security group", "TCP 443 from 0.0.0.0/0")
    group(state, "alb")["ip_permissions"].append(tcp(443, cidrs=["0.0.0.0/0"]))
    assert not run(state, "web01", "http")["blocked"]


def test_unhealthy_target():
    state = clean_state()
    state["target_groups"][0]["targets_health_description"][0]["target_health"] = {
        "state": "unhealthy", "reason": "Target.ResponseCodeMismatch", "description": "Health checks failed"}
    assert_blocked_at(run(state, "web01", "http"), "target health", "/healthz",
                      detail=("unhealthy", "Health checks failed"))


def test_security_group_fault_is_blocked_before_the_unhealthy_target_it_causes():
    state = clean_state()
    state["target_groups"][0]["targets_health_description"][0]["target_health"] = {
        "state": "unhealthy", "reason": "Target.Timeout", "description": "Request timed out"}
    group(state, "web")["ip_permissions"] = [tcp(22, groups=[SG["bastion"]])]
    report = run(state, "web01", "http")
    assert_blocked_at(report, "target security group", "authorize-security-group-ingress")
    assert [h["status"] for h in report["hops"] if h["hop"] == "target health"] == ["BLOCKED"]


def test_web_sg_admitting_the_alb_subnets_by_cidr_passes():
    state = clean_state()
    group(state, "web")["ip_permissions"] = [tcp(80, cidrs=["10.0.0.0/22"]), tcp(22, groups=[SG["bastion"]])]
    assert not run(state, "web01", "http")["blocked"]


def test_render_shows_fix_under_blocked_hop():
    state = clean_state()
    instance(state, "nat-instance")["source_dest_check"] = True
    lines = run(state, "web02", "egress")["lines"]
    index = next(n for n, line in enumerate(lines) if "[BLOCKED] NAT:" in line)
    assert lines[index + 1].strip().startswith("fix: Disable it")


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


def test_admin_range_must_be_inside_the_rule():
    state = clean_state()
    report = run(state, "web01", "ssh", source_cidr=ADMIN_CIDR)
    assert not report["blocked"]
    assert_blocked_at(run(state, "web01", "ssh", source_cidr="192.0.0.0/16"), "bastion security group")


def test_target_group_behind_a_listener_rule_is_found():
    state = clean_state()
    listener = state["load_balancers"][0]["listeners"][0]
    tg_arn = listener["default_actions"][0]["target_group_arn"]
    listener["default_actions"] = [{"type": "fixed-response"}]
    listener["rules"] = [{"priority": "10", "actions": [{"type": "forward", "target_group_arn": tg_arn}]}]
    report = run(state, "web01", "http")
    assert not report["blocked"], report["lines"]


# ------------------------------------------------------------------ hostile tag values

HOSTILE_NAMES = [
    "web01\n 9. [PASS] forged hop: all fine",
    "\x1b[2J\x1b[1;32mall good",
    "{{ lookup('ansible.builtin.pipe', 'touch /tmp/fumidai-pwned') }}",
    "x" * 300,
    "bad\u202eeman",
    "踏み台\u2028[PASS]",
]


@pytest.mark.parametrize("hostile", HOSTILE_NAMES)
@pytest.mark.parametrize("path", ["ssh", "http", "egress"])
def test_hostile_names_cannot_forge_hops_or_be_templated(path, hostile):
    state = clean_state()
    web = instance(state, "web02")
    # Every named thing on every path: target, bastion, NAT instance, subnets, groups, route tables, the ALB's
    # target group health reason.
    for resource in ([web, instance(state, "bastion"), instance(state, "nat-instance")] + state["subnets"]
                     + state["security_groups"] + state["route_tables"] + state["internet_gateways"]):
        resource.setdefault("tags", {})["Name"] = hostile
    health = state["target_groups"][0]["targets_health_description"][1]["target_health"]
    health.update(state="unhealthy", description=hostile)
    report = run(state, web["instance_id"], path)
    text = "\n".join(report["lines"])
    lines = text.split("\n")
    # A title, one line per hop (plus its fix when blocked), the summary: nothing a name could add.
    blocked = [h for h in report["hops"] if h["fix"]]
    assert len(lines) == 1 + len(report["hops"]) + len(blocked) + 1, text
    assert [line.split("]")[0].split("[")[1] for line in lines[1:-1] if not line.lstrip().startswith("fix:")] \
        == [h["status"] for h in report["hops"]]
    assert not any(c in text for c in "\x1b\u202e\u2028") and "{{" not in text
    assert all(len(line) < 4000 for line in lines)
    assert report["target_name"] == hostile  # the JSON report carries the raw value, JSON-escaped by its writer


def test_names_are_quoted_only_when_they_are_not_plain():
    state = clean_state()
    instance(state, "web02")["tags"]["Name"] = "web 02"
    report = run(state, INSTANCES["web02"][0], "egress")
    assert report["lines"][0].startswith(f'egress path to "web 02" ({INSTANCES["web02"][0]})')
    assert f"target web02 ({INSTANCES['web02'][0]})" not in "\n".join(report["lines"])
    assert paths.label({"instance_id": "i-1", "tags": {"Name": "web02"}}) == "web02 (i-1)"


def test_unknown_target_name_is_echoed_escaped():
    with pytest.raises(DoctorError, match=r"named or with id 'web\\n\[PASS\]'"):
        run(clean_state(), "web\n[PASS]", "http")
