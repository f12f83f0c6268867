"""The doctor and the audit with a standby NAT instance (nat_instance_standby): which NAT instance is active, whether
the standby could take over, a route on the standby is valid egress, and the shared security group is not "too wide"."""

from __future__ import annotations

import copy

from ansible_collections.fumidai.vpc.plugins.module_utils.audit_report import audit
from ansible_collections.fumidai.vpc.plugins.module_utils.vpc_model import (
    VpcModel,
    is_nat_standby,
    nat_standby_problems,
)

from tests.unit.audit.audit_helpers import fumidai_state, pinned, tcp
from tests.unit.doctor.walk_helpers import run
from tests.unit.fumidai_state import INSTANCES, SG, SUBNETS, instance, route_table

STANDBY_ID = "i-0000000000000a002"
PROFILE_ARN = "arn:aws:iam::123456789012:instance-profile/fumidai-nat-watchdog-ap-northeast-1"


def with_standby(ready: bool = True, probe_route: bool = True) -> dict:
    """fumidai_state() plus nat-instance-standby in public-subnet-1, as nat_standby.yml launches it, the NAT
    group's self-reference for the watchdog's probe and (probe_route) the standby subnet's own route table."""
    state = fumidai_state()
    standby = copy.deepcopy(instance(state, "nat-instance"))
    standby.update(instance_id=STANDBY_ID, subnet_id=SUBNETS["public-subnet-1"][0], private_ip_address="10.0.1.20",
                   public_ip_address="54.0.0.21", iam_instance_profile={"arn": PROFILE_ARN, "id": "AIPA0"})
    standby["network_interfaces"][0]["network_interface_id"] = "eni-standby"
    standby["tags"] = {"Name": "nat-instance-standby", "Role": "nat", "NatStandby": "true", "Project": "fumidai"}
    if probe_route:
        give_the_standby_subnet_its_table(state)
    if not ready:
        standby["state"] = {"code": 80, "name": "stopped"}
        standby.pop("iam_instance_profile")
    state["instances"].append(standby)
    next(g for g in state["security_groups"] if g["group_id"] == SG["nat"])["ip_permissions"].append(
        tcp(443, groups=[SG["nat"]]))
    state["known_hosts"] = pinned(*(iid for iid, *_rest in INSTANCES.values()), STANDBY_ID)
    return state


def give_the_standby_subnet_its_table(state: dict) -> None:
    """As roles/aws_routing does: public-subnet-1 leaves the public table for one of its own, the same default
    route plus the watchdog's probe address's /32 to the active NAT instance."""
    public = route_table(state, "rtb-0pub")
    public["associations"] = [a for a in public["associations"] if a["subnet_id"] != SUBNETS["public-subnet-1"][0]]
    own = copy.deepcopy(public)
    own.update(route_table_id="rtb-0pubstandby", id="rtb-0pubstandby", tags={"Name": "fumidai-public-standby"},
               associations=[{"subnet_id": SUBNETS["public-subnet-1"][0], "main": False,
                              "route_table_id": "rtb-0pubstandby"}])
    own["routes"].append({"destination_cidr_block": "1.1.1.1/32", "state": "active", "gateway_id": None,
                          "instance_id": INSTANCES["nat-instance"][0], "nat_gateway_id": None,
                          "network_interface_id": None})
    state["route_tables"].append(own)


def fail_over(state: dict) -> None:
    """What the watchdog's ReplaceRoute leaves: private-subnet-2's default route on the standby."""
    default = next(r for r in route_table(state, "rtb-0prv2")["routes"] if r["destination_cidr_block"] == "0.0.0.0/0")
    default["instance_id"] = STANDBY_ID


def standby_hop(report: dict) -> dict:
    return next(h for h in report["hops"] if h["hop"] == "standby NAT instance")


def test_model_tells_the_standby_and_its_readiness():
    state = with_standby()
    standby = instance(state, "nat-instance-standby")
    assert is_nat_standby(standby) and not is_nat_standby(instance(state, "nat-instance"))
    assert nat_standby_problems(standby) == []
    broken = instance(with_standby(ready=False), "nat-instance-standby")
    assert nat_standby_problems(broken) == ["it is stopped",
                                            "it has no instance profile (its watchdog cannot call ReplaceRoute)"]


def test_doctor_egress_names_the_active_nat_instance_and_a_ready_standby():
    report = run(with_standby(), "web02", "egress")
    assert not report["blocked"], report["lines"]
    hop = standby_hop(report)
    assert hop["status"] == "PASS" and not hop["fix"]
    assert "nat-instance (i-0000000000000a001) is active" in hop["detail"]
    assert "ready to take over" in hop["detail"] and "fumidai-nat-watchdog-ap-northeast-1" in hop["detail"]
    assert "fumidai-public-standby (rtb-0pubstandby)'s route 1.1.1.1/32" in hop["detail"]


def test_the_standby_subnet_with_a_table_of_its_own_is_still_public():
    state = with_standby()
    model = VpcModel(state)
    assert model.route_table(SUBNETS["public-subnet-1"][0])["route_table_id"] == "rtb-0pubstandby"
    assert model.is_public(SUBNETS["public-subnet-1"][0]) and model.is_public(SUBNETS["public-subnet-2"][0])
    assert not model.is_public(SUBNETS["private-subnet-2"][0])  # positive control


def test_doctor_says_when_the_standby_cannot_probe_the_active_nat_instance():
    report = run(with_standby(probe_route=False), "web02", "egress")
    assert not report["blocked"]  # egress works through the active one
    hop = standby_hop(report)
    assert hop["detail"].startswith("the standby cannot probe the active NAT instance: ")
    assert "fumidai-public (rtb-0pub) sends no /32" in hop["detail"]
    assert "nat_instance_watchdog_probe_address" in hop["fix"]
    # A /32 to another instance is not a probe route to the active one.
    state = with_standby()
    route_table(state, "rtb-0pubstandby")["routes"][-1]["instance_id"] = STANDBY_ID
    assert standby_hop(run(state, "web02", "egress"))["detail"].startswith("the standby cannot probe")


def test_doctor_egress_through_the_standby_is_valid_after_a_failover():
    state = with_standby()
    fail_over(state)
    report = run(state, "web02", "egress")
    assert not report["blocked"], report["lines"]
    nat = next(h for h in report["hops"] if h["hop"] == "NAT")
    assert STANDBY_ID in nat["detail"] and nat["status"] == "PASS"
    assert "is the active NAT instance" in standby_hop(report)["detail"]
    assert "nat_failback" in standby_hop(report)["detail"]


def test_doctor_says_when_the_standby_could_not_take_over():
    report = run(with_standby(ready=False), "web02", "egress")
    assert not report["blocked"]  # egress works through the active one
    hop = standby_hop(report)
    assert "could not take over: it is stopped" in hop["detail"] and "Start the standby" in hop["fix"]


def test_doctor_egress_without_a_standby_or_through_the_nat_gateway_is_unchanged():
    plain = run(fumidai_state(), "web02", "egress")
    assert "standby NAT instance" not in [h["hop"] for h in plain["hops"]]
    assert "standby NAT instance" not in [h["hop"] for h in run(with_standby(), "web01", "egress")["hops"]]
    # Positive control: the same walk with a standby has the hop.
    assert "standby NAT instance" in [h["hop"] for h in run(with_standby(), "web02", "egress")["hops"]]


def test_audit_notes_active_and_standby_and_finds_nothing_wrong():
    report = audit(with_standby())
    assert report["violations"] == [], [v["message"] for v in report["violations"]]
    [note] = [n for n in report["notes"] if "active NAT instance" in n]
    assert "nat-instance (i-0000000000000a001) for 10.0.12.0/24" in note
    assert "standing by, ready" in note


def test_audit_after_a_failover_the_shared_group_is_still_not_too_wide():
    state = with_standby()
    fail_over(state)
    report = audit(state)
    assert report["violations"] == [], [v["message"] for v in report["violations"]]
    [note] = [n for n in report["notes"] if "active NAT instance" in n]
    assert f"({STANDBY_ID}) for 10.0.12.0/24" in note and "after a failover" in note


def test_audit_reports_a_standby_that_could_not_take_over_and_its_source_dest_check():
    state = with_standby(ready=False)
    instance(state, "nat-instance-standby")["source_dest_check"] = True
    report = audit(state)
    assert [v["check"] for v in report["violations"]] == ["nat_source_dest_check"]
    assert [n for n in report["notes"] if "could not take over: it is stopped" in n]


def test_audit_notes_a_standby_that_cannot_probe_the_active_nat_instance():
    [note] = [n for n in audit(with_standby(probe_route=False))["notes"] if "active NAT instance" in n]
    assert "could not take over: it cannot probe the active NAT instance" in note
    [note] = [n for n in audit(with_standby())["notes"] if "active NAT instance" in n]
    assert "cannot probe" not in note and "standing by, ready" in note  # positive control
