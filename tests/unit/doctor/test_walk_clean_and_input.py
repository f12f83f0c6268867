"""The doctor on hand-built state: every path passes on the clean topology; input it cannot use is an
error (plugins/module_utils/doctor/)."""

from __future__ import annotations

import pytest
from ansible_collections.fumidai.vpc.plugins.module_utils.doctor.hops import PASS
from ansible_collections.fumidai.vpc.plugins.module_utils.doctor.registry import PATHS, walk
from ansible_collections.fumidai.vpc.plugins.module_utils.doctor.state import DoctorError

from tests.unit.doctor.walk_helpers import assert_blocked_at, run
from tests.unit.fumidai_state import (
    ADMIN_CIDR,
    INSTANCES,
    NAT_GW,
    clean_state,
    instance,
)

# ------------------------------------------------------------------ clean

@pytest.mark.parametrize("path", list(PATHS))
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

