"""playbooks/provision.yml against a moto server: the real ansible-playbook,
asserted with boto3. One provisioned state (two runs: create, then a second
run that must change nothing) is shared by every test in this module, and by the
other tests that look at what provisioning leaves (tests/integration/provisioned.py)."""

from __future__ import annotations

import re
import subprocess

import pytest
import yaml

from tests.support.aws_plans import ADMIN_CIDR, ADMIN_CIDR_V6

REGION = "ap-northeast-1"
PROJECT = {"Key": "Project", "Value": "fumidai"}
VPC_CIDR = "10.0.0.0/16"
# The default design from inventory/group_vars/all/network.yml.
SUBNETS = {
    "public-subnet-1": ("10.0.1.0/24", f"{REGION}a"),
    "public-subnet-2": ("10.0.2.0/24", f"{REGION}c"),
    "private-subnet-1": ("10.0.11.0/24", f"{REGION}a"),
    "private-subnet-2": ("10.0.12.0/24", f"{REGION}c"),
}
INSTANCES = {  # Name: (Role, subnet Name)
    "bastion": ("bastion", "public-subnet-1"),
    "nat-instance": ("nat", "public-subnet-2"),
    "web01": ("web", "private-subnet-1"),
    "web02": ("web", "private-subnet-2"),
}
NEWEST_DEBIAN_AMI = "ami-0a1b2c3d4e5f60718"  # lab/moto_amis.json: newest debian-12-amd64-*
PROJECT_FILTER = [{"Name": "tag:Project", "Values": ["fumidai"]}]
RECAP = re.compile(r"^localhost\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)


# --- helpers ---------------------------------------------------------------

def recap(proc: subprocess.CompletedProcess) -> dict[str, int]:
    match = RECAP.search(proc.stdout)
    assert match, f"no PLAY RECAP for localhost:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return dict(zip(("ok", "changed", "unreachable", "failed"), map(int, match.groups()), strict=True))


def tags(resource: dict) -> dict:
    return {t["Key"]: t["Value"] for t in resource.get("Tags") or []}


# --- the provisioned state --------------------------------------------------

@pytest.fixture(scope="module")
def state(provisioned_stack):
    """The shared provisioned stack (tests/integration/provisioned.py): both runs and the clients."""
    stack = provisioned_stack
    return {"first": stack.first, "second": stack.second_run(), "outputs": stack.outputs, "pub": stack.pub,
            "ec2": stack.client("ec2"), "elbv2": stack.client("elbv2")}


@pytest.fixture(scope="module")
def ec2(state):
    return state["ec2"]


@pytest.fixture(scope="module")
def vpc(ec2):
    vpcs = ec2.describe_vpcs(Filters=PROJECT_FILTER)["Vpcs"]
    assert len(vpcs) == 1
    return vpcs[0]


@pytest.fixture(scope="module")
def subnets(ec2, vpc):
    found = ec2.describe_subnets(Filters=PROJECT_FILTER)["Subnets"]
    return {tags(s)["Name"]: s for s in found}


@pytest.fixture(scope="module")
def instances(ec2):
    reservations = ec2.describe_instances(
        Filters=PROJECT_FILTER + [{"Name": "instance-state-name", "Values": ["pending", "running"]}])["Reservations"]
    found = [i for r in reservations for i in r["Instances"]]
    by_name = {tags(i)["Name"]: i for i in found}
    assert len(by_name) == len(found), "two instances share a Name"
    return by_name


@pytest.fixture(scope="module")
def groups(ec2, vpc):
    found = ec2.describe_security_groups(Filters=PROJECT_FILTER)["SecurityGroups"]
    return {g["GroupName"]: g for g in found}


@pytest.fixture(scope="module")
def route_tables(ec2):
    found = ec2.describe_route_tables(Filters=PROJECT_FILTER)["RouteTables"]
    return {tags(t)["Name"]: t for t in found}


@pytest.fixture(scope="module")
def eips(ec2):
    return {tags(a)["Name"]: a for a in ec2.describe_addresses(Filters=PROJECT_FILTER)["Addresses"]}


@pytest.fixture(scope="module")
def alb(state):
    lbs = [lb for lb in state["elbv2"].describe_load_balancers()["LoadBalancers"]
           if lb["LoadBalancerName"] == "fumidai-alb"]
    assert len(lbs) == 1
    return lbs[0]


@pytest.fixture(scope="module")
def target_group(state):
    tgs = state["elbv2"].describe_target_groups(Names=["fumidai-web"])["TargetGroups"]
    assert len(tgs) == 1
    return tgs[0]


# --- runs ---------------------------------------------------------------------

def test_first_run_creates_and_second_run_changes_nothing(state):
    first, second = recap(state["first"]), recap(state["second"])
    assert first["failed"] == 0 and first["changed"] > 0
    assert second == {**second, "changed": 0, "failed": 0, "unreachable": 0}, state["second"].stdout[-4000:]


def test_image_is_the_newest_debian_12(state, instances):
    assert {i["ImageId"] for i in instances.values()} == {NEWEST_DEBIAN_AMI}


# --- network ------------------------------------------------------------------

def test_vpc_cidr_dns_and_tags(ec2, vpc):
    assert vpc["CidrBlock"] == VPC_CIDR
    assert tags(vpc) == {"Project": "fumidai", "Name": "fumidai-vpc"}
    for attribute, key in (("enableDnsSupport", "EnableDnsSupport"), ("enableDnsHostnames", "EnableDnsHostnames")):
        assert ec2.describe_vpc_attribute(VpcId=vpc["VpcId"], Attribute=attribute)[key]["Value"] is True


def test_four_subnets_with_cidr_az_and_no_auto_public_ip(vpc, subnets):
    assert set(subnets) == set(SUBNETS)
    for name, (cidr, zone) in SUBNETS.items():
        subnet = subnets[name]
        assert (subnet["VpcId"], subnet["CidrBlock"], subnet["AvailabilityZone"]) == (vpc["VpcId"], cidr, zone)
        assert subnet["MapPublicIpOnLaunch"] is False
        assert tags(subnet)["Project"] == "fumidai"


def test_internet_gateway_attached_and_tagged(ec2, vpc):
    igws = ec2.describe_internet_gateways(Filters=PROJECT_FILTER)["InternetGateways"]
    assert len(igws) == 1
    assert [a["VpcId"] for a in igws[0]["Attachments"]] == [vpc["VpcId"]]
    assert tags(igws[0]) == {"Project": "fumidai", "Name": "fumidai-igw"}


def test_nat_gateway_in_public_subnet_1_with_tagged_eip(ec2, subnets, eips):
    gateways = ec2.describe_nat_gateways(Filters=PROJECT_FILTER)["NatGateways"]
    assert len(gateways) == 1
    gateway = gateways[0]
    assert gateway["SubnetId"] == subnets["public-subnet-1"]["SubnetId"]
    assert gateway["State"] == "available"
    assert tags(gateway) == {"Project": "fumidai", "Name": "fumidai-nat-gateway"}
    allocations = [a["AllocationId"] for a in gateway["NatGatewayAddresses"]]
    assert allocations == [eips["fumidai-nat-gateway-eip"]["AllocationId"]]


def test_exactly_two_eips_bastion_one_associated(eips, instances):
    assert set(eips) == {"fumidai-nat-gateway-eip", "fumidai-bastion-eip"}
    assert eips["fumidai-bastion-eip"]["InstanceId"] == instances["bastion"]["InstanceId"]
    assert instances["bastion"]["PublicIpAddress"] == eips["fumidai-bastion-eip"]["PublicIp"]


def default_route(table: dict) -> dict:
    routes = [r for r in table["Routes"] if r.get("DestinationCidrBlock") == "0.0.0.0/0"]
    assert len(routes) == 1, table["Routes"]
    return routes[0]


def associated_subnets(table: dict) -> set[str]:
    return {a["SubnetId"] for a in table["Associations"] if a.get("SubnetId")}


def test_public_route_table_to_internet_gateway(ec2, route_tables, subnets):
    table = route_tables["fumidai-public"]
    igw = ec2.describe_internet_gateways(Filters=PROJECT_FILTER)["InternetGateways"][0]["InternetGatewayId"]
    assert default_route(table)["GatewayId"] == igw
    assert associated_subnets(table) == {subnets["public-subnet-1"]["SubnetId"], subnets["public-subnet-2"]["SubnetId"]}


def test_private_subnet_1_routes_through_nat_gateway(ec2, route_tables, subnets):
    table = route_tables["fumidai-private-subnet-1"]
    gateway = ec2.describe_nat_gateways(Filters=PROJECT_FILTER)["NatGateways"][0]["NatGatewayId"]
    assert default_route(table)["NatGatewayId"] == gateway
    assert associated_subnets(table) == {subnets["private-subnet-1"]["SubnetId"]}


def test_private_subnet_2_routes_through_nat_instance(route_tables, subnets, instances):
    table = route_tables["fumidai-private-subnet-2"]
    assert default_route(table)["InstanceId"] == instances["nat-instance"]["InstanceId"]
    assert associated_subnets(table) == {subnets["private-subnet-2"]["SubnetId"]}


def test_only_the_three_route_tables(route_tables):
    assert set(route_tables) == {"fumidai-public", "fumidai-private-subnet-1", "fumidai-private-subnet-2"}


# --- security groups ----------------------------------------------------------

def ingress(group: dict, key: str = "IpPermissions") -> set[tuple]:
    """Each ingress permission as (protocol, from, to, source) with source a CIDR or a group ID."""
    rules = set()
    for perm in group[key]:
        key = (perm["IpProtocol"], perm.get("FromPort"), perm.get("ToPort"))
        rules |= {(*key, r["CidrIp"]) for r in perm.get("IpRanges", [])}
        rules |= {(*key, r["CidrIpv6"]) for r in perm.get("Ipv6Ranges", [])}
        rules |= {(*key, p["GroupId"]) for p in perm.get("UserIdGroupPairs", [])}
        rules |= {(*key, p["PrefixListId"]) for p in perm.get("PrefixListIds", [])}
    return rules


def egress(group: dict) -> set[tuple]:
    """Each egress permission as (protocol, from, to, destination)."""
    return ingress(group, "IpPermissionsEgress")


def test_security_groups_are_the_four_tiers(groups, vpc):
    assert set(groups) == {"fumidai-bastion", "fumidai-alb", "fumidai-web", "fumidai-nat"}
    for name, group in groups.items():
        assert group["VpcId"] == vpc["VpcId"]
        assert tags(group) == {"Project": "fumidai", "Name": name}


def test_bastion_allows_ssh_from_admin_cidrs_only(groups):
    # An IPv4 and an IPv6 admin range: a cidr_ip and a cidr_ipv6 rule.
    assert ingress(groups["fumidai-bastion"]) == {("tcp", 22, 22, ADMIN_CIDR), ("tcp", 22, 22, ADMIN_CIDR_V6)}


def test_alb_allows_http_from_internet_only(groups):
    # No certificate given: no 443.
    assert ingress(groups["fumidai-alb"]) == {("tcp", 80, 80, "0.0.0.0/0")}


def test_web_allows_http_from_alb_and_ssh_from_bastion_by_reference(groups):
    assert ingress(groups["fumidai-web"]) == {
        ("tcp", 80, 80, groups["fumidai-alb"]["GroupId"]),
        ("tcp", 22, 22, groups["fumidai-bastion"]["GroupId"]),
    }


def test_nat_admits_the_forward_ports_from_its_private_subnet_and_ssh_only_from_bastion(groups):
    # Only private-subnet-2 routes through the NAT instance (private-subnet-1 uses the NAT gateway), and
    # nothing from it may reach the NAT instance's own sshd.
    assert ingress(groups["fumidai-nat"]) == {
        ("tcp", 80, 80, "10.0.12.0/24"), ("tcp", 443, 443, "10.0.12.0/24"), ("icmp", -1, -1, "10.0.12.0/24"),
        ("tcp", 22, 22, groups["fumidai-bastion"]["GroupId"]),
    }


def test_nat_sends_only_what_it_forwards_and_its_updates(groups):
    assert egress(groups["fumidai-nat"]) == {
        ("tcp", 80, 80, "0.0.0.0/0"), ("tcp", 443, 443, "0.0.0.0/0"), ("icmp", -1, -1, "0.0.0.0/0")}


def test_bastion_sends_only_ssh_into_the_vpc_and_updates(groups):
    assert egress(groups["fumidai-bastion"]) == {
        ("tcp", 22, 22, VPC_CIDR), ("tcp", 80, 80, "0.0.0.0/0"), ("tcp", 443, 443, "0.0.0.0/0")}


def test_alb_sends_only_to_the_web_group_on_the_web_port(groups):
    assert egress(groups["fumidai-alb"]) == {("tcp", 80, 80, groups["fumidai-web"]["GroupId"])}


def test_web_sends_only_the_forward_ports_and_icmp(groups):
    assert egress(groups["fumidai-web"]) == {
        ("tcp", 80, 80, "0.0.0.0/0"), ("tcp", 443, 443, "0.0.0.0/0"), ("icmp", -1, -1, "0.0.0.0/0")}


def test_no_group_keeps_the_aws_default_all_out(groups):
    assert all(("-1", None, None, "0.0.0.0/0") not in egress(group) for group in groups.values())


# --- instances ----------------------------------------------------------------

def test_four_instances_with_name_role_project_tags(instances):
    assert set(instances) == set(INSTANCES)
    for name, (role, _subnet) in INSTANCES.items():
        assert tags(instances[name]) == {"Name": name, "Role": role, "Project": "fumidai"}


def test_instances_in_their_subnets_with_their_groups_and_key(instances, subnets, groups):
    group_of = {"bastion": "fumidai-bastion", "nat": "fumidai-nat", "web": "fumidai-web"}
    for name, (role, subnet) in INSTANCES.items():
        instance = instances[name]
        assert instance["SubnetId"] == subnets[subnet]["SubnetId"]
        assert [g["GroupId"] for g in instance["SecurityGroups"]] == [groups[group_of[role]]["GroupId"]]
        assert instance["KeyName"] == "fumidai"
        assert instance["InstanceType"] == "t3.micro"


def test_imdsv2_required_everywhere(instances):
    for instance in instances.values():
        assert instance["MetadataOptions"]["HttpTokens"] == "required"
        assert instance["MetadataOptions"]["HttpEndpoint"] == "enabled"


def test_root_volumes_encrypted(ec2, instances):
    for name, instance in instances.items():
        volume_ids = [m["Ebs"]["VolumeId"] for m in instance["BlockDeviceMappings"]]
        assert volume_ids, name
        for volume in ec2.describe_volumes(VolumeIds=volume_ids)["Volumes"]:
            assert volume["Encrypted"] is True, name


def test_private_hosts_have_no_public_ip(instances):
    for name in ("web01", "web02"):
        assert not instances[name].get("PublicIpAddress"), name


def test_nat_instance_source_dest_check_off_and_public_ip(ec2, instances):
    nat = instances["nat-instance"]
    attribute = ec2.describe_instance_attribute(InstanceId=nat["InstanceId"], Attribute="sourceDestCheck")
    assert attribute["SourceDestCheck"]["Value"] is False
    assert nat.get("PublicIpAddress")
    bastion = ec2.describe_instance_attribute(InstanceId=instances["bastion"]["InstanceId"],
                                              Attribute="sourceDestCheck")
    assert bastion["SourceDestCheck"]["Value"] is True


def test_key_pair_imported_from_the_public_key(ec2, state):
    """Only FUMIDAI_SSH_PRIVATE_KEY was given (the one key setting): its .pub is the key pair."""
    pairs = ec2.describe_key_pairs(Filters=PROJECT_FILTER)["KeyPairs"]
    assert [p["KeyName"] for p in pairs] == ["fumidai"]
    material = ec2.describe_key_pairs(KeyNames=["fumidai"], IncludePublicKey=True)["KeyPairs"][0]["PublicKey"]
    assert material.split()[:2] == state["pub"].read_text().split()[:2]


# --- load balancer ------------------------------------------------------------

def test_alb_internet_facing_across_both_public_subnets(alb, subnets, groups):
    assert alb["Scheme"] == "internet-facing"
    assert alb["Type"] == "application"
    assert {z["SubnetId"] for z in alb["AvailabilityZones"]} == {
        subnets["public-subnet-1"]["SubnetId"], subnets["public-subnet-2"]["SubnetId"]}
    assert alb["SecurityGroups"] == [groups["fumidai-alb"]["GroupId"]]


def test_alb_drops_invalid_headers_without_deletion_protection_or_access_logs(state, alb):
    attributes = state["elbv2"].describe_load_balancer_attributes(LoadBalancerArn=alb["LoadBalancerArn"])
    values = {a["Key"]: a["Value"] for a in attributes["Attributes"]}
    assert values["routing.http.drop_invalid_header_fields.enabled"] == "true"
    assert values["deletion_protection.enabled"] == "false"
    assert (values["access_logs.s3.enabled"], values["access_logs.s3.bucket"]) == ("false", "")


def test_alb_tagged(state, alb):
    described = state["elbv2"].describe_tags(ResourceArns=[alb["LoadBalancerArn"]])["TagDescriptions"][0]
    assert tags(described) == {"Project": "fumidai", "Name": "fumidai-alb"}


def test_http_listener_forwards_to_target_group(state, alb, target_group):
    listeners = state["elbv2"].describe_listeners(LoadBalancerArn=alb["LoadBalancerArn"])["Listeners"]
    assert [(lst["Protocol"], lst["Port"]) for lst in listeners] == [("HTTP", 80)]
    actions = listeners[0]["DefaultActions"]
    assert [(a["Type"], a["TargetGroupArn"]) for a in actions] == [("forward", target_group["TargetGroupArn"])]


def test_target_group_health_check(target_group, vpc):
    assert (target_group["Protocol"], target_group["Port"], target_group["VpcId"]) == ("HTTP", 80, vpc["VpcId"])
    assert target_group["HealthCheckPath"] == "/healthz"
    assert target_group["HealthCheckProtocol"] == "HTTP"
    assert target_group["TargetType"] == "instance"


def test_web_instances_registered_as_targets(state, target_group, instances):
    health = state["elbv2"].describe_target_health(TargetGroupArn=target_group["TargetGroupArn"])
    registered = {(d["Target"]["Id"], d["Target"]["Port"]) for d in health["TargetHealthDescriptions"]}
    assert registered == {(instances["web01"]["InstanceId"], 80), (instances["web02"]["InstanceId"], 80)}


def test_target_group_tagged(state, target_group):
    described = state["elbv2"].describe_tags(ResourceArns=[target_group["TargetGroupArn"]])["TagDescriptions"][0]
    assert tags(described) == {"Project": "fumidai", "Name": "fumidai-web"}


# --- outputs ------------------------------------------------------------------

def test_outputs_file_matches_what_exists(state, instances, alb, eips, vpc, subnets):
    outputs = yaml.safe_load(state["outputs"].read_text())
    assert outputs["bastion"] == {
        "instance_id": instances["bastion"]["InstanceId"],
        "public_ip": eips["fumidai-bastion-eip"]["PublicIp"],
        "private_ip": instances["bastion"]["PrivateIpAddress"],
    }
    assert outputs["alb"]["dns_name"] == alb["DNSName"]
    assert outputs["nat_instance"]["instance_id"] == instances["nat-instance"]["InstanceId"]
    assert {w["name"]: (w["instance_id"], w["private_ip"]) for w in outputs["web"]} == {
        name: (instances[name]["InstanceId"], instances[name]["PrivateIpAddress"]) for name in ("web01", "web02")}
    assert outputs["vpc_id"] == vpc["VpcId"]
    assert outputs["subnet_ids"] == {name: s["SubnetId"] for name, s in subnets.items()}
    assert outputs["ssh_user"] == "admin"
    # Only with nat_instance_standby (tests/integration/test_nat_standby.py): the default outputs are unchanged.
    assert "nat_instance_standby" not in outputs and "nat_instance_active" not in outputs


def test_outputs_printed(state):
    assert "dns_name: fumidai-alb" in state["second"].stdout
    assert str(state["outputs"]) in state["second"].stdout
