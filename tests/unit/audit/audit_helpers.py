"""Helpers for the audit's unit tests: fumidai's own groups on hand-built state, pinned host keys, and
the violations the audit finds."""

from __future__ import annotations

import base64
import struct

from ansible_collections.fumidai.vpc.plugins.module_utils.audit_checks import CHECKS
from ansible_collections.fumidai.vpc.plugins.module_utils.audit_report import audit

from tests.unit.fumidai_state import INSTANCES, SG, SUBNETS, clean_state, group, tcp

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
