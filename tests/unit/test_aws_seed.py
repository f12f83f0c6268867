"""tests/support/aws_seed.py in in-process moto: the project's VPC as provisioning builds it (names, tags, routes,
security groups, instances, images per OS, ALB), hosts at chosen addresses, and the benchmark's fleet."""

from __future__ import annotations

import os

import pytest

from tests.support.aws_seed import ADMIN_CIDR, AwsSeed, HostPlan, fleet_plans, in_process, lab_plan


@pytest.fixture
def seed():
    with in_process() as seeder:
        yield seeder


def tags(resource: dict) -> dict:
    return {t["Key"]: t["Value"] for t in resource.get("Tags", [])}


def rules(group: dict, egress: bool = False) -> set[tuple]:
    """(protocol, from, to, peer, description) per peer, peers as CIDRs or group names."""
    found = set()
    for perm in group["IpPermissionsEgress" if egress else "IpPermissions"]:
        ports = (perm["IpProtocol"], perm.get("FromPort"), perm.get("ToPort"))
        found |= {(*ports, r["CidrIp"], r.get("Description")) for r in perm.get("IpRanges", [])}
        found |= {(*ports, r["CidrIpv6"], r.get("Description")) for r in perm.get("Ipv6Ranges", [])}
        found |= {(*ports, r["GroupId"], r.get("Description")) for r in perm.get("UserIdGroupPairs", [])}
    return found


def test_project_is_what_provisioning_builds(seed):
    stack = seed.project()
    ec2 = seed.ec2
    vpc = ec2.describe_vpcs(VpcIds=[stack.vpc_id])["Vpcs"][0]
    assert vpc["CidrBlock"] == "10.0.0.0/16" and tags(vpc) == {"Name": "fumidai-vpc", "Project": "fumidai"}
    subnets = {tags(s)["Name"]: s for s in ec2.describe_subnets(SubnetIds=list(stack.subnets.values()))["Subnets"]}
    assert {name: (s["CidrBlock"], s["AvailabilityZone"], tags(s)["Tier"]) for name, s in subnets.items()} == {
        "public-subnet-1": ("10.0.1.0/24", "ap-northeast-1a", "public"),
        "public-subnet-2": ("10.0.2.0/24", "ap-northeast-1c", "public"),
        "private-subnet-1": ("10.0.11.0/24", "ap-northeast-1a", "private"),
        "private-subnet-2": ("10.0.12.0/24", "ap-northeast-1c", "private")}
    igw = ec2.describe_internet_gateways(InternetGatewayIds=[stack.igw_id])["InternetGateways"][0]
    assert tags(igw)["Name"] == "fumidai-igw" and igw["Attachments"][0]["VpcId"] == stack.vpc_id

    # Routes: public -> IGW, private-subnet-1 -> the NAT gateway, private-subnet-2 -> the NAT instance.
    tables = {tags(t)["Name"]: t for t in ec2.describe_route_tables(RouteTableIds=list(stack.route_tables.values()))
              ["RouteTables"]}
    default = {name: next(r for r in t["Routes"] if r.get("DestinationCidrBlock") == "0.0.0.0/0")
               for name, t in tables.items()}
    assert default["fumidai-public"]["GatewayId"] == stack.igw_id
    assert default["fumidai-private-subnet-1"]["NatGatewayId"] == stack.nat_gateway_id
    assert default["fumidai-private-subnet-2"]["InstanceId"] == stack.instances["nat-instance"]
    assert {a["SubnetId"] for a in tables["fumidai-public"]["Associations"]} == {
        stack.subnets["public-subnet-1"], stack.subnets["public-subnet-2"]}
    nat_gw = ec2.describe_nat_gateways(NatGatewayIds=[stack.nat_gateway_id])["NatGateways"][0]
    assert nat_gw["SubnetId"] == stack.subnets["public-subnet-1"] and tags(nat_gw)["Name"] == "fumidai-nat-gateway"

    # Security groups: roles/aws_security_groups' rules, AWS's default all-out egress removed.
    groups = {tags(g)["Name"]: g for g in ec2.describe_security_groups(GroupIds=list(stack.sgs.values()))
              ["SecurityGroups"]}
    sg = stack.sgs
    world, forward = "0.0.0.0/0", {("tcp", 80, 80), ("tcp", 443, 443), ("icmp", -1, -1)}
    assert rules(groups["fumidai-bastion"]) == {("tcp", 22, 22, ADMIN_CIDR, "SSH from admin_cidrs")}
    assert rules(groups["fumidai-bastion"], egress=True) == {
        ("tcp", 22, 22, "10.0.0.0/16", "SSH into the VPC (the hop)"),
        ("tcp", 80, 80, world, "Package updates"), ("tcp", 443, 443, world, "Package updates")}
    assert rules(groups["fumidai-alb"]) == {("tcp", 80, 80, world, "Web traffic from the internet")}
    assert rules(groups["fumidai-alb"], egress=True) == {
        ("tcp", 80, 80, sg["web"], None)}  # (group references carry no description: see aws_seed._permission)
    assert rules(groups["fumidai-web"]) == {("tcp", 80, 80, sg["alb"], None), ("tcp", 22, 22, sg["bastion"], None)}
    assert rules(groups["fumidai-web"], egress=True) == {
        (*p, world, "To the internet through the NAT") for p in forward}
    assert rules(groups["fumidai-nat"]) == {(*p, "10.0.12.0/24", "Forwarded from a private subnet") for p in forward} \
        | {("tcp", 22, 22, sg["bastion"], None)}
    assert rules(groups["fumidai-nat"], egress=True) == {
        (*p, world, "Forwarded traffic and updates to the internet") for p in forward}

    # Instances: tags, tiers, groups, IMDSv2, encrypted root, key pair, the Debian image.
    image = seed.image()
    assert image["Name"].startswith("debian-12-amd64-") and image["OwnerId"] == "136693071363"
    found = {tags(i)["Name"]: i for r in ec2.describe_instances(InstanceIds=list(stack.instances.values()))
             ["Reservations"] for i in r["Instances"]}
    expected = {"bastion": ("bastion", "public-subnet-1", "bastion"), "nat-instance": ("nat", "public-subnet-2", "nat"),
                "web01": ("web", "private-subnet-1", "web"), "web02": ("web", "private-subnet-2", "web")}
    for name, (role, subnet, group) in expected.items():
        instance = found[name]
        assert tags(instance) == {"Name": name, "Project": "fumidai", "Role": role}
        assert instance["SubnetId"] == stack.subnets[subnet]
        # (moto lists an instance launched with NetworkInterfaces in no group; its interface has them.)
        assert [g["GroupId"] for g in instance["NetworkInterfaces"][0]["Groups"]] == [sg[group]]
        assert instance["MetadataOptions"]["HttpTokens"] == "required"
        assert instance["KeyName"] == "fumidai" and instance["ImageId"] == image["ImageId"] == seed.ami
        assert instance["InstanceType"] == "t3.micro"
        volume = ec2.describe_volumes(VolumeIds=[instance["BlockDeviceMappings"][0]["Ebs"]["VolumeId"]])["Volumes"][0]
        assert volume["Encrypted"] and volume["SnapshotId"]
        assert stack.hosts[name] == {"id": instance["InstanceId"], "private": instance["PrivateIpAddress"],
                                     "public": instance.get("PublicIpAddress"), "subnet": instance["SubnetId"],
                                     "image": image["ImageId"]}
    assert stack.hosts["web01"]["public"] is None and stack.hosts["nat-instance"]["public"]
    eip = ec2.describe_addresses(Filters=[{"Name": "tag:Name", "Values": ["fumidai-bastion-eip"]}])["Addresses"][0]
    assert eip["InstanceId"] == stack.instances["bastion"] and stack.hosts["bastion"]["public"] == eip["PublicIp"]
    source_dest = ec2.describe_instance_attribute(InstanceId=stack.instances["nat-instance"],
                                                  Attribute="sourceDestCheck")
    assert source_dest["SourceDestCheck"]["Value"] is False
    nacl = ec2.describe_network_acls(NetworkAclIds=[stack.nacl_id])["NetworkAcls"][0]
    assert nacl["IsDefault"] and nacl["VpcId"] == stack.vpc_id

    # The ALB over both public subnets, the web servers registered on port 80.
    elbv2 = seed.elbv2
    alb = elbv2.describe_load_balancers(LoadBalancerArns=[stack.alb_arn])["LoadBalancers"][0]
    assert alb["LoadBalancerName"] == "fumidai-alb" and alb["Scheme"] == "internet-facing"
    assert {z["SubnetId"] for z in alb["AvailabilityZones"]} == {
        stack.subnets["public-subnet-1"], stack.subnets["public-subnet-2"]}
    assert alb["SecurityGroups"] == [sg["alb"]]
    group = elbv2.describe_target_groups(TargetGroupArns=[stack.tg_arn])["TargetGroups"][0]
    assert group["TargetGroupName"] == "fumidai-web" and group["HealthCheckPath"] == "/healthz"
    targets = elbv2.describe_target_health(TargetGroupArn=stack.tg_arn)["TargetHealthDescriptions"]
    assert {(t["Target"]["Id"], t["Target"]["Port"]) for t in targets} == {
        (stack.instances["web01"], 80), (stack.instances["web02"], 80)}
    listener = elbv2.describe_listeners(ListenerArns=[stack.listener_arn])["Listeners"][0]
    assert listener["Port"] == 80 and listener["DefaultActions"][0]["TargetGroupArn"] == stack.tg_arn


def test_images_per_os(seed):
    stack = seed.project(ami_os="al2023")
    al2023 = seed.image("al2023")
    assert al2023["Name"].startswith("al2023-ami-2023.") and al2023["OwnerId"] == "137112412989"
    assert {host["image"] for host in stack.hosts.values()} == {al2023["ImageId"]}
    assert AwsSeed(seed.ec2, ami_os="al2023").ami == al2023["ImageId"] != seed.ami
    # One host of another OS: per host, as a mixed fleet would be.
    plan = lab_plan("10.9.1.10", ["10.9.2.11"], vpc_cidr="10.9.0.0/16", public_cidr="10.9.1.0/24",
                    private_cidr="10.9.2.0/24", vpc_name="mixed")
    plan.hosts[1] = HostPlan("web01", "web", "private-subnet-1", private_ip="10.9.2.11", ami_os="al2023")
    mixed = seed.build(plan)
    assert mixed.hosts["bastion"]["image"] == seed.ami and mixed.hosts["web01"]["image"] == al2023["ImageId"]
    single = seed.instance(mixed.hosts["web01"]["subnet"], "extra", "web", ami_os="al2023")
    assert single["image"] == al2023["ImageId"]


def test_two_projects_and_more_web_servers_side_by_side(seed):
    first = seed.project()
    second = seed.project("fumidai-dr", "10.1", "-dr", web_count=3)
    assert set(second.hosts) == {"bastion-dr", "nat-instance-dr", "web01-dr", "web02-dr", "web03-dr"}
    assert [second.hosts[f"web0{n}-dr"]["subnet"] for n in (1, 2, 3)] == [
        second.subnets["private-subnet-1"], second.subnets["private-subnet-2"], second.subnets["private-subnet-1"]]
    assert second.hosts["web01-dr"]["private"].startswith("10.1.11.")
    assert first.alb_arn != second.alb_arn and "fumidai-alb-dr" in second.alb_arn


def test_lab_plan_puts_hosts_at_the_callers_addresses(seed):
    targets = [f"10.88.221.{11 + n}" for n in range(3)]
    stack = seed.build(lab_plan("10.88.220.10", targets, vpc_cidr="10.88.0.0/16", public_cidr="10.88.220.0/24",
                                private_cidr="10.88.221.0/24"))
    assert {name: host["private"] for name, host in stack.hosts.items()} == {
        "bastion": "10.88.220.10", "web01": "10.88.221.11", "web02": "10.88.221.12", "web03": "10.88.221.13"}
    assert stack.hosts["web01"]["public"] is None
    # The private subnet is on the main table (local route only): no NAT, no ALB.
    assert set(stack.route_tables) == {"fumidai-public"} and not stack.nat_gateway_id and not stack.alb_arn
    main = seed.ec2.describe_route_tables(RouteTableIds=[seed.main_table(stack.vpc_id)])["RouteTables"][0]
    assert [r.get("DestinationCidrBlock") for r in main["Routes"]] == ["10.88.0.0/16"]


def test_fleet_plans_for_the_inventory_benchmark(seed):
    plans = fleet_plans(120)
    assert [p.name for p in plans] == ["bench-vpc-0", "bench-vpc-1"]
    assert all(len(p.subnets) == 20 and sum(s.tier == "public" for s in p.subnets) == 4 for p in plans)
    stacks = [seed.build(plan) for plan in plans]
    running = seed.ec2.describe_instances(Filters=[{"Name": "tag:Project", "Values": ["fumidai"]},
                                                   {"Name": "instance-state-name", "Values": ["running"]}])
    assert sum(len(r["Instances"]) for r in running["Reservations"]) == 120
    stopped = [h for p in plans for h in p.hosts if h.stopped]
    assert len(stopped) == 6
    assert {s.hosts["bastion-0"]["subnet"] for s in stacks[:1]} == {stacks[0].subnets["public-subnet-0-0"]}
    names = [name for stack in stacks for name in stack.hosts]
    assert len(names) == len(set(names)) == 126


def test_in_process_keeps_the_callers_endpoint_out(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_PROFILE", "someone")
    with in_process() as seeder:
        assert "AWS_ENDPOINT_URL" not in os.environ and "AWS_PROFILE" not in os.environ
        assert seeder.ec2.meta.region_name == "ap-northeast-1"
        assert [i["Name"] for i in seeder.ec2.describe_images(Owners=["136693071363", "137112412989"])["Images"]]
    assert os.environ["AWS_ENDPOINT_URL"] == "http://127.0.0.1:9"
