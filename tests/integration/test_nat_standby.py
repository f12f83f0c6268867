"""A standby NAT instance (nat_instance_standby: true) against the local API: provisioning, its watchdog's IAM
scope, fail-back (playbooks/nat_failback.yml) and teardown, on one provisioned stack (one provisioning run).

Tests run in file order on one worker (make test-integration uses --dist loadfile); the last one tears down.
"""

from __future__ import annotations

import json
import sys
import urllib.request

import boto3
import pytest
import yaml
from botocore.exceptions import ClientError

from tests.integration import iam_policy, provisioned
from tests.integration.test_iam_nat_standby import printed
from tests.support.aws_plans import REGION
from tests.support.playbook import run_playbook

ROLE = f"fumidai-nat-watchdog-{REGION}"
POLICY = "replace-nat-route"
AUTH_ERRORS = {"AccessDenied", "UnauthorizedOperation", "AccessDeniedException"}
# roles/settings' defaults: the watchdog probes 1.1.1.1:443 through the active NAT instance.
PROBE_ROUTE, PROBE_PORT = "1.1.1.1/32", 443


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    yield from provisioned.provisioned_stack(tmp_path_factory, {"nat_instance_standby": True})


def tagged(resource: dict) -> dict:
    return {t["Key"]: t["Value"] for t in resource.get("Tags") or []}


def nat_instances(ec2) -> dict[str, dict]:
    found = {}
    for page in ec2.get_paginator("describe_instances").paginate(
            Filters=[{"Name": "tag:Role", "Values": ["nat"]},
                     {"Name": "instance-state-name", "Values": ["pending", "running", "stopping", "stopped"]}]):
        for reservation in page["Reservations"]:
            for instance in reservation["Instances"]:
                found[tagged(instance)["Name"]] = instance
    return found


def tables(ec2, vpc_id: str) -> dict[str, str]:
    """Route tables of the VPC by Name tag ('main' for the main one)."""
    out = {}
    for table in ec2.describe_route_tables(Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])["RouteTables"]:
        main = any(a.get("Main") for a in table.get("Associations", []))
        out["main" if main else tagged(table).get("Name", table["RouteTableId"])] = table["RouteTableId"]
    return out


def default_target(ec2, table_id: str) -> str | None:
    routes = ec2.describe_route_tables(RouteTableIds=[table_id])["RouteTables"][0]["Routes"]
    return next((r.get("InstanceId") for r in routes if r.get("DestinationCidrBlock") == "0.0.0.0/0"), None)


def changed_zero(proc) -> bool:
    recap = [line for line in proc.stdout.splitlines() if line.startswith("localhost") and "changed=" in line]
    return bool(recap) and all("changed=0 " in line for line in recap)


# --------------------------------------------------------------------------- provisioning
def test_standby_is_launched_in_the_other_public_subnet_with_the_profile(stack):
    ec2, iam = stack.client("ec2"), stack.client("iam")
    nats = nat_instances(ec2)
    assert set(nats) == {"nat-instance", "nat-instance-standby"}
    active, standby = nats["nat-instance"], nats["nat-instance-standby"]
    subnets = {tagged(s)["Name"]: s["SubnetId"] for s in ec2.describe_subnets(
        Filters=[{"Name": "vpc-id", "Values": [active["VpcId"]]}])["Subnets"]}
    assert active["SubnetId"] == subnets["public-subnet-2"] and standby["SubnetId"] == subnets["public-subnet-1"]
    assert tagged(standby) == {"Name": "nat-instance-standby", "Role": "nat", "NatStandby": "true",
                               "Project": "fumidai"}
    assert "NatStandby" not in tagged(active)  # positive control: only the standby says so
    assert [g["GroupId"] for g in standby["SecurityGroups"]] == [g["GroupId"] for g in active["SecurityGroups"]]
    assert standby["SourceDestCheck"] is False and standby.get("PublicIpAddress")
    assert standby["IamInstanceProfile"]["Arn"].endswith(f":instance-profile/{ROLE}")
    assert "IamInstanceProfile" not in active
    assert standby["MetadataOptions"]["HttpTokens"] == "required"
    pinned = stack.known_hosts.read_text()  # configure.yml leaves a host without a pinned key alone
    assert active["InstanceId"] in pinned and standby["InstanceId"] in pinned

    role = iam.get_role(RoleName=ROLE)["Role"]
    assert tagged(role) == {"Project": "fumidai", "Name": ROLE}
    assert role["AssumeRolePolicyDocument"]["Statement"] == [
        {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]
    profile = iam.get_instance_profile(InstanceProfileName=ROLE)["InstanceProfile"]
    assert [r["RoleName"] for r in profile["Roles"]] == [ROLE] and tagged(profile)["Project"] == "fumidai"
    assert iam.list_role_policies(RoleName=ROLE)["PolicyNames"] == [POLICY]
    assert iam.list_attached_role_policies(RoleName=ROLE)["AttachedPolicies"] == []

    table = tables(ec2, active["VpcId"])["fumidai-private-subnet-2"]
    account = stack.client("sts").get_caller_identity()["Account"]
    document = iam.get_role_policy(RoleName=ROLE, PolicyName=POLICY)["PolicyDocument"]
    assert document["Statement"] == [
        {"Sid": "ReplaceTheNatSubnetsRoute", "Effect": "Allow", "Action": "ec2:ReplaceRoute",
         "Resource": f"arn:aws:ec2:{REGION}:{account}:route-table/{table}"},
        {"Sid": "ReadRouteTablesNoResourceLevelPermissions", "Effect": "Allow", "Action": "ec2:DescribeRouteTables",
         "Resource": "*"}]
    assert default_target(ec2, table) == active["InstanceId"]

    # The NAT group admits the watchdog's probe (TCP 443, nat_instance_watchdog_probe_port's default) from itself,
    # i.e. from the NAT instances only.
    group = ec2.describe_security_groups(GroupIds=[active["SecurityGroups"][0]["GroupId"]])["SecurityGroups"][0]
    from_groups = [(p["IpProtocol"], p["FromPort"], pair["GroupId"]) for p in group["IpPermissions"]
                   for pair in p["UserIdGroupPairs"]]
    assert ("tcp", PROBE_PORT, group["GroupId"]) in from_groups
    assert [g for g in from_groups if g[2] == group["GroupId"]] == [("tcp", PROBE_PORT, group["GroupId"])]


def routes_of(table: dict) -> dict[str, str]:
    """A table's routes: destination -> target (gateway, or instance)."""
    return {r["DestinationCidrBlock"]: r.get("InstanceId") or r.get("GatewayId") or r.get("NatGatewayId")
            for r in table["Routes"] if "DestinationCidrBlock" in r}


def subnets_of(table: dict) -> list[str]:
    return sorted(a["SubnetId"] for a in table.get("Associations", []) if a.get("SubnetId"))


def test_the_standby_subnet_has_its_own_table_sending_the_probe_address_to_the_active(stack):
    """On AWS the standby cannot use the active NAT instance (another subnet) as its next hop: its subnet's table
    sends <probe address>/32 to the active, and the active's own subnet has no such route (it would loop)."""
    ec2 = stack.client("ec2")
    nats = nat_instances(ec2)
    active, standby = nats["nat-instance"], nats["nat-instance-standby"]
    by_id = {t["RouteTableId"]: t for t in ec2.describe_route_tables(
        Filters=[{"Name": "vpc-id", "Values": [active["VpcId"]]}])["RouteTables"]}
    by_name = tables(ec2, active["VpcId"])
    own, public = by_id[by_name["fumidai-public-standby"]], by_id[by_name["fumidai-public"]]
    igw = routes_of(public)["0.0.0.0/0"]
    assert igw.startswith("igw-")
    assert tagged(own) == {"Name": "fumidai-public-standby", "Project": "fumidai"}
    assert subnets_of(own) == [standby["SubnetId"]]
    assert routes_of(own) == {"10.0.0.0/16": "local", "0.0.0.0/0": igw, PROBE_ROUTE: active["InstanceId"]}
    # The active's subnet keeps the public table, without the /32 (positive control: its default route is there).
    assert subnets_of(public) == [active["SubnetId"]]
    assert routes_of(public) == {"10.0.0.0/16": "local", "0.0.0.0/0": igw}
    # No other table of the VPC carries the probe route.
    assert [t for t in by_id.values() if PROBE_ROUTE in routes_of(t)] == [own]


def test_a_second_run_changes_nothing(stack):
    assert changed_zero(stack.second_run()), stack.second_run().stdout[-3000:]


# --------------------------------------------------------------------------- the watchdog's IAM scope
def _reset_auth(endpoint: str, count: str) -> None:
    request = urllib.request.Request(f"{endpoint}/moto-api/reset-auth", data=count.encode(), method="POST",
                                     headers={"Content-Type": "text/plain"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert json.loads(answer.read())["status"] == "ok"


def _error(call) -> str:
    try:
        call()
    except ClientError as exc:
        return exc.response["Error"]["Code"]
    return ""


def test_watchdog_policy_replaces_only_the_nat_subnets_route(stack):
    """moto enforces a policy's Action element only (tests/integration/iam_policy.py says why), so: a user holding
    the policy's action projection is refused every other action by the local API with IAM enforcement on, and
    the exact document (Resource included) is evaluated for ReplaceRoute on every route table of the VPC."""
    ec2, iam = stack.client("ec2"), stack.client("iam")
    nats = nat_instances(ec2)
    active, standby = nats["nat-instance"], nats["nat-instance-standby"]
    by_name = tables(ec2, active["VpcId"])
    table = by_name["fumidai-private-subnet-2"]
    document = iam.get_role_policy(RoleName=ROLE, PolicyName=POLICY)["PolicyDocument"]
    account = stack.client("sts").get_caller_identity()["Account"]

    def check(action: str, table_id: str, region: str = REGION, owner: str = account) -> bool:
        arn = f"arn:aws:ec2:{region}:{owner}:route-table/{table_id}"
        return iam_policy.evaluate(document, iam_policy.Check(action, arn, {}, "test"))[0]

    assert check("ec2:ReplaceRoute", table)  # positive control
    others = [t for name, t in by_name.items() if t != table]
    assert len(others) >= 4  # public, public-standby, private-subnet-1, main
    assert not any(check("ec2:ReplaceRoute", t) for t in others)
    assert not check("ec2:ReplaceRoute", table, region="us-east-1")
    assert not check("ec2:ReplaceRoute", table, owner="210987654321")
    for action in ("ec2:CreateRoute", "ec2:DeleteRoute", "ec2:ReplaceRouteTableAssociation",
                   "ec2:ModifyInstanceAttribute"):
        assert not check(action, table), action
    assert iam_policy.evaluate(document, iam_policy.Check("ec2:DescribeRouteTables", "*", {}, "test"))[0]

    user = "nat-watchdog-projection"
    iam.create_user(UserName=user)
    iam.put_user_policy(UserName=user, PolicyName="actions", PolicyDocument=json.dumps(iam_policy.projection(document)))
    key = iam.create_access_key(UserName=user)["AccessKey"]
    watchdog = boto3.client("ec2", endpoint_url=stack.endpoint, region_name=REGION,
                            aws_access_key_id=key["AccessKeyId"], aws_secret_access_key=key["SecretAccessKey"])
    _reset_auth(stack.endpoint, "0")
    try:
        assert _error(lambda: watchdog.replace_route(RouteTableId=table, DestinationCidrBlock="0.0.0.0/0",
                                                     InstanceId=standby["InstanceId"])) == ""
        assert _error(lambda: watchdog.describe_route_tables(RouteTableIds=[table])) == ""
        refused = {
            "CreateRoute": lambda: watchdog.create_route(RouteTableId=by_name["fumidai-private-subnet-1"],
                                                         DestinationCidrBlock="192.0.2.0/24",
                                                         InstanceId=standby["InstanceId"]),
            "DeleteRoute": lambda: watchdog.delete_route(RouteTableId=table, DestinationCidrBlock="0.0.0.0/0"),
            "ModifyInstanceAttribute": lambda: watchdog.modify_instance_attribute(
                InstanceId=active["InstanceId"], SourceDestCheck={"Value": True}),
            "DescribeInstances": lambda: watchdog.describe_instances(),
        }
        assert {name: _error(call) in AUTH_ERRORS for name, call in refused.items()} == dict.fromkeys(refused, True)
    finally:
        _reset_auth(stack.endpoint, "inf")
    assert default_target(ec2, table) == standby["InstanceId"]
    ec2.replace_route(RouteTableId=table, DestinationCidrBlock="0.0.0.0/0", InstanceId=active["InstanceId"])
    iam.delete_access_key(UserName=user, AccessKeyId=key["AccessKeyId"])
    iam.delete_user_policy(UserName=user, PolicyName="actions")
    iam.delete_user(UserName=user)


def test_provisioning_keeps_a_route_the_standby_took_over(stack):
    ec2 = stack.client("ec2")
    nats = nat_instances(ec2)
    table = tables(ec2, nats["nat-instance"]["VpcId"])["fumidai-private-subnet-2"]
    standby = nats["nat-instance-standby"]["InstanceId"]
    ec2.replace_route(RouteTableId=table, DestinationCidrBlock="0.0.0.0/0", InstanceId=standby)
    proc = run_playbook("playbooks/provision.yml", *stack.extra, env=stack.env)
    assert proc.returncode == 0 and changed_zero(proc), proc.stdout[-3000:]
    assert default_target(ec2, table) == standby  # failing back is nat_failback.yml's, never provisioning's
    # Provisioning says which NAT instance forwards now (roles/aws_outputs): the standby; the file lists it.
    assert printed(proc.stdout, "nat_instance_active") == {"name": "nat-instance-standby", "instance_id": standby,
                                                          "route_table_id": table, "routes_subnet": "private-subnet-2"}
    outputs = yaml.safe_load(stack.outputs.read_text())
    assert outputs["nat_instance_standby"]["instance_id"] == standby != outputs["nat_instance"]["instance_id"]


# --------------------------------------------------------------------------- fail-back
def failback(stack, tmp_path, standby_id: str, check: list[str]):
    """playbooks/nat_failback.yml with the standby in a local inventory: its forwarding check is ``check`` (the lab
    runs the watchdog's real --check-peer; here no host forwards anything)."""
    hosts = tmp_path / "hosts"
    hosts.write_text(f"[role_nat]\nnat-instance-standby ansible_connection=local "
                     f"ansible_python_interpreter={sys.executable} instance_id={standby_id}\n")
    return run_playbook("playbooks/nat_failback.yml", "-i", str(hosts), "-e",
                        json.dumps({"nat_failback_check_argv": check, "nat_failback_become": False}), env=stack.env)


def test_failback_refuses_an_unhealthy_nat_instance_then_fails_back_once(stack, tmp_path):
    ec2 = stack.client("ec2")
    nats = nat_instances(ec2)
    active, standby = nats["nat-instance"]["InstanceId"], nats["nat-instance-standby"]["InstanceId"]
    table = tables(ec2, nats["nat-instance"]["VpcId"])["fumidai-private-subnet-2"]
    ec2.replace_route(RouteTableId=table, DestinationCidrBlock="0.0.0.0/0", InstanceId=standby)  # the watchdog
    # The NAT instance does not forward (the standby's probe through it fails): refused, route unchanged.
    proc = failback(stack, tmp_path, standby, ["sh", "-c", "echo no answer through it; exit 1"])
    assert proc.returncode != 0 and "does not forward" in proc.stdout and "Nothing was changed" in proc.stdout
    assert default_target(ec2, table) == standby
    # The target is unreachable directly too: cannot tell, refused.
    proc = failback(stack, tmp_path, standby, ["sh", "-c", "exit 2"])
    assert proc.returncode != 0 and "cannot be told" in proc.stdout and default_target(ec2, table) == standby
    # The NAT instance is stopped: refused (the run stops there), route unchanged.
    ec2.stop_instances(InstanceIds=[active])
    ec2.get_waiter("instance_stopped").wait(InstanceIds=[active], WaiterConfig={"Delay": 1, "MaxAttempts": 30})
    proc = failback(stack, tmp_path, standby, ["true"])
    assert proc.returncode != 0 and "is stopped" in proc.stdout and default_target(ec2, table) == standby
    ec2.start_instances(InstanceIds=[active])
    ec2.get_waiter("instance_running").wait(InstanceIds=[active], WaiterConfig={"Delay": 1, "MaxAttempts": 30})

    # Healthy and forwarding: the route goes back, and a second run has nothing to do.
    proc = failback(stack, tmp_path, standby, ["true"])
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert default_target(ec2, table) == active
    proc = failback(stack, tmp_path, standby, ["true"])
    assert proc.returncode == 0 and "nothing to do" in proc.stdout and changed_zero(proc)


# --------------------------------------------------------------------------- teardown (last)
def test_teardown_removes_the_standby_its_profile_and_role(stack):
    ec2, iam = stack.client("ec2"), stack.client("iam")
    check = run_playbook("playbooks/teardown.yml", "--check", env=stack.env)
    said = " ".join(check.stdout.split())  # the callback wraps long messages
    assert check.returncode == 0 and "Teardown would delete the standby NAT watchdog's instance profile and IAM role " \
        f"(with its inline policy) {ROLE}" in said, check.stdout[-3000:]
    assert iam.get_role(RoleName=ROLE)  # check mode deleted nothing
    named = [{"Name": "tag:Name", "Values": ["fumidai-public-standby"]}]
    assert len(ec2.describe_route_tables(Filters=named)["RouteTables"]) == 1  # positive control, before
    proc = run_playbook("playbooks/teardown.yml", env=stack.env)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert nat_instances(ec2) == {}
    assert ec2.describe_route_tables(Filters=named)["RouteTables"] == []
    for call in (lambda: iam.get_role(RoleName=ROLE), lambda: iam.get_instance_profile(InstanceProfileName=ROLE)):
        assert _error(call) == "NoSuchEntity"
    again = run_playbook("playbooks/teardown.yml", env=stack.env)
    assert again.returncode == 0 and changed_zero(again)
