"""The security audit's checks (plugins/module_utils/fumidai_checks.py) on
hand-built state: the clean topology passes, each violation is found once,
on the right resource, with a fix."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "plugins" / "module_utils"))

from fumidai_checks import CHECKS, audit  # noqa: E402
from fumidai_state import INSTANCES, SG, SUBNETS, VPC, clean_state, group, instance, tcp  # noqa: E402


def violations(state: dict, check: str | None = None) -> list[dict]:
    found = audit(state)["violations"]
    return [v for v in found if check is None or v["check"] == check]


def only(state: dict, check: str) -> dict:
    found = violations(state)
    assert [v["check"] for v in found] == [check], [v["message"] for v in found]
    assert found[0]["fix"] and found[0]["title"] == CHECKS[check]
    return found[0]


def test_clean_topology_has_no_violation():
    report = audit(clean_state())
    assert report["violations"] == [] and report["failed"] is False
    assert report["summary"].startswith("clean: no violation in fumidai-vpc (vpc-0f00)")
    assert "5 security groups, 4 instances, 4 volumes" in report["summary"]


@pytest.mark.parametrize("source", ["0.0.0.0/0", "::/0"])
def test_ssh_open_to_the_world(source):
    state = clean_state()
    rule = tcp(22, ipv6=[source]) if ":" in source else tcp(22, cidrs=[source])
    group(state, "bastion")["ip_permissions"].append(rule)
    found = only(state, "ssh_open_to_world")
    assert found["resource_id"] == SG["bastion"]
    assert f"allows TCP 22 (SSH included) from {source}" in found["message"]
    assert "admin_cidrs" in found["fix"]


def test_all_traffic_from_the_world_is_ssh_and_internet_exposure():
    state = clean_state()
    group(state, "nat")["ip_permissions"].append({"ip_protocol": "-1", "ip_ranges": [{"cidr_ip": "0.0.0.0/0"}],
                                                  "ipv6_ranges": [], "user_id_group_pairs": []})
    checks = sorted(v["check"] for v in violations(state))
    assert checks == ["nat_ssh_from_outside", "open_to_internet", "ssh_open_to_world"]


def test_ssh_range_including_22_open_to_the_world():
    state = clean_state()
    group(state, "bastion")["ip_permissions"].append(tcp(0, 1024, cidrs=["0.0.0.0/0"]))
    checks = sorted(v["check"] for v in violations(state))
    assert checks == ["open_to_internet", "ssh_open_to_world"]


def test_non_alb_group_open_to_the_internet():
    state = clean_state()
    group(state, "web")["ip_permissions"].append(tcp(8080, cidrs=["0.0.0.0/0"]))
    found = violations(state, "open_to_internet")
    assert len(found) == 1 and found[0]["resource_id"] == SG["web"]
    assert "TCP 8080 from 0.0.0.0/0" in found[0]["message"]
    # A web server reachable on 8080 is not a port-80 violation.
    assert not violations(state, "web_http_not_only_alb")


def test_alb_group_may_face_the_internet_but_not_for_ssh():
    state = clean_state()
    group(state, "alb")["ip_permissions"].append(tcp(443, cidrs=["0.0.0.0/0"], ipv6=["::/0"]))
    assert violations(state) == []
    group(state, "alb")["ip_permissions"].append(tcp(22, cidrs=["0.0.0.0/0"]))
    assert only(state, "ssh_open_to_world")["resource_id"] == SG["alb"]


def test_private_instance_with_public_ip():
    state = clean_state()
    instance(state, "web01")["public_ip_address"] = "54.0.0.99"
    found = only(state, "private_instance_public_ip")
    assert found["resource_id"] == INSTANCES["web01"][0]
    assert "web01" in found["resource"] and "54.0.0.99" in found["message"]


def test_public_instance_with_public_ip_is_fine():
    state = clean_state()
    assert instance(state, "bastion")["public_ip_address"]
    assert violations(state, "private_instance_public_ip") == []


@pytest.mark.parametrize("tokens", ["optional", None])
def test_imdsv1_allowed(tokens):
    state = clean_state()
    metadata = instance(state, "web02")["metadata_options"]
    if tokens:
        metadata["http_tokens"] = tokens
    else:
        del metadata["http_tokens"]
    found = only(state, "imdsv1_allowed")
    assert found["resource_id"] == INSTANCES["web02"][0]
    assert "--http-tokens required" in found["fix"]


def test_imds_disabled_is_not_imdsv1():
    state = clean_state()
    instance(state, "web02")["metadata_options"] = {"http_endpoint": "disabled", "http_tokens": "optional"}
    assert violations(state) == []


def test_unencrypted_volume():
    state = clean_state()
    state["volumes"][2]["encrypted"] = False
    found = only(state, "unencrypted_volume")
    assert found["resource_id"] == state["volumes"][2]["id"]
    assert "web01" in found["message"]


def test_unattached_project_volume_counts_only_with_the_project_tag():
    state = clean_state()
    state["volumes"].append({"id": "vol-0loose", "encrypted": False, "tags": {"Project": "fumidai"},
                             "attachment_set": []})
    state["volumes"].append({"id": "vol-0other", "encrypted": False, "tags": {}, "attachment_set": []})
    assert violations(state) == []  # without project_tag nothing ties them to the VPC
    state["project_tag"] = {"key": "Project", "value": "fumidai"}
    found = only(state, "unencrypted_volume")
    assert found["resource_id"] == "vol-0loose" and "no instance" in found["message"]


def test_nat_instance_source_dest_check_on():
    state = clean_state()
    instance(state, "nat-instance")["source_dest_check"] = True
    found = only(state, "nat_source_dest_check")
    assert "--no-source-dest-check" in found["fix"]


def test_nat_instance_ssh_from_outside_the_vpc():
    state = clean_state()
    group(state, "nat")["ip_permissions"].append(tcp(22, cidrs=["198.51.100.0/24"]))
    found = only(state, "nat_ssh_from_outside")
    assert "198.51.100.0/24" in found["message"] and found["resource_id"] == INSTANCES["nat-instance"][0]


def test_nat_instance_ssh_from_inside_the_vpc_is_fine():
    state = clean_state()
    group(state, "nat")["ip_permissions"].append(tcp(22, cidrs=["10.0.1.0/24"]))
    assert violations(state) == []


@pytest.mark.parametrize("rule", [
    tcp(80, cidrs=["10.0.0.0/16"]),
    tcp(80, groups=[SG["bastion"]]),
    tcp(0, 65535, cidrs=["10.0.1.0/24"]),
])
def test_web_reachable_on_80_from_something_else(rule):
    state = clean_state()
    group(state, "web")["ip_permissions"].append(rule)
    found = violations(state, "web_http_not_only_alb")
    # One per web server carrying the group.
    assert sorted(v["resource_id"] for v in found) == sorted([INSTANCES["web01"][0], INSTANCES["web02"][0]])
    assert "not only from the ALB" in found[0]["message"]


def test_only_audited_vpcs_count():
    state = clean_state()
    stray = dict(instance(state, "web01"), instance_id="i-0000000000000f0ff", vpc_id="vpc-0other",
                 public_ip_address="54.0.0.1", metadata_options={"http_tokens": "optional"})
    state["instances"].append(stray)
    assert violations(state) == []


def test_every_violation_of_a_broken_topology():
    state = clean_state()
    group(state, "bastion")["ip_permissions"].append(tcp(22, cidrs=["0.0.0.0/0"]))
    group(state, "web")["ip_permissions"].append(tcp(80, cidrs=["10.0.0.0/16"]))
    group(state, "nat")["ip_permissions"].append(tcp(22, cidrs=["198.51.100.0/24"]))
    group(state, "nat")["ip_permissions"].append(tcp(3128, cidrs=["0.0.0.0/0"]))
    instance(state, "web02")["public_ip_address"] = "54.0.0.98"
    instance(state, "web02")["metadata_options"]["http_tokens"] = "optional"
    instance(state, "nat-instance")["source_dest_check"] = True
    state["volumes"][0]["encrypted"] = False
    report = audit(state)
    assert report["failed"]
    assert {v["check"] for v in report["violations"]} == set(CHECKS)
    assert report["summary"].startswith(f"{len(report['violations'])} violation(s) in fumidai-vpc ({VPC})")
    assert all(line.startswith("[VIOLATION]") for line in report["lines"][:-1])
    assert instance(state, "web02")["subnet_id"] == SUBNETS["private-subnet-2"][0]
