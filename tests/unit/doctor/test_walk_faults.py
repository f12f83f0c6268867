"""The doctor on hand-built state: each fault blocks the right hop with the right fix
(plugins/module_utils/doctor/ssh.py, http.py, egress.py)."""

from __future__ import annotations

from ansible_collections.fumidai.vpc.plugins.module_utils.doctor.hops import BLOCKED, PASS, SKIPPED
from ansible_collections.fumidai.vpc.plugins.module_utils.doctor.state import State

from tests.unit.doctor.walk_helpers import ADMIN_IP, assert_blocked_at, run
from tests.unit.fumidai_state import (
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


def hop_named(report: dict, name: str) -> dict:
    return next(h for h in report["hops"] if h["hop"] == name)


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


def detached_gateway() -> dict:
    """The internet gateway detached, as AWS then reports it: the public route table's 0.0.0.0/0 a blackhole."""
    state = clean_state()
    state["internet_gateways"][0]["attachments"] = []
    route_table(state, "rtb-0pub")["routes"][1]["state"] = "blackhole"
    return state


def test_igw_detached():
    state = detached_gateway()
    for path in ("ssh", "egress", "http"):
        report = run(state, "web01", path)
        hop = next(h for h in report["hops"] if h["hop"] == "internet gateway")
        assert hop["status"] == BLOCKED, (path, report["lines"])
    # The gateway is there, only detached: the fix is to attach it, not to replace the route to it.
    for path in ("ssh", "egress"):
        report = run(state, "web01", path)
        found = assert_blocked_at(report, "internet gateway", "Attach it", f"--internet-gateway-id {IGW}")
        assert "fumidai-igw (igw-0f00) is not attached" in found["detail"]
        assert not any("Replace the route" in h["fix"] for h in report["hops"]), report["lines"]
    routing = hop_named(run(state, "web01", "ssh"), "bastion subnet routing")
    assert routing["status"] == PASS and "a blackhole while the gateway is not attached" in routing["detail"]


def test_a_detached_gateways_subnets_stay_public_for_the_inventory():
    """The route still names the gateway: the tier (the inventory's groups, the lab's plan) does not flip."""
    state = State(detached_gateway())
    assert [state.tier(SUBNETS[name][0]) for name in ("public-subnet-1", "private-subnet-1")] == ["public", "private"]


def test_a_route_to_a_deleted_gateway_is_replaced():
    state = detached_gateway()
    state["internet_gateways"] = []
    found = assert_blocked_at(run(state, "web01", "ssh"), "bastion subnet routing", "Replace the route",
                              detail=("blackhole", f"its target {IGW} is gone"))
    assert found["fix"] == "Replace the route with 0.0.0.0/0 -> the VPC's internet gateway."


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


def test_a_default_route_to_a_terminated_nat_instance_or_a_deleted_nat_gateway_is_replaced():
    state = clean_state()
    instance(state, "nat-instance")["state"] = {"code": 48, "name": "terminated"}
    route_table(state, "rtb-0prv2")["routes"][1]["state"] = "blackhole"
    report = run(state, "web02", "egress")
    assert_blocked_at(report, "default route", "Replace the route", detail=("no longer exists (blackhole)",))
    assert hop_named(report, "NAT")["status"] == SKIPPED
    state["nat_gateways"][0]["state"] = "deleted"
    route_table(state, "rtb-0prv1")["routes"][1]["state"] = "blackhole"
    assert_blocked_at(run(state, "web01", "egress"), "default route", "Replace the route",
                      detail=(f"to {NAT_GW}", "blackhole"))


def test_a_default_route_to_a_stopped_nat_instance_is_fixed_by_starting_it():
    state = clean_state()
    nat_id = INSTANCES["nat-instance"][0]
    instance(state, "nat-instance")["state"] = {"code": 80, "name": "stopped"}
    route = route_table(state, "rtb-0prv2")["routes"][1]
    route["state"] = "blackhole"  # as AWS reports a route to a stopped instance
    for how in ({"instance_id": nat_id}, {"instance_id": None, "network_interface_id": f"eni-{nat_id[2:]}"}):
        route.update(how)
        report = run(state, "web02", "egress")
        assert_blocked_at(report, "NAT", f"Start it (aws ec2 start-instances --instance-ids {nat_id})",
                          detail=("it is stopped",))
        assert hop_named(report, "default route")["status"] == PASS, how
        assert "a blackhole until it runs again" in hop_named(report, "default route")["detail"]


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

