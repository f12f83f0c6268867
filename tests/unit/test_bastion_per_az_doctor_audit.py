"""The doctor and the audit with a bastion per zone (bastion_per_az), on hand-built state: a private host's ssh path
goes through its own zone's bastion; that bastion stopped while the other zone's runs is DEGRADED (the hop falls
back), not BLOCKED; both stopped is BLOCKED as before; the audit checks the second bastion like the first."""

from __future__ import annotations

import copy

from ansible_collections.fumidai.vpc.plugins.module_utils.doctor.hops import BLOCKED, DEGRADED, PASS
from ansible_collections.fumidai.vpc.plugins.module_utils.doctor.state import State

from tests.unit.audit.audit_helpers import WORLD, fumidai_state, key_line, only, violations
from tests.unit.doctor.walk_helpers import assert_blocked_at, run
from tests.unit.fumidai_state import INSTANCES, SG, SUBNETS, clean_state, group, instance, tcp

SECOND_ID = "i-0000000000000b002"


def with_second_bastion(state: dict) -> dict:
    """bastion-2 in public-subnet-2 (the other zone), the same security group, its own public IP and host key."""
    second = copy.deepcopy(instance(state, "bastion"))
    second.update(instance_id=SECOND_ID, subnet_id=SUBNETS["public-subnet-2"][0], private_ip_address="10.0.2.11",
                  public_ip_address="54.0.0.11")
    second["tags"]["Name"] = "bastion-2"
    second["network_interfaces"][0].update(network_interface_id="eni-0000000000000b002",
                                           subnet_id=SUBNETS["public-subnet-2"][0])
    second["block_device_mappings"][0]["ebs"]["volume_id"] = "vol-0000000000000b002"
    state["instances"].append(second)
    state.setdefault("volumes", []).append({"id": "vol-0000000000000b002", "encrypted": True, "tags": {},
                                            "attachment_set": [{"instance_id": SECOND_ID, "status": "attached"}]})
    if "known_hosts" in state:
        state["known_hosts"]["text"] += key_line(SECOND_ID) + "\n"
    return state


def stop(state: dict, name: str) -> None:
    instance(state, name)["state"] = {"code": 80, "name": "stopped"}


def hop(report: dict, name: str) -> dict:
    return next(h for h in report["hops"] if h["hop"] == name)


# --------------------------------------------------------------------------- the doctor
def test_each_private_host_goes_through_its_own_zones_bastion():
    state = with_second_bastion(clean_state())
    for target, bastion in (("web01", INSTANCES["bastion"][0]), ("web02", SECOND_ID)):
        report = run(state, target, "ssh")
        assert report["blocked"] is False and report["degraded"] is False, report["lines"]
        assert report["summary"].endswith("every hop passes")
        assert hop(report, "bastion")["status"] == PASS and bastion in hop(report, "bastion")["detail"]
        assert all(h["status"] == PASS for h in report["hops"]), report["lines"]


def test_own_zones_bastion_stopped_with_the_other_running_is_degraded_not_blocked():
    state = with_second_bastion(clean_state())
    stop(state, "bastion-2")
    report = run(state, "web02", "ssh")
    assert report["blocked"] is False and report["degraded"] is True, report["lines"]
    found = hop(report, "bastion")
    assert found["status"] == DEGRADED
    assert f"bastion-2 ({SECOND_ID})" in found["detail"] and "is stopped" in found["detail"]
    assert f"bastion ({INSTANCES['bastion'][0]})" in found["detail"] and "ap-northeast-1a" in found["detail"]
    assert f"start-instances --instance-ids {SECOND_ID}" in found["fix"]
    assert "DEGRADED at 'bastion'" in report["summary"]
    # Every other hop is checked through the running bastion, and passes.
    assert [h["status"] for h in report["hops"][1:]] == [PASS] * (len(report["hops"]) - 1), report["lines"]
    assert any("[DEGRADED] bastion:" in line for line in report["lines"])
    # Positive control: web01's own zone's bastion runs: nothing degraded for it.
    assert run(state, "web01", "ssh")["degraded"] is False


def test_both_bastions_stopped_is_blocked():
    state = with_second_bastion(clean_state())
    stop(state, "bastion")
    stop(state, "bastion-2")
    report = run(state, "web02", "ssh")
    assert report["degraded"] is False
    assert_blocked_at(report, "bastion instance", f"--instance-ids {SECOND_ID}", detail=("is stopped",))
    assert BLOCKED in {h["status"] for h in report["hops"]}


def test_one_bastion_stopped_is_still_blocked():
    """Without a second bastion nothing changes: the one bastion stopped blocks."""
    state = clean_state()
    stop(state, "bastion")
    report = run(state, "web02", "ssh")
    assert report["degraded"] is False
    assert_blocked_at(report, "bastion instance", "start-instances", detail=("is stopped",))


def test_zone_comes_from_the_subnet_when_the_instance_has_no_placement():
    state = State(with_second_bastion(clean_state()))
    from ansible_collections.fumidai.vpc.plugins.module_utils.doctor.ssh import find_bastion, zone_of

    web02 = next(i for i in state.instances if i["instance_id"] == INSTANCES["web02"][0])
    assert zone_of(state, web02) == "ap-northeast-1c"
    jump, _how, down = find_bastion(state, web02, None)
    assert jump["instance_id"] == SECOND_ID and down is None


# --------------------------------------------------------------------------- the audit
def test_audit_of_two_clean_bastions_finds_nothing():
    assert violations(with_second_bastion(fumidai_state())) == []


def test_audit_checks_the_second_bastions_host_key_like_the_first():
    state = with_second_bastion(fumidai_state())
    state["known_hosts"]["text"] = state["known_hosts"]["text"].replace(key_line(SECOND_ID) + "\n", "")
    found = only(state, "no_pinned_host_key")
    assert found["resource_id"] == SECOND_ID


def test_audit_checks_the_second_bastions_ssh_sources_and_egress():
    state = with_second_bastion(fumidai_state())
    extra = copy.deepcopy(group(state, "bastion"))
    extra.update(group_id="sg-0ba7", group_name="bastion-2-extra", tags={"Name": "bastion-2-extra"},
                 ip_permissions=[tcp(22, cidrs=["0.0.0.0/1"])], ip_permissions_egress=[tcp(0, 65535, cidrs=[WORLD])])
    state["security_groups"].append(extra)
    second = instance(state, "bastion-2")
    second["security_groups"].append({"group_id": "sg-0ba7", "group_name": "bastion-2-extra"})
    second["network_interfaces"][0]["groups"].append({"group_id": "sg-0ba7", "group_name": "bastion-2-extra"})
    found = violations(state)
    assert sorted(v["check"] for v in found if v["resource_id"] == SECOND_ID) == ["bastion_egress_open",
                                                                                   "broad_admin_cidrs"]
    # The first bastion, in the shared group only, is not blamed for bastion-2's extra group.
    assert not [v for v in found if v["resource_id"] == INSTANCES["bastion"][0]]
    assert SG["bastion"] != "sg-0ba7"
