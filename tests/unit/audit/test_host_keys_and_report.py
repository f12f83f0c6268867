"""The audit's pinned host key check, hostile tag values printed escaped, and a topology with every
violation at once (moved from tests/unit/test_audit_checks.py)."""

from __future__ import annotations

import json

import pytest
from ansible_collections.fumidai.vpc.plugins.module_utils.audit_checks import CHECKS
from ansible_collections.fumidai.vpc.plugins.module_utils.audit_report import audit

from tests.unit.audit.audit_helpers import (
    KNOWN_HOSTS,
    WORLD,
    all_traffic,
    fumidai_state,
    only,
    pinned,
    violations,
)
from tests.unit.fumidai_state import INSTANCES, SUBNETS, VPC, group, instance, tcp

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
