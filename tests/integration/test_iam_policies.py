"""docs/iam/'s two IAM policies are enough for what they claim, and grant nothing the flows do not use.

One moto server with IAM enforcement on (moto's INITIAL_NO_AUTH_ACTION_COUNT switch, set to 0 through its
/moto-api/reset-auth endpoint once the test's IAM users exist): every call after that is authenticated by
access key and authorised against the policies attached to that user. The server is the project's
(lab/moto_server.py) with a request log (tests/integration/iam_recording_server.py).

- fumidai-readonly: the inventory plugin, the doctor (ssh, http), the audit, re-pinning host keys
  (playbooks/host_keys.yml) and the wait for the ALB (playbooks/alb_ready.yml), as a user holding only it.
- fumidai-provision: playbooks/provision.yml and playbooks/teardown.yml, as a user holding only it.
  (With nat_instance_standby and bastion_per_az, and fumidai-provision-nat-standby beside it:
  tests/integration/test_iam_nat_standby.py, on the same harness, tests/integration/iam_flows.py.)

moto enforces the Action element only (docs/iam.md, "How it is tested"), so the users hold each policy's
action projection; the full documents, Resource and Condition included, are evaluated against the request
log by tests/integration/iam_policy.py. Negative controls: the same flow with one needed action taken out
of the policy stops with AccessDenied naming it, and calls outside the project are denied by the conditions.
"""

from __future__ import annotations

import copy
import json

import pytest

from tests.integration import iam_policy
from tests.integration.iam_flows import (
    ADMIN_CIDR,
    AUTH_ERRORS,
    VENV_BIN,
    Flow,
    enforcing_server,
    keep_for_reading,
    local_controller,
)
from tests.integration.iam_flows import ran_clean as ran_clean_against

# Users: which policy document each holds (its action projection, the part moto enforces), and the action
# taken out for the negative controls.
USERS = {
    "readonly": ("readonly", None),
    "provision": ("provision", None),
    "readonly-without-describe-instances": ("readonly", "ec2:DescribeInstances"),
    "provision-without-create-vpc": ("provision", "ec2:CreateVpc"),
}
# Which user's calls are judged against which policy.
POLICY_OF = {"readonly": "readonly", "provision": "provision"}

# Actions a policy grants that no flow called in this run, each with the reason it is granted anyway
# ({action: reason}). An action the flows start calling must leave this list (the test says so), and an
# action the policy grants that is neither called nor listed here fails the test: the policies grant nothing
# unexplained.
EXPECTED_UNUSED: dict[str, dict[str, str]] = {"readonly": {}, "provision": {
    "ec2:DisassociateAddress": "teardown detaches an Elastic IP that is still attached when it releases it "
                               "(roles/aws_teardown/tasks/elastic_ips.yml); in a whole teardown none is, because "
                               "terminating the instances and deleting the NAT gateway free them first, as on "
                               "AWS (and in the local API since lab/moto_dependencies.py)",
    "ec2:DescribeNetworkInterfaces": "a second provisioning run finds the interface the NAT gateway's tagged Elastic "
                                     "IP is attached to (roles/aws_network); this module provisions once, "
                                     "tests/integration/test_iam_nat_standby.py provisions twice and checks the call"}}


@pytest.fixture(scope="module")
def flows(tmp_path_factory):
    """Every flow, in the order an operator runs them, each as its user; the negative controls first
    (each on the state it needs: an empty account, then a provisioned one)."""
    tmp = tmp_path_factory.mktemp("iam")
    with enforcing_server(tmp, USERS) as server:
        hosts, key = local_controller(tmp)
        provision_vars = ("-e", json.dumps({"admin_cidrs": [ADMIN_CIDR], "ssh_public_key_path": f"{key}.pub"}))
        inventory = [str(VENV_BIN / "ansible-inventory"), "-i", "inventory/aws.bastion_ec2.yml", "--list"]
        done: dict[str, Flow] = {}

        done["provision without ec2:CreateVpc"] = server.run(
            "provision without ec2:CreateVpc", "provision-without-create-vpc",
            "playbooks/provision.yml", *hosts, *provision_vars)
        done["provision"] = server.run("provision", "provision", "playbooks/provision.yml", *hosts, *provision_vars)
        done["inventory"] = server.run("inventory", "readonly", command=inventory)
        done["inventory without ec2:DescribeInstances"] = server.run(
            "inventory without ec2:DescribeInstances", "readonly-without-describe-instances", command=inventory)
        # ssh and http: http reads everything ssh does plus the load balancer; egress reads what ssh reads.
        for path in ("ssh", "http"):
            done[f"doctor {path}"] = server.run(
                f"doctor {path}", "readonly", "playbooks/doctor.yml", *hosts, "-e", "target=web01",
                "-e", f"path={path}", "-e", "source_cidr=192.168.250.10/32",
                report=("doctor_output", f"doctor-{path}.json"))
        done["audit"] = server.run("audit", "readonly", "playbooks/audit.yml", *hosts,
                                   report=("audit_output", "audit.json"))
        done["host keys"] = server.run("host keys", "readonly", "playbooks/host_keys.yml", *hosts,
                                       "-e", "host_keys_repin=all")
        done["alb ready"] = server.run("alb ready", "readonly", "playbooks/alb_ready.yml", *hosts,
                                       "-e", "aws_alb_ready_poll_interval=1")
        done["teardown"] = server.run("teardown", "provision", "playbooks/teardown.yml", *hosts)
        keep_for_reading(tmp, done)
        yield {"flows": done}


def flows_of(flows: dict, user: str) -> list[Flow]:
    return [f for f in flows["flows"].values() if f.user == user]


def ran_clean(flow: Flow) -> str:
    return ran_clean_against(flow, POLICY_OF[flow.user])


# --------------------------------------------------------------------------- the documents themselves
@pytest.mark.parametrize("name", sorted(iam_policy.POLICY_FILES))
def test_policy_document_is_well_formed_and_uses_listed_condition_keys(name):
    policy = iam_policy.load_policy(name)
    assert iam_policy.lint(policy, iam_policy.load_sar()) == []
    # IAM's limit for a customer managed policy, whitespace not counted.
    assert iam_policy.size_without_whitespace(policy) <= 6144


def test_lint_rejects_keys_and_resources_the_reference_does_not_list():
    policy = {"Version": "2012-10-17", "Statement": [
        # CreateVpc makes a new VPC: it has no resource tag to test yet, only requested ones.
        {"Sid": "A", "Effect": "Allow", "Action": "ec2:CreateVpc", "Resource": "arn:aws:ec2:*:*:vpc/*",
         "Condition": {"StringEquals": {"aws:ResourceTag/Project": "fumidai"}}},
        # DescribeVpcs has no resource-level permissions: an ARN makes the statement dead.
        {"Sid": "B", "Effect": "Allow", "Action": "ec2:DescribeVpcs", "Resource": "arn:aws:ec2:*:*:vpc/*"}]}
    problems = iam_policy.lint(policy, iam_policy.load_sar())
    assert problems == [
        "A: ec2:CreateVpc does not support condition key aws:ResourceTag/Project on ['vpc'] "
        "(Service Authorization Reference)",
        "B: ec2:DescribeVpcs has no resource type matching ['arn:aws:ec2:*:*:vpc/*'] "
        "(no resource-level permissions: it needs Resource *)"]


# --------------------------------------------------------------------------- enforced by moto
def test_readonly_flows_run_holding_only_the_readonly_policy(flows):
    done = flows["flows"]
    inventory = done["inventory"]
    assert inventory.proc.returncode == 0, inventory.output()[-4000:]
    hostvars = json.loads(inventory.proc.stdout)["_meta"]["hostvars"]
    assert set(hostvars) == {"bastion", "nat-instance", "web01", "web02"}
    for path in ("ssh", "http"):
        doctor = done[f"doctor {path}"]
        # The doctor walked the path (its verdict on moto's topology is test_doctor's business).
        assert doctor.report and doctor.report["hops"], doctor.output()[-4000:]
    audit = done["audit"]
    assert audit.report and audit.report["summary"], audit.output()[-4000:]
    for name in ("host keys", "alb ready"):
        assert done[name].proc.returncode == 0, done[name].output()[-4000:]
    problems = [ran_clean(f) for f in flows_of(flows, "readonly")]
    assert [p for p in problems if p] == []


def test_provision_and_teardown_run_holding_only_the_provision_policy(flows):
    done = flows["flows"]
    for name in ("provision", "teardown"):
        assert ran_clean(done[name]) == ""
        assert done[name].proc.returncode == 0, done[name].output()[-6000:]
    created = {e["action"] for e in done["provision"].entries if e["status"] < 400}
    deleted = {e["action"] for e in done["teardown"].entries if e["status"] < 400}
    assert {"ec2:CreateVpc", "ec2:RunInstances", "elasticloadbalancing:CreateLoadBalancer"} <= created
    assert {"ec2:DeleteVpc", "ec2:TerminateInstances", "elasticloadbalancing:DeleteLoadBalancer"} <= deleted


# --------------------------------------------------------------------------- negative controls (enforcement is on)
def test_inventory_stops_with_access_denied_when_describe_instances_is_missing(flows):
    flow = flows["flows"]["inventory without ec2:DescribeInstances"]
    assert flow.proc.returncode != 0
    assert "ec2:DescribeInstances" in flow.output() and "AccessDenied" in flow.output(), flow.output()[-3000:]
    refused = [e for e in flow.entries if e["error"] in AUTH_ERRORS]
    assert refused and {e["action"] for e in refused} == {"ec2:DescribeInstances"}


def test_provision_stops_with_access_denied_when_create_vpc_is_missing(flows):
    flow = flows["flows"]["provision without ec2:CreateVpc"]
    assert flow.proc.returncode != 0
    assert "not authorized to perform: ec2:CreateVpc" in flow.output(), flow.output()[-3000:]
    refused = [e for e in flow.entries if e["error"] in AUTH_ERRORS]
    assert [e["action"] for e in refused] == ["ec2:CreateVpc"]
    # It stopped there: nothing was created before or after the refused call.
    changed = [e["action"] for e in flow.entries
               if e["status"] < 400 and not e["action"].split(":")[1].startswith(("Describe", "Get", "List"))]
    assert changed == []


# --------------------------------------------------------------------------- the full documents, by comparison
@pytest.mark.parametrize("user", sorted(POLICY_OF))
def test_every_call_is_allowed_by_the_full_policy(flows, user):
    policy, sar = iam_policy.load_policy(POLICY_OF[user]), iam_policy.load_sar()
    refused = []
    for flow in flows_of(flows, user):
        for entry in flow.entries:
            for check in iam_policy.checks_for(entry, sar):
                allowed, why = iam_policy.evaluate(policy, check)
                if not allowed:
                    refused.append(f"{flow.name}: {check.describe()}: {why}")
    assert refused == []


@pytest.mark.parametrize("flow", ["inventory", "host keys", "alb ready"])
def test_the_provision_policy_also_covers_what_site_yml_reads(flows, flow):
    """site.yml runs provisioning, the inventory plugin, host key pinning and the ALB wait as one identity."""
    policy, sar = iam_policy.load_policy("provision"), iam_policy.load_sar()
    checks = [c for e in flows["flows"][flow].entries for c in iam_policy.checks_for(e, sar)]
    assert checks
    assert [c.describe() for c in checks if not iam_policy.evaluate(policy, c)[0]] == []


@pytest.mark.parametrize("user", sorted(POLICY_OF))
def test_the_policy_grants_no_action_the_flows_do_not_use(flows, user):
    policy, sar = iam_policy.load_policy(POLICY_OF[user]), iam_policy.load_sar()
    called = {c.action for f in flows_of(flows, user) for e in f.entries for c in iam_policy.checks_for(e, sar)}
    unused = {p for p in iam_policy.granted_patterns(policy)
              if not any(iam_policy.action_matches(p, action) for action in called)}
    expected = set(EXPECTED_UNUSED[user])
    assert not unused - expected, f"granted, never called (remove, or explain in EXPECTED_UNUSED): {unused - expected}"
    assert not expected - unused, f"now called: remove from EXPECTED_UNUSED[{user!r}]: {expected - unused}"


# --------------------------------------------------------------------------- negative controls for the conditions
def _first(flows, flow: str, action: str) -> dict:
    entry = next(e for e in flows["flows"][flow].entries if e["action"] == action and e["status"] < 400)
    return copy.deepcopy(entry)


def _retag(entry: dict, resource_prefix: str, tags: dict) -> dict:
    for resource in entry["resources"]:
        if resource["id"].startswith(resource_prefix):
            resource["tags"] = tags
    return entry


def _set_params(entry: dict, **params: str) -> dict:
    entry["params"].update({k.replace("__", "."): v for k, v in params.items()})
    return entry


def _drop_tag_specifications(entry: dict) -> dict:
    entry["params"] = {k: v for k, v in entry["params"].items() if not k.startswith("TagSpecification.")}
    return entry


def _tag_value(entry: dict, key: str, value: str) -> dict:
    for name, current in list(entry["params"].items()):
        if name.endswith(".Key") and current == key:
            entry["params"][name[: -len("Key")] + "Value"] = value
    return entry


def _extra_tag(entry: dict, key: str) -> dict:
    entry["params"].update({"TagSpecification.1.Tag.9.Key": key, "TagSpecification.1.Tag.9.Value": "x"})
    return entry


def _image_owner(entry: dict, owner: str) -> dict:
    for resource in entry["resources"]:
        if resource["type"] == "image":
            resource["owner"] = owner
    return entry


def _other_listener(entry: dict) -> dict:
    arn = entry["params"]["ListenerArn"].replace("/fumidai-alb/", "/other-alb/")
    entry["params"]["ListenerArn"] = arn
    entry["resources"] = [{**r, "id": arn} for r in entry["resources"]]
    return entry


OUTSIDE_THE_PROJECT = {
    "a VPC tagged for another project": ("provision", "ec2:CreateVpc",
                                         lambda e: _tag_value(e, "Project", "other"), "ec2:CreateVpc"),
    "an untagged VPC": ("provision", "ec2:CreateVpc", _drop_tag_specifications, "ec2:CreateVpc"),
    "a subnet with a tag key outside the list": ("provision", "ec2:CreateSubnet",
                                                 lambda e: _extra_tag(e, "Owner"), "ec2:CreateSubnet"),
    "a subnet in another project's VPC": ("provision", "ec2:CreateSubnet",
                                          lambda e: _retag(e, "vpc-", {"Project": "other"}), "ec2:CreateSubnet"),
    "an instance without IMDSv2": ("provision", "ec2:RunInstances",
                                   lambda e: _set_params(e, MetadataOptions__HttpTokens="optional"),
                                   "ec2:RunInstances"),
    "an unencrypted root volume": ("provision", "ec2:RunInstances",
                                   lambda e: _set_params(e, BlockDeviceMapping__1__Ebs__Encrypted="false"),
                                   "ec2:RunInstances"),
    "an image from another owner": ("provision", "ec2:RunInstances",
                                    lambda e: _image_owner(e, "999999999999"), "ec2:RunInstances"),
    "terminating another project's instance": ("teardown", "ec2:TerminateInstances",
                                               lambda e: _retag(e, "i-", {"Project": "other"}),
                                               "ec2:TerminateInstances"),
    "releasing an untagged address": ("teardown", "ec2:ReleaseAddress", lambda e: _retag(e, "eipalloc-", {}),
                                      "ec2:ReleaseAddress"),
    "deleting another project's load balancer": (
        "teardown", "elasticloadbalancing:DeleteLoadBalancer",
        lambda e: _retag(e, "arn:", {"Project": "other"}), "elasticloadbalancing:DeleteLoadBalancer"),
    "deleting a listener of another load balancer": ("teardown", "elasticloadbalancing:DeleteListener",
                                                     _other_listener, "elasticloadbalancing:DeleteListener"),
    "console output of another project's instance": ("provision", "ec2:GetConsoleOutput",
                                                     lambda e: _retag(e, "i-", {"Project": "other"}),
                                                     "ec2:GetConsoleOutput"),
}


@pytest.mark.parametrize("case", sorted(OUTSIDE_THE_PROJECT))
def test_the_conditions_refuse_calls_outside_the_project(flows, case):
    """The recorded call is allowed; the same call made outside the project is not (the conditions bite)."""
    flow, action, change, refused_action = OUTSIDE_THE_PROJECT[case]
    policy, sar = iam_policy.load_policy("provision"), iam_policy.load_sar()
    entry = _first(flows, flow, action)
    assert all(iam_policy.evaluate(policy, c)[0] for c in iam_policy.checks_for(entry, sar))
    refused = [c for c in iam_policy.checks_for(change(entry), sar) if not iam_policy.evaluate(policy, c)[0]]
    described = [c.describe() for c in refused]
    assert refused and {c.action for c in refused} <= {refused_action, "ec2:CreateTags"}, described
