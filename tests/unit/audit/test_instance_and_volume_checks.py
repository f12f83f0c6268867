"""The audit on hand-built state: the topology fumidai builds passes; exposure to the internet, instances
and volumes are found once, on the right resource, with a fix (moved from tests/unit/test_audit_checks.py)."""

from __future__ import annotations

import pytest
from ansible_collections.fumidai.vpc.plugins.module_utils.audit_report import audit

from tests.unit.audit.audit_helpers import (
    WORLD,
    all_traffic,
    fumidai_state,
    only,
    violations,
)
from tests.unit.fumidai_state import INSTANCES, SG, group, instance, tcp


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


