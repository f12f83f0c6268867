"""Build fumidai's two-tier VPC in moto with boto3 directly.

The doctor and audit tests need the project's topology without depending on
playbooks/provision.yml; this builds the same shape (names, tags, roles,
routes, security groups, ALB) so the tests can then break one thing at a time.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import boto3

PROJECT_TAG = {"Key": "Project", "Value": "fumidai"}
ADMIN_CIDR = "192.0.2.0/24"      # TEST-NET-1: documentation range, never contacted
REGION = "ap-northeast-1"


def _tags(name: str, **extra: str) -> list[dict]:
    tags = [PROJECT_TAG, {"Key": "Name", "Value": name}]
    tags += [{"Key": key, "Value": value} for key, value in extra.items()]
    return tags


def _spec(resource_type: str, name: str, **extra: str) -> list[dict]:
    return [{"ResourceType": resource_type, "Tags": _tags(name, **extra)}]


@dataclass
class Topology:
    """Ids of what was built, for the tests to break things by name."""

    vpc_id: str = ""
    igw_id: str = ""
    subnets: dict[str, str] = field(default_factory=dict)       # Name -> subnet id
    route_tables: dict[str, str] = field(default_factory=dict)  # public | private-1 | private-2 -> rtb id
    sgs: dict[str, str] = field(default_factory=dict)           # alb | bastion | web | nat -> sg id
    instances: dict[str, str] = field(default_factory=dict)     # Name -> instance id
    nat_gateway_id: str = ""
    nacl_id: str = ""
    alb_arn: str = ""
    tg_arn: str = ""
    listener_arn: str = ""


def build(region: str = REGION) -> Topology:
    ec2 = boto3.client("ec2", region_name=region)
    elbv2 = boto3.client("elbv2", region_name=region)
    topo = Topology()

    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16", TagSpecifications=_spec("vpc", "fumidai-vpc"))["Vpc"]
    topo.vpc_id = vpc["VpcId"]
    igw = ec2.create_internet_gateway(TagSpecifications=_spec("internet-gateway", "fumidai-igw"))
    topo.igw_id = igw["InternetGateway"]["InternetGatewayId"]
    ec2.attach_internet_gateway(InternetGatewayId=topo.igw_id, VpcId=topo.vpc_id)

    for name, cidr, zone in (("public-subnet-1", "10.0.1.0/24", "a"), ("public-subnet-2", "10.0.2.0/24", "c"),
                             ("private-subnet-1", "10.0.11.0/24", "a"), ("private-subnet-2", "10.0.12.0/24", "c")):
        subnet = ec2.create_subnet(VpcId=topo.vpc_id, CidrBlock=cidr, AvailabilityZone=f"{region}{zone}",
                                   TagSpecifications=_spec("subnet", name))["Subnet"]
        topo.subnets[name] = subnet["SubnetId"]

    public_rt = ec2.create_route_table(VpcId=topo.vpc_id,
                                       TagSpecifications=_spec("route-table", "fumidai-public"))["RouteTable"]
    topo.route_tables["public"] = public_rt["RouteTableId"]
    ec2.create_route(RouteTableId=public_rt["RouteTableId"], DestinationCidrBlock="0.0.0.0/0",
                     GatewayId=topo.igw_id)
    for name in ("public-subnet-1", "public-subnet-2"):
        ec2.associate_route_table(RouteTableId=public_rt["RouteTableId"], SubnetId=topo.subnets[name])

    nacls = ec2.describe_network_acls(Filters=[{"Name": "vpc-id", "Values": [topo.vpc_id]},
                                               {"Name": "default", "Values": ["true"]}])
    topo.nacl_id = nacls["NetworkAcls"][0]["NetworkAclId"]

    def security_group(key: str, name: str, description: str) -> str:
        group_id = ec2.create_security_group(GroupName=name, Description=description, VpcId=topo.vpc_id,
                                             TagSpecifications=_spec("security-group", name))["GroupId"]
        topo.sgs[key] = group_id
        return group_id

    alb_sg = security_group("alb", "fumidai-alb", "ALB: HTTP from the internet")
    bastion_sg = security_group("bastion", "fumidai-bastion", "Bastion: SSH from the admins")
    web_sg = security_group("web", "fumidai-web", "Web: HTTP from the ALB, SSH from the bastion")
    nat_sg = security_group("nat", "fumidai-nat", "NAT instance: traffic from the private subnet")
    ec2.authorize_security_group_ingress(GroupId=alb_sg, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
    ec2.authorize_security_group_ingress(GroupId=bastion_sg, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": ADMIN_CIDR}]}])
    ec2.authorize_security_group_ingress(GroupId=web_sg, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80, "UserIdGroupPairs": [{"GroupId": alb_sg}]},
        {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "UserIdGroupPairs": [{"GroupId": bastion_sg}]}])
    ec2.authorize_security_group_ingress(GroupId=nat_sg, IpPermissions=[
        {"IpProtocol": "-1", "IpRanges": [{"CidrIp": "10.0.12.0/24"}]},
        {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "UserIdGroupPairs": [{"GroupId": bastion_sg}]}])

    image_id = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    # moto omits SnapshotId for a volume not made from a snapshot (AWS returns ""),
    # and amazon.aws.ec2_vol_info then fails with KeyError 'snapshot_id': give
    # every root volume a snapshot, and drop the seed volume.
    seed = ec2.create_volume(Size=8, AvailabilityZone=f"{region}a")["VolumeId"]
    root_snapshot = ec2.create_snapshot(VolumeId=seed)["SnapshotId"]
    ec2.delete_volume(VolumeId=seed)

    def instance(name: str, role: str, subnet: str, group: str, public: bool) -> str:
        reservation = ec2.run_instances(
            ImageId=image_id, InstanceType="t3.micro", MinCount=1, MaxCount=1,
            NetworkInterfaces=[{"DeviceIndex": 0, "SubnetId": topo.subnets[subnet], "Groups": [group],
                                "AssociatePublicIpAddress": public}],
            MetadataOptions={"HttpTokens": "required", "HttpEndpoint": "enabled"},
            BlockDeviceMappings=[{"DeviceName": "/dev/xvda", "Ebs": {"VolumeSize": 8, "Encrypted": True,
                                                                   "SnapshotId": root_snapshot}}],
            TagSpecifications=_spec("instance", name, Role=role))
        instance_id = reservation["Instances"][0]["InstanceId"]
        topo.instances[name] = instance_id
        return instance_id

    instance("bastion", "bastion", "public-subnet-1", bastion_sg, public=True)
    nat_instance = instance("nat-instance", "nat", "public-subnet-2", nat_sg, public=True)
    ec2.modify_instance_attribute(InstanceId=nat_instance, SourceDestCheck={"Value": False})
    instance("web01", "web", "private-subnet-1", web_sg, public=False)
    instance("web02", "web", "private-subnet-2", web_sg, public=False)

    allocation = ec2.allocate_address(Domain="vpc", TagSpecifications=_spec("elastic-ip", "fumidai-nat-eip"))
    topo.nat_gateway_id = ec2.create_nat_gateway(
        SubnetId=topo.subnets["public-subnet-1"], AllocationId=allocation["AllocationId"],
        TagSpecifications=_spec("natgateway", "fumidai-nat-gateway"))["NatGateway"]["NatGatewayId"]

    for key, subnet, target in (("private-1", "private-subnet-1", {"NatGatewayId": topo.nat_gateway_id}),
                                ("private-2", "private-subnet-2", {"InstanceId": nat_instance})):
        table = ec2.create_route_table(VpcId=topo.vpc_id,
                                       TagSpecifications=_spec("route-table", f"fumidai-{key}"))["RouteTable"]
        topo.route_tables[key] = table["RouteTableId"]
        ec2.create_route(RouteTableId=table["RouteTableId"], DestinationCidrBlock="0.0.0.0/0", **target)
        ec2.associate_route_table(RouteTableId=table["RouteTableId"], SubnetId=topo.subnets[subnet])

    alb = elbv2.create_load_balancer(
        Name="fumidai-alb", Scheme="internet-facing", Type="application",
        Subnets=[topo.subnets["public-subnet-1"], topo.subnets["public-subnet-2"]], SecurityGroups=[alb_sg],
        Tags=_tags("fumidai-alb"))["LoadBalancers"][0]
    topo.alb_arn = alb["LoadBalancerArn"]
    tg = elbv2.create_target_group(Name="fumidai-web", Protocol="HTTP", Port=80, VpcId=topo.vpc_id,
                                   TargetType="instance", HealthCheckPath="/healthz",
                                   Tags=_tags("fumidai-web"))["TargetGroups"][0]
    topo.tg_arn = tg["TargetGroupArn"]
    elbv2.register_targets(TargetGroupArn=topo.tg_arn,
                           Targets=[{"Id": topo.instances["web01"], "Port": 80},
                                    {"Id": topo.instances["web02"], "Port": 80}])
    topo.listener_arn = elbv2.create_listener(
        LoadBalancerArn=topo.alb_arn, Protocol="HTTP", Port=80,
        DefaultActions=[{"Type": "forward", "TargetGroupArn": topo.tg_arn}])["Listeners"][0]["ListenerArn"]
    return topo
