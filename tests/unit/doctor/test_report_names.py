"""The doctor's report: hostile tag values cannot forge hops or be templated; names are quoted only when
they are not plain (plugins/module_utils/doctor/report.py)."""

from __future__ import annotations

import pytest
from ansible_collections.fumidai.vpc.plugins.module_utils.doctor.state import DoctorError
from ansible_collections.fumidai.vpc.plugins.module_utils.vpc_model import label

from tests.unit.doctor.walk_helpers import run
from tests.unit.fumidai_state import (
    INSTANCES,
    clean_state,
    instance,
)

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
    assert label({"instance_id": "i-1", "tags": {"Name": "web02"}}) == "web02 (i-1)"


def test_unknown_target_name_is_echoed_escaped():
    with pytest.raises(DoctorError, match=r"named or with id 'web\\n\[PASS\]'"):
        run(clean_state(), "web\n[PASS]", "http")
