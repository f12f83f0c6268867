"""playbooks/teardown.yml against a moto server: it deletes the one stack its
record names, and nothing else.

One story per module (each provisioning run costs a minute):
  - stack A (project fumidai, with an ACM certificate, so the HTTPS variant of
    the ALB is checked too) and stack B (project "second") are provisioned,
    side by side; an unrelated instance outside both VPCs carries the project
    tag, with a project-tagged EIP attached to it; a "twin" VPC of project
    fumidai (another stack of A's project, recorded nowhere) holds a tagged
    subnet, security group, internet gateway and instance;
  - a second live "bastion" in B's VPC: provisioning B stops, terminating nothing;
  - teardown of A in check mode lists exactly A's resources and changes nothing;
  - A's record faked to another endpoint or account: refused, nothing deleted;
    the account confirmed (-e confirm_account): A goes, B and the unrelated
    instance and EIP stay; a second run is a no-op;
  - A provisioned again, with B's live record in A's outputs file (as when
    two stacks share the default file): B's record is kept aside, not
    overwritten; then B torn down: A stays;
  - A's record removed: refused (naming A's VPC); -e teardown_vpc_id without
    confirm_account: refused; with it: A goes. The unrelated instance and its
    EIP, and the twin, are still there at the end.
"""

from __future__ import annotations

import re
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
import yaml

from tests.integration.teardown_helpers import (
    ACCOUNT,
    OTHER_ACCOUNT,
    REGION,
    Stacks,
    build_twin,
    build_unrelated,
    listed,
    one_line,
    recap,
    tag,
    twin_intact,
)

# --- the story, one fixture per chapter (each depends on the one before) --------

@pytest.fixture(scope="module")
def stacks(moto_endpoint, tmp_path_factory):
    urllib.request.urlopen(urllib.request.Request(f"{moto_endpoint}/moto-api/reset", method="POST"), timeout=10).close()
    world = Stacks(moto_endpoint, tmp_path_factory.mktemp("teardown"))
    with ThreadPoolExecutor(2) as pool:  # the two stacks are independent: provision them side by side
        runs = dict(zip("ab", pool.map(world.provision, "ab"), strict=True))
    for name, proc in runs.items():
        assert proc.returncode == 0, f"provisioning {name} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-2000:]}"
    ec2 = world.account.ec2
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    world.unrelated, world.unrelated_eip, world.unrelated_association = build_unrelated(ec2, image)
    world.twin = build_twin(ec2, image)
    world.records = {name: world.record(name) for name in "ab"}
    world.resources = {name: world.account.stack(world.records[name]) for name in "ab"}
    alb = world.records["a"]["alb_arn"]
    world.listeners = world.account.elbv2.describe_listeners(LoadBalancerArn=alb)["Listeners"]
    world.alb_group = ec2.describe_security_groups(Filters=[
        {"Name": "vpc-id", "Values": [world.records["a"]["vpc_id"]]},
        {"Name": "group-name", "Values": ["fumidai-alb"]}])["SecurityGroups"][0]
    return world


@pytest.fixture(scope="module")
def duplicate(stacks):
    """A second live instance named bastion in B's VPC (B's project tag), then provisioning B again."""
    ec2 = stacks.account.ec2
    record = stacks.records["b"]
    bastion = stacks.account.instances(**{"vpc-id": record["vpc_id"], "tag:Name": "bastion"})[0]
    extra = ec2.run_instances(ImageId=bastion["ImageId"], InstanceType="t3.micro", MinCount=1, MaxCount=1,
                              SubnetId=bastion["SubnetId"], TagSpecifications=[{"ResourceType": "instance", "Tags": [
                                  {"Key": "Project", "Value": "second"}, {"Key": "Name", "Value": "bastion"},
                                  {"Key": "Role", "Value": "bastion"}]}])["Instances"][0]["InstanceId"]
    before = stacks.account.everything()
    proc = stacks.provision("b")
    return {"proc": proc, "ids": (bastion["InstanceId"], extra), "before": before,
            "after": stacks.account.everything()}


@pytest.fixture(scope="module")
def check_mode(duplicate, stacks):
    before = stacks.account.everything()
    proc = stacks.teardown("a", "--check")
    return {"proc": proc, "before": before, "after": stacks.account.everything()}


@pytest.fixture(scope="module")
def refusals(check_mode, stacks):
    """A's record faked to another endpoint, then to another account; a confirm_account that is not the caller's."""
    real = stacks.record("a")
    before = stacks.account.everything()
    stacks.edit_record("a", endpoint_url="")
    endpoint = stacks.teardown("a")
    stacks.edit_record("a", endpoint_url=real["endpoint_url"], account_id=OTHER_ACCOUNT)
    account = stacks.teardown("a")
    wrong_confirm = stacks.teardown("a", "-e", f"confirm_account={OTHER_ACCOUNT}")
    return {"endpoint": endpoint, "account": account, "wrong_confirm": wrong_confirm, "before": before,
            "after": stacks.account.everything()}


@pytest.fixture(scope="module")
def teardown_a(refusals, stacks):
    """A's record still names another account: confirmed explicitly, A goes. Then again."""
    first = stacks.teardown("a", "-e", f"confirm_account={ACCOUNT}")
    after = stacks.account.everything()
    record = stacks.record("a")
    second = stacks.teardown("a")
    return {"first": first, "after": after, "record": record, "second": second}


@pytest.fixture(scope="module")
def teardown_b(teardown_a, stacks):
    """A provisioned again (a new VPC) over a file holding B's record; then B torn down."""
    b_outputs = stacks.outputs["b"].read_text()
    stacks.outputs["a"].write_text(b_outputs)
    provision = stacks.provision("a")
    assert provision.returncode == 0, provision.stdout[-4000:]
    aside = stacks.outputs["a"].with_name(f"outputs.{stacks.records['b']['vpc_id']}.yml")
    stacks.aside = {"proc": provision, "path": aside, "expected": b_outputs,
                    "found": aside.read_text() if aside.exists() else None}
    stacks.records["a2"] = stacks.record("a")
    stacks.resources["a2"] = stacks.account.stack(stacks.records["a2"])
    proc = stacks.teardown("b")
    return {"proc": proc, "after": stacks.account.everything()}


@pytest.fixture(scope="module")
def without_record(teardown_b, stacks):
    """A's outputs file removed: refused; then named by teardown_vpc_id, without and with confirm_account."""
    stacks.outputs["a"].unlink()
    vpc = stacks.records["a2"]["vpc_id"]
    before = stacks.account.everything()
    refused = stacks.teardown("a")
    unconfirmed = stacks.teardown("a", "-e", f"teardown_vpc_id={vpc}")
    between = stacks.account.everything()
    named = stacks.teardown("a", "-e", f"teardown_vpc_id={vpc}", "-e", f"confirm_account={ACCOUNT}")
    return {"refused": refused, "unconfirmed": unconfirmed, "named": named, "before": before, "between": between,
            "after": stacks.account.everything(), "record": stacks.record("a")}


# --- both stacks provisioned ---------------------------------------------------

def test_both_stacks_provisioned_with_their_records(stacks):
    for name, project in (("a", "fumidai"), ("b", "second")):
        record = stacks.records[name]
        assert {k: record[k] for k in ("account_id", "region", "endpoint_url", "project", "project_tag_key")} == {
            "account_id": ACCOUNT, "region": REGION, "endpoint_url": stacks.endpoint, "project": project,
            "project_tag_key": "Project"}
        vpc = stacks.account.ec2.describe_vpcs(VpcIds=[record["vpc_id"]])["Vpcs"][0]
        assert tag(vpc, "Project") == project
        instances = {i["InstanceId"] for i in stacks.account.instances(**{"vpc-id": record["vpc_id"]})}
        assert set(record["instance_ids"]) == instances
        assert len(instances) == (4 if name == "a" else 3)
        kinds = sorted(kind for kind, _ in stacks.resources[name])
        assert kinds.count("eip") == len(record["eip_allocation_ids"]) == 2
        assert record["key_pair"]["name"] == project
        assert record["alb_arn"] == next(i for k, i in stacks.resources[name] if k == "load-balancer")
        assert record["target_group_arns"] == [i for k, i in stacks.resources[name] if k == "target-group"]


def test_https_listener_with_certificate_and_http_redirect(stacks):
    by_port = {lst["Port"]: lst for lst in stacks.listeners}
    assert set(by_port) == {80, 443}
    https = by_port[443]
    assert https["Protocol"] == "HTTPS"
    assert [c["CertificateArn"] for c in https["Certificates"]] == [stacks.cert_arn]
    assert https["SslPolicy"].startswith("ELBSecurityPolicy-TLS13")
    assert [a["Type"] for a in https["DefaultActions"]] == ["forward"]
    http = by_port[80]
    assert http["Protocol"] == "HTTP"
    redirect = http["DefaultActions"][0]
    assert redirect["Type"] == "redirect"
    assert (redirect["RedirectConfig"]["Protocol"], redirect["RedirectConfig"]["Port"]) == ("HTTPS", "443")


def test_alb_group_opens_443_with_certificate(stacks):
    ports = {(p["IpProtocol"], p["FromPort"], r["CidrIp"])
             for p in stacks.alb_group["IpPermissions"] for r in p["IpRanges"]}
    assert {("tcp", 80, "0.0.0.0/0"), ("tcp", 443, "0.0.0.0/0")} <= ports


# --- provisioning never picks between two same-named instances -----------------

def test_two_instances_with_one_name_stop_provisioning(duplicate):
    proc = duplicate["proc"]
    assert proc.returncode != 0
    assert recap(proc)["failed"] == 1
    first, extra = duplicate["ids"]
    message = one_line(proc)
    assert re.search(rf"2 live instances are named bastion with the project tag in vpc-\w+: "
                     rf"({first}, {extra}|{extra}, {first}) ", message), message[-3000:]
    assert "nothing was terminated" in message


def test_two_instances_with_one_name_both_survive(duplicate):
    first, extra = duplicate["ids"]
    assert duplicate["after"]["instances"][first] == "running"
    assert duplicate["after"]["instances"][extra] == "running"
    assert duplicate["after"] == duplicate["before"]


# --- check mode ----------------------------------------------------------------------

def test_check_mode_lists_every_resource_of_the_stack_with_its_name(check_mode, stacks):
    proc = check_mode["proc"]
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert listed(proc) == stacks.resources["a"]
    kinds = [kind for kind, _ in listed(proc)]
    assert {kind: kinds.count(kind) for kind in kinds} == {
        "load-balancer": 1, "target-group": 1, "instance": 4, "route-table": 3, "nat-gateway": 1, "eip": 2,
        "security-group": 4, "subnet": 4, "internet-gateway": 1, "vpc": 1, "key-pair": 1}
    assert "Check mode, nothing is deleted. Teardown would delete 23 resource(s)" in one_line(proc)


def test_check_mode_changes_nothing(check_mode, stacks):
    assert recap(check_mode["proc"])["changed"] == 0
    assert check_mode["after"] == check_mode["before"]
    assert "status" not in stacks.record("a")


def test_check_mode_lists_nothing_of_the_other_stack_or_the_unrelated_instance(check_mode, stacks):
    ids = {rid for _, rid in listed(check_mode["proc"])}
    assert ids.isdisjoint({rid for _, rid in stacks.resources["b"]})
    assert stacks.unrelated not in ids and stacks.unrelated_eip not in ids
    assert ids.isdisjoint(stacks.twin.values())
    assert f"{stacks.unrelated_eip} " in one_line(check_mode["proc"])  # named in the warning...
    assert "attached to " + stacks.unrelated in one_line(check_mode["proc"])  # ...with what it is attached to


# --- refusals ----------------------------------------------------------------------

def test_endpoint_mismatch_refused(refusals, stacks):
    proc = refusals["endpoint"]
    assert proc.returncode != 0
    message = one_line(proc)
    assert (f"records stack {stacks.records['a']['vpc_id']} in account {ACCOUNT} at real AWS (no AWS_ENDPOINT_URL), "
            f"but this run uses account {ACCOUNT} at {stacks.endpoint}. Nothing was deleted.") in message
    assert f"-e confirm_account={ACCOUNT}" in message


def test_account_mismatch_refused(refusals, stacks):
    proc = refusals["account"]
    assert proc.returncode != 0
    assert (f"records stack {stacks.records['a']['vpc_id']} in account {OTHER_ACCOUNT} at {stacks.endpoint}, "
            f"but this run uses account {ACCOUNT} at {stacks.endpoint}. Nothing was deleted.") in one_line(proc)


def test_confirm_account_must_be_the_callers(refusals):
    proc = refusals["wrong_confirm"]
    assert proc.returncode != 0
    assert (f"confirm_account={OTHER_ACCOUNT} is not the account in use: the credentials belong to {ACCOUNT}"
            in one_line(proc))


def test_refusals_delete_nothing(refusals):
    assert refusals["after"] == refusals["before"]
    for name in ("endpoint", "account", "wrong_confirm"):
        assert recap(refusals[name])["changed"] == 0
        assert "Show what teardown deletes" not in refusals[name].stdout


# --- teardown of A (account confirmed) ------------------------------------------

def test_confirmed_teardown_deletes_the_stack(teardown_a, stacks):
    proc = teardown_a["first"]
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert recap(proc)["changed"] > 0
    after = teardown_a["after"]
    left = [(kind, rid) for kind, rid in stacks.resources["a"]
            if rid in after[{"load-balancer": "load balancers", "target-group": "target groups",
                             "instance": "instances", "route-table": "route tables", "nat-gateway": "nat gateways",
                             "eip": "addresses", "security-group": "security groups", "subnet": "subnets",
                             "internet-gateway": "internet gateways", "vpc": "vpcs", "key-pair": "key pairs"}[kind]]]
    assert left == []


def test_teardown_of_a_leaves_b_whole(teardown_a, duplicate, stacks):
    # B as provisioned, plus the extra bastion launched in its VPC.
    assert stacks.account.stack(stacks.records["b"]) == {**stacks.resources["b"],
                                                          ("instance", duplicate["ids"][1]): "bastion"}


def test_unrelated_tagged_instance_and_its_eip_untouched(teardown_a, stacks):
    after = teardown_a["after"]
    assert after["instances"][stacks.unrelated] == "running"
    assert after["addresses"][stacks.unrelated_eip] == stacks.unrelated_association


def test_another_stack_of_the_same_project_untouched(teardown_a, stacks):
    assert twin_intact(teardown_a["after"], stacks.twin)


def test_record_marked_torn_down(teardown_a, stacks):
    record = teardown_a["record"]
    assert record["status"] == "torn down"
    assert record["vpc_id"] == stacks.records["a"]["vpc_id"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", record["torn_down_at"])
    assert set(yaml.safe_load(stacks.outputs["a"].read_text())) == {"stack"}


def test_second_teardown_is_a_no_op(teardown_a, stacks):
    proc = teardown_a["second"]
    assert proc.returncode == 0
    assert recap(proc)["changed"] == 0
    assert (f"The stack recorded in {stacks.outputs['a']} ({stacks.records['a']['vpc_id']}, project fumidai) "
            "was torn down at") in one_line(proc)


# --- A again, then teardown of B -------------------------------------------------

def test_another_stacks_record_is_kept_aside_not_overwritten(teardown_b, stacks):
    aside = stacks.aside
    assert aside["found"] == aside["expected"]
    assert (f"held the record of another stack ({stacks.records['b']['vpc_id']}), not torn down; it is now in "
            f"{aside['path']}. To tear that stack down: FUMIDAI_OUTPUTS_FILE={aside['path']} "
            "ansible-playbook fumidai.vpc.teardown") in one_line(aside["proc"])
    assert stacks.records["a2"]["project"] == "fumidai"
    assert "status" not in stacks.records["a2"]


def test_teardown_of_b_deletes_b_and_its_extra_instance(teardown_b, stacks):
    proc = teardown_b["proc"]
    assert proc.returncode == 0, proc.stdout[-4000:]
    after = teardown_b["after"]
    assert stacks.records["b"]["vpc_id"] not in after["vpcs"]
    assert not any(rid in after["instances"] or rid in after["addresses"] or rid in after["load balancers"]
                   for _, rid in stacks.resources["b"])


def test_teardown_of_b_leaves_a_whole(teardown_b, stacks):
    assert stacks.records["a2"]["vpc_id"] != stacks.records["a"]["vpc_id"]
    assert stacks.account.stack(stacks.records["a2"]) == stacks.resources["a2"]
    assert twin_intact(teardown_b["after"], stacks.twin)
    assert teardown_b["after"]["instances"][stacks.unrelated] == "running"
    assert teardown_b["after"]["addresses"][stacks.unrelated_eip] == stacks.unrelated_association


# --- A without its record ------------------------------------------------------------

def test_no_record_refused_naming_the_tagged_vpcs(without_record, stacks):
    proc = without_record["refused"]
    assert proc.returncode != 0
    message = one_line(proc)
    vpc = stacks.records["a2"]["vpc_id"]
    assert f"No stack record in {stacks.outputs['a']} (the file does not exist)" in message
    assert re.search(rf"VPCs tagged Project=fumidai in {REGION} \(account {ACCOUNT}, {stacks.endpoint}\): "
                     rf"vpc-\w+ \(fumidai-vpc 10\.\d\.0\.0/16\), vpc-\w+ \(fumidai-vpc 10\.\d\.0\.0/16\)\.", message)
    assert f"{vpc} (fumidai-vpc 10.0.0.0/16)" in message
    assert f"{stacks.twin['vpc']} (fumidai-vpc 10.1.0.0/16)" in message
    assert f"-e teardown_vpc_id=VPC_ID -e confirm_account={ACCOUNT}" in message


def test_named_vpc_needs_the_account_confirmed(without_record, stacks):
    proc = without_record["unconfirmed"]
    assert proc.returncode != 0
    assert (f"teardown_vpc_id={stacks.records['a2']['vpc_id']} needs the account confirmed too"
            in one_line(proc))
    assert without_record["between"] == without_record["before"]


def test_named_and_confirmed_vpc_is_torn_down(without_record, stacks):
    proc = without_record["named"]
    assert proc.returncode == 0, proc.stdout[-4000:]
    after = without_record["after"]
    # Everything inside the VPC and the EIPs attached to it; the key pair, which only a record names, stays
    # (and is named in a message).
    gone = {(k, i) for k, i in stacks.resources["a2"] if k != "key-pair"}
    assert listed(proc) == {key: name for key, name in stacks.resources["a2"].items() if key in gone}
    assert not any(rid in after["instances"] or rid in after["addresses"] or rid in after["subnets"]
                   for _, rid in gone)
    assert after["key pairs"] == {stacks.records["a2"]["key_pair"]["id"]: "fumidai"}
    assert "key pair fumidai is left alone" in one_line(proc)
    assert without_record["record"]["status"] == "torn down"
    assert without_record["record"]["vpc_id"] == stacks.records["a2"]["vpc_id"]


def test_in_the_end_only_the_default_vpc_the_twin_and_the_unrelated_instance_remain(without_record, stacks):
    after = without_record["after"]
    default = stacks.account.ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"]
    assert sorted(after["vpcs"]) == sorted([default[0]["VpcId"], stacks.twin["vpc"]])
    assert twin_intact(after, stacks.twin)
    assert after["instances"] == {stacks.unrelated: "running", stacks.twin["instance"]: "running"}
    assert after["addresses"] == {stacks.unrelated_eip: stacks.unrelated_association}
    assert after["load balancers"] == {} and after["target groups"] == {}
    assert list(after["key pairs"].values()) == ["fumidai"]  # left by the teardown without a record
