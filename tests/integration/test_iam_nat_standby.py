"""docs/iam/fumidai-provision-nat-standby.json, attached beside fumidai-provision, is enough to provision with
nat_instance_standby and bastion_per_az (twice: an operator re-runs) and to tear that stack down, and grants
nothing these flows do not use; without it, provisioning with the option stops at its first IAM call.

The harness and the two checks of tests/integration/test_iam_policies.py (tests/integration/iam_flows.py): moto
enforces the Action element of the users' policies, and the full documents are evaluated against the request
log (tests/integration/iam_policy.py), including the iam:PassRole AWS checks when the watchdog's role is passed
to EC2 (RunInstances with its instance profile, AddRoleToInstanceProfile), which the local API does not.
"""

from __future__ import annotations

import copy
import itertools
import json
import re
import textwrap

import pytest
import yaml

from tests.integration import iam_policy
from tests.integration.iam_flows import (
    ADMIN_CIDR,
    AUTH_ERRORS,
    Flow,
    enforcing_server,
    keep_for_reading,
    local_controller,
)
from tests.integration.iam_flows import ran_clean as ran_clean_against

RESILIENCE = {"nat_instance_standby": True, "bastion_per_az": True}
BOTH = "provision+nat-standby"
USERS = {"provision-resilient": (BOTH, None), "provision-only": ("provision", None)}
WATCHDOG = "fumidai-nat-watchdog-ap-northeast-1"
WRITE = ("Create", "Put", "Add", "Run", "Tag", "Delete", "Remove", "Allocate", "Associate", "Attach", "Import")
# amazon.aws.ec2_key, finding the key pair already there, imports the key under a temporary name for EC2 to
# compute its fingerprint and deletes it (KeyPairFingerprintProbe in fumidai-provision.json).
FINGERPRINT_PROBE = re.compile(r"^ansible-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


@pytest.fixture(scope="module")
def flows(tmp_path_factory):
    """The negative control first (an operator who did not attach the second document), then the same
    provisioning with it (converging from where the refused run stopped), again, and teardown."""
    tmp = tmp_path_factory.mktemp("iam-nat-standby")
    with enforcing_server(tmp, USERS) as server:
        hosts, key = local_controller(tmp)
        settings = ("-e", json.dumps({"admin_cidrs": [ADMIN_CIDR], "ssh_public_key_path": f"{key}.pub", **RESILIENCE}))
        done: dict[str, Flow] = {}
        done["provision without the nat-standby policy"] = server.run(
            "provision without the nat-standby policy", "provision-only", "playbooks/provision.yml", *hosts, *settings)
        done["provision"] = server.run("provision", "provision-resilient", "playbooks/provision.yml", *hosts, *settings)
        done["provision again"] = server.run("provision again", "provision-resilient", "playbooks/provision.yml",
                                             *hosts, *settings)
        outputs = yaml.safe_load((tmp / "outputs.yml").read_text())
        done["teardown"] = server.run("teardown", "provision-resilient", "playbooks/teardown.yml", *hosts)
        keep_for_reading(tmp, done)
        yield {"flows": done, "outputs": outputs}


def printed(stdout: str, key: str) -> dict:
    """A mapping the playbook printed (the YAML callback's block under ``key:``), e.g. the outputs'
    nat_instance_active, which is shown and not written (roles/aws_outputs/tasks/main.yml says why)."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == f"{key}:")
    indent = len(lines[start]) - len(lines[start].lstrip())
    block = [line for line in itertools.takewhile(
        lambda line: len(line) - len(line.lstrip()) > indent, lines[start + 1:])]
    return yaml.safe_load(textwrap.dedent("\n".join(block)))


def resilient_flows(flows: dict) -> list[Flow]:
    return [f for f in flows["flows"].values() if f.user == "provision-resilient"]


def successful(flow: Flow) -> set[str]:
    return {e["action"] for e in flow.entries if e["status"] < 400}


# --------------------------------------------------------------------------- enforced by moto
def test_provisioning_with_the_standby_stops_at_its_first_iam_call_without_the_policy(flows):
    flow = flows["flows"]["provision without the nat-standby policy"]
    assert flow.proc.returncode != 0
    assert "iam:GetRole" in flow.output() and "AccessDenied" in flow.output(), flow.output()[-3000:]
    refused = [e["action"] for e in flow.entries if e["error"] in AUTH_ERRORS]
    assert refused == ["iam:GetRole"]
    assert not [a for a in successful(flow) if a.startswith("iam:") and a != "iam:ListAccountAliases"]
    # Positive control: the same user got that far (the network and the first instances exist).
    assert {"ec2:CreateVpc", "ec2:RunInstances"} <= successful(flow)


def test_provision_twice_and_teardown_run_holding_both_documents(flows):
    done = flows["flows"]
    for name in ("provision", "provision again", "teardown"):
        assert ran_clean_against(done[name], BOTH) == ""
        assert done[name].proc.returncode == 0, done[name].output()[-6000:]
    assert {"iam:CreateRole", "iam:CreateInstanceProfile", "iam:AddRoleToInstanceProfile", "iam:PutRolePolicy",
            "ec2:RunInstances"} <= successful(done["provision"])
    again = [e for e in done["provision again"].entries if e["status"] < 400
             and e["action"].split(":")[1].startswith(WRITE)]
    probes = [e for e in again if FINGERPRINT_PROBE.match(e["params"].get("KeyName", ""))]
    assert [e["action"] for e in again if e not in probes] == [], "a re-run changed something"
    assert [e["action"] for e in probes] == ["ec2:ImportKeyPair", "ec2:DeleteKeyPair"]
    assert {"iam:RemoveRoleFromInstanceProfile", "iam:DeleteInstanceProfile", "iam:DeleteRolePolicy",
            "iam:DeleteRole", "ec2:TerminateInstances", "ec2:DeleteVpc"} <= successful(done["teardown"])


def test_the_outputs_name_the_standby_and_the_active_nat_instance(flows):
    outputs = flows["outputs"]
    launched = [e for f in resilient_flows(flows) for e in f.entries
                if e["action"] == "ec2:RunInstances" and e["status"] < 400
                and e["params"].get("IamInstanceProfile.Arn", "").endswith(f"/{WATCHDOG}")]
    assert len(launched) == 1
    standby = outputs["nat_instance_standby"]
    assert standby["instance_id"].startswith("i-") and standby["private_ip"] and standby["public_ip"]
    assert standby["instance_id"] != outputs["nat_instance"]["instance_id"]
    # Which one forwards (the NAT subnet's default route, as the run left it: the NAT instance) is printed.
    assert "nat_instance_active" not in outputs
    active = printed(flows["flows"]["provision again"].proc.stdout, "nat_instance_active")
    assert active.pop("route_table_id").startswith("rtb-")
    assert active == {"name": "nat-instance", "instance_id": outputs["nat_instance"]["instance_id"],
                      "routes_subnet": "private-subnet-2"}
    assert standby["instance_id"] in outputs["stack"]["instance_ids"]
    assert [b["name"] for b in outputs["bastions"]] == ["bastion", "bastion-2"]


# --------------------------------------------------------------------------- the full documents, by comparison
def test_every_call_is_allowed_by_the_two_documents_including_passing_the_role(flows):
    policy, sar = iam_policy.load_policy(BOTH), iam_policy.load_sar()
    refused, passed = [], []
    for flow in resilient_flows(flows):
        for entry in flow.entries:
            for check in iam_policy.checks_for(entry, sar):
                allowed, why = iam_policy.evaluate(policy, check)
                if not allowed:
                    refused.append(f"{flow.name}: {check.describe()}: {why}")
                if check.action == "iam:PassRole":
                    passed.append((entry["action"], check.resource, why))
    assert refused == []
    role = f"arn:aws:iam::{flows['flows']['provision'].entries[0]['account']}:role/{WATCHDOG}"
    assert sorted(set(passed)) == [("ec2:RunInstances", role, "PassWatchdogRoleToEc2"),
                                   ("iam:AddRoleToInstanceProfile", role, "PassWatchdogRoleToEc2")]


def test_the_nat_standby_document_grants_no_action_the_flows_do_not_use(flows):
    policy, sar = iam_policy.load_policy("nat-standby"), iam_policy.load_sar()
    called = {c.action for f in resilient_flows(flows) for e in f.entries for c in iam_policy.checks_for(e, sar)}
    unused = {p for p in iam_policy.granted_patterns(policy)
              if not any(iam_policy.action_matches(p, action) for action in called)}
    assert unused == set()


def test_a_rerun_calls_what_the_provision_document_grants_for_re_runs(flows):
    """test_iam_policies.py lists ec2:DescribeNetworkInterfaces as granted for re-runs (EXPECTED_UNUSED there)."""
    # Not on the first run (nothing is attached yet); the later runs of the same stack make it.
    assert "ec2:DescribeNetworkInterfaces" not in successful(flows["flows"]["provision without the nat-standby policy"])
    assert "ec2:DescribeNetworkInterfaces" in successful(flows["flows"]["provision again"])


# --------------------------------------------------------------------------- negative controls for the conditions
def _first(flows, flow: str, action: str) -> dict:
    entry = next(e for e in flows["flows"][flow].entries if e["action"] == action and e["status"] < 400)
    return copy.deepcopy(entry)


def _rename(entry: dict, name: str) -> dict:
    for key in ("RoleName", "InstanceProfileName"):
        if key in entry["params"]:
            entry["params"][key] = name
    for resource in entry["resources"]:
        resource["id"] = resource["id"].rsplit("/", 1)[0] + f"/{name}"
    return entry


def _iam_tags(entry: dict, tags: dict) -> dict:
    entry["params"] = {k: v for k, v in entry["params"].items() if not k.startswith("Tags.member.")}
    for number, (key, value) in enumerate(tags.items(), 1):
        entry["params"].update({f"Tags.member.{number}.Key": key, f"Tags.member.{number}.Value": value})
    return entry


def _retag_iam(entry: dict, tags: dict) -> dict:
    for resource in entry["resources"]:
        resource["tags"] = tags
    return entry


def _set_key_name(entry: dict, name: str) -> dict:
    entry["params"]["KeyName"] = name
    for resource in entry["resources"]:
        resource["id"] = name
    return entry


def _other_role(entry: dict) -> dict:
    for resource in entry["resources"]:
        if resource["type"] == "role":
            resource["id"] = resource["id"].replace(WATCHDOG, "admin")
        resource["roles"] = [r.replace(WATCHDOG, "admin") for r in resource.get("roles", [])]
    return entry


OUTSIDE_THE_WATCHDOG = {
    "a role named outside the watchdog's name": ("provision", "iam:CreateRole", lambda e: _rename(e, "admin"),
                                                 {"iam:CreateRole", "iam:TagRole"}),
    "an untagged role": ("provision", "iam:CreateRole", lambda e: _iam_tags(e, {}), {"iam:CreateRole"}),
    "a role with another project's tag": ("provision", "iam:CreateRole",
                                          lambda e: _iam_tags(e, {"Project": "other", "Name": WATCHDOG}),
                                          {"iam:CreateRole", "iam:TagRole"}),
    "an instance profile with a tag key outside the list": (
        "provision", "iam:CreateInstanceProfile", lambda e: _iam_tags(e, {"Project": "fumidai", "Owner": "x"}),
        {"iam:CreateInstanceProfile", "iam:TagInstanceProfile"}),
    "a policy put on an untagged role of that name": ("provision", "iam:PutRolePolicy",
                                                      lambda e: _retag_iam(e, {}), {"iam:PutRolePolicy"}),
    "deleting another project's role": ("teardown", "iam:DeleteRole",
                                        lambda e: _retag_iam(e, {"Project": "other"}), {"iam:DeleteRole"}),
    "deleting an instance profile named outside the watchdog's name": (
        "teardown", "iam:DeleteInstanceProfile", lambda e: _rename(e, "admin"), {"iam:DeleteInstanceProfile"}),
    "importing an untagged key pair that is not ec2_key's probe": (
        "provision again", "ec2:ImportKeyPair", lambda e: _set_key_name(e, "my-key"), {"ec2:ImportKeyPair"}),
    "deleting an untagged key pair that is not ec2_key's probe": (
        "provision again", "ec2:DeleteKeyPair", lambda e: _set_key_name(e, "ansible-prod"), {"ec2:DeleteKeyPair"}),
    "launching an instance with another role": ("provision", "ec2:RunInstances", _other_role, {"iam:PassRole"}),
    "adding another role to the profile": ("provision", "iam:AddRoleToInstanceProfile", _other_role,
                                           {"iam:PassRole"}),
}


@pytest.mark.parametrize("case", sorted(OUTSIDE_THE_WATCHDOG))
def test_the_conditions_refuse_iam_calls_outside_the_watchdog(flows, case):
    """The recorded call is allowed; the same call on another role, profile or tag is not."""
    flow, action, change, refused_actions = OUTSIDE_THE_WATCHDOG[case]
    policy, sar = iam_policy.load_policy(BOTH), iam_policy.load_sar()
    if action == "ec2:RunInstances":
        entry = next(copy.deepcopy(e) for e in flows["flows"][flow].entries
                     if e["action"] == action and e["status"] < 400 and "IamInstanceProfile.Arn" in e["params"])
    else:
        entry = _first(flows, flow, action)
    assert all(iam_policy.evaluate(policy, c)[0] for c in iam_policy.checks_for(entry, sar))
    refused = [c for c in iam_policy.checks_for(change(entry), sar) if not iam_policy.evaluate(policy, c)[0]]
    assert refused and {c.action for c in refused} == refused_actions, [c.describe() for c in refused]
