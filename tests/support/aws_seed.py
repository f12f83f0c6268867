"""The one seeder of the local AWS API: fumidai's VPC built with boto3 the way playbooks/provision.yml builds it.

Unit tests (in-process moto), integration tests (a moto server) and the benchmarks all seed through here. It takes
boto3 clients only, so it works against ``mock_aws`` and a server alike. The design is the project's own: CIDRs,
subnets and web servers from the settings role's defaults, the image lookup (owner, name) per OS from
plugins/module_utils/login.py, names, tags, routes, security groups, instances and the ALB as the aws_* roles
make them.

    seed = AwsSeed(ec2, elbv2)            # elbv2 is optional: without it there is no ALB
    stack = seed.project()                # provision's topology; ids by name in the Stack
    stack = seed.build(lab_plan(...))     # hosts at private IPs chosen by the caller (containers)
    for plan in fleet_plans(2000): seed.build(plan)

In-process moto has none of the project's images: enter ``project_images()`` before ``mock_aws()``.
The plans (what to build) are in tests/support/aws_plans.py; their names are importable from here too.
"""

from __future__ import annotations

import contextlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from unittest import mock

from botocore.exceptions import ClientError

from tests.support.aws_plans import (  # noqa: F401 - the plans are part of the seeder's API
    ADMIN_CIDR,
    BATCH,
    PROJECT,
    REGION,
    WORLD,
    HostPlan,
    SubnetPlan,
    VpcPlan,
    design,
    fleet_plans,
    forward,
    lab_plan,
    login,
    permission,
    project_plan,
    web_instances,
)

ROLE_GROUPS = {"bastion": "bastion", "nat": "nat", "web": "web"}  # an instance's role -> its security group


@contextlib.contextmanager
def project_images():
    """In-process moto with exactly the images the project's moto server carries (lab/moto_amis.json: Debian 12
    and Amazon Linux 2023 under their real owners), loaded in a blink instead of moto's ~1300 stock images.
    Enter it before ``mock_aws()`` (moto loads images when a region's backend is first used)."""
    from moto.ec2.models import amis

    from lab import moto_server

    path = moto_server.SEED_AMIS
    with mock.patch.object(amis, "AMIS", json.loads(path.read_text(encoding="utf-8"))), \
            mock.patch.dict(os.environ, {"MOTO_AMIS_PATH": str(path)}):
        yield


@contextlib.contextmanager
def in_process(region: str = REGION):
    """In-process moto as a unit test wants it: dummy credentials, no endpoint or profile from the caller's
    environment, the project's images; yields an AwsSeed with ec2 and elbv2 clients."""
    import boto3
    from moto import mock_aws

    outside = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_EC2", "AWS_ENDPOINT_URL_ELASTIC_LOAD_BALANCING_V2", "AWS_PROFILE",
               "AWS_SESSION_TOKEN")
    env = {k: v for k, v in os.environ.items() if k not in outside}
    env.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_REGION=region,
               AWS_DEFAULT_REGION=region)
    with mock.patch.dict(os.environ, env, clear=True), project_images(), mock_aws():
        yield AwsSeed(boto3.client("ec2", region_name=region), boto3.client("elbv2", region_name=region))


# --------------------------------------------------------------------------- what was built
@dataclass
class Stack:
    """Ids of one seeded VPC, by the names provisioning gives them (for tests to break things by name)."""

    name: str
    vpc_id: str
    igw_id: str = ""
    nacl_id: str = ""                  # the VPC's default network ACL (every subnet's)
    nat_gateway_id: str = ""
    subnets: dict[str, str] = field(default_factory=dict)       # Name -> subnet id
    route_tables: dict[str, str] = field(default_factory=dict)  # Name tag (fumidai-public, fumidai-<subnet>) -> id
    sgs: dict[str, str] = field(default_factory=dict)           # bastion | alb | web | nat -> group id
    hosts: dict[str, dict] = field(default_factory=dict)        # Name -> {id, private, public, subnet, image}
    alb_arn: str = ""
    tg_arn: str = ""
    listener_arn: str = ""

    @property
    def instances(self) -> dict[str, str]:
        """Name -> instance id."""
        return {name: host["id"] for name, host in self.hosts.items()}


def _host(instance: dict) -> dict:
    return {"id": instance["InstanceId"], "private": instance.get("PrivateIpAddress"),
            "public": instance.get("PublicIpAddress"), "subnet": instance.get("SubnetId"),
            "image": instance.get("ImageId")}


# --------------------------------------------------------------------------- the seeder
class AwsSeed:
    """Builds VPCs in the local AWS API with boto3, whole (``project``, ``build``) or piece by piece."""

    def __init__(self, ec2, elbv2=None, *, ami_os: str = "debian12"):
        self.ec2 = ec2
        self.elbv2 = elbv2
        self.region = ec2.meta.region_name
        self.ami_os = ami_os
        self._images: dict[str, dict] = {}
        self._snapshot = ""
        self._key_name = ""

    # ------------------------------------------------------------------ pieces
    @staticmethod
    def tags(name: str | None, project: str | None = PROJECT, **extra) -> list[dict]:
        tags = {"Name": name, "Project": project, **extra}
        return [{"Key": k, "Value": v} for k, v in tags.items() if v is not None]

    def spec(self, kind: str, name: str | None, project: str | None = PROJECT, **extra) -> list[dict]:
        return [{"ResourceType": kind, "Tags": self.tags(name, project, **extra)}]

    def image(self, ami_os: str | None = None) -> dict:
        """The newest x86_64 image of ``ami_os`` (default: the seeder's), found as provisioning finds it."""
        os_key = ami_os or self.ami_os
        if os_key not in self._images:
            lookup = login().image_lookup(os_key)
            found = self.ec2.describe_images(Owners=[lookup["owner"]], Filters=[
                {"Name": "name", "Values": [lookup["name"]]}, {"Name": "architecture", "Values": ["x86_64"]},
                {"Name": "state", "Values": ["available"]}])["Images"]
            if not found:
                raise LookupError(f"no {lookup['name']} image owned by {lookup['owner']} in {self.region}: "
                                  "in-process moto needs tests.support.aws_seed.project_images()")
            self._images[os_key] = max(found, key=lambda image: image["CreationDate"])
        return self._images[os_key]

    @property
    def ami(self) -> str:
        """The image id instances get by default."""
        return self.image()["ImageId"]

    def vpc(self, name: str | None, cidr: str) -> str:
        vpc_id = self.ec2.create_vpc(CidrBlock=cidr, TagSpecifications=self.spec("vpc", name))["Vpc"]["VpcId"]
        for attribute in ("EnableDnsSupport", "EnableDnsHostnames"):
            self.ec2.modify_vpc_attribute(VpcId=vpc_id, **{attribute: {"Value": True}})
        return vpc_id

    def subnet(self, vpc_id: str, name: str | None, cidr: str, zone: str = "a", tier: str | None = None) -> str:
        return self.ec2.create_subnet(VpcId=vpc_id, CidrBlock=cidr, AvailabilityZone=self.region + zone,
                                      TagSpecifications=self.spec("subnet", name, Tier=tier))["Subnet"]["SubnetId"]

    def igw(self, vpc_id: str, name: str | None = None) -> str:
        igw_id = self.ec2.create_internet_gateway(
            TagSpecifications=self.spec("internet-gateway", name))["InternetGateway"]["InternetGatewayId"]
        self.ec2.attach_internet_gateway(InternetGatewayId=igw_id, VpcId=vpc_id)
        return igw_id

    def route_table(self, vpc_id: str, subnets: list[str], name: str | None = None, **default_route) -> str:
        table_id = self.ec2.create_route_table(
            VpcId=vpc_id, TagSpecifications=self.spec("route-table", name))["RouteTable"]["RouteTableId"]
        if default_route:
            self.ec2.create_route(RouteTableId=table_id, DestinationCidrBlock=WORLD, **default_route)
        for subnet_id in subnets:
            self.ec2.associate_route_table(RouteTableId=table_id, SubnetId=subnet_id)
        return table_id

    def main_table(self, vpc_id: str) -> str:
        tables = self.ec2.describe_route_tables(Filters=[{"Name": "vpc-id", "Values": [vpc_id]},
                                                         {"Name": "association.main", "Values": ["true"]}])
        return tables["RouteTables"][0]["RouteTableId"]

    def default_group(self, vpc_id: str) -> str:
        groups = self.ec2.describe_security_groups(Filters=[{"Name": "vpc-id", "Values": [vpc_id]},
                                                            {"Name": "group-name", "Values": ["default"]}])
        return groups["SecurityGroups"][0]["GroupId"]

    def security_group(self, vpc_id: str, name: str, description: str, ingress: list[dict]) -> str:
        """A group with ``ingress`` and no egress yet (AWS's default all-out rule removed, as purge_rules_egress)."""
        group_id = self.ec2.create_security_group(GroupName=name, Description=description, VpcId=vpc_id,
                                                  TagSpecifications=self.spec("security-group", name))["GroupId"]
        self.ec2.revoke_security_group_egress(GroupId=group_id, IpPermissions=[permission("-1", cidr=WORLD)])
        if ingress:
            self.ec2.authorize_security_group_ingress(GroupId=group_id, IpPermissions=ingress)
        return group_id

    def key_pair(self) -> str:
        """The project's key pair (key_name), once per region."""
        if not self._key_name:
            with contextlib.suppress(ClientError):  # already there: a seeder before this one made it
                self.ec2.create_key_pair(KeyName=PROJECT)
            self._key_name = PROJECT
        return self._key_name

    def root_snapshot(self) -> str:
        """A snapshot for root volumes, as an image's root snapshot on AWS. (moto omits SnapshotId for a volume
        made from none, AWS returns "", and amazon.aws.ec2_vol_info then fails with KeyError 'snapshot_id'.)"""
        if not self._snapshot:
            seed = self.ec2.create_volume(Size=8, AvailabilityZone=self.region + "a")["VolumeId"]
            self._snapshot = self.ec2.create_snapshot(VolumeId=seed)["SnapshotId"]
            self.ec2.delete_volume(VolumeId=seed)
        return self._snapshot

    def launch(self, subnet_id: str, names: list[str | None], role: str | None = None, public: bool = False,
               project: str | None = PROJECT, *, groups: list[str] | None = None, private_ip: str | None = None,
               ami_os: str | None = None, image_id: str | None = None, source_dest_check: bool = True) -> list[dict]:
        """Instances as aws_instances launches them (IMDSv2 only, encrypted root volume, key pair, tags Name, Role
        and the project's), one RunInstances call for all of ``names``; the default group unless ``groups``;
        the image of ``ami_os`` unless ``image_id`` names one (moto launches even an image it does not know)."""
        image = {"ImageId": image_id} if image_id else self.image(ami_os)
        if groups is None:
            vpc_id = self.ec2.describe_subnets(SubnetIds=[subnet_id])["Subnets"][0]["VpcId"]
            groups = [self.default_group(vpc_id)]
        interface = {"DeviceIndex": 0, "SubnetId": subnet_id, "Groups": groups, "AssociatePublicIpAddress": public}
        if private_ip:
            interface["PrivateIpAddress"] = private_ip
        settings, extra = design(), {"Role": role} if role else {}
        launched = self.ec2.run_instances(
            ImageId=image["ImageId"], InstanceType=settings.get(f"{role}_instance_type", "t3.micro"),
            MinCount=len(names), MaxCount=len(names), KeyName=self.key_pair(), NetworkInterfaces=[interface],
            MetadataOptions={"HttpTokens": "required", "HttpEndpoint": "enabled", "HttpPutResponseHopLimit": 1},
            BlockDeviceMappings=[{"DeviceName": image.get("RootDeviceName", "/dev/xvda"), "Ebs": {
                "VolumeSize": settings.get("root_volume_size", 8), "VolumeType": "gp3", "Encrypted": True,
                "DeleteOnTermination": True, "SnapshotId": self.root_snapshot()}}],
            TagSpecifications=self.spec("instance", names[0] if len(names) == 1 else None, project, **extra),
        )["Instances"]
        if len(names) > 1:
            def name(pair):
                if pair[1] is not None:
                    self.ec2.create_tags(Resources=[pair[0]["InstanceId"]], Tags=[{"Key": "Name", "Value": pair[1]}])
            with ThreadPoolExecutor(4) as pool:
                list(pool.map(name, zip(launched, names, strict=True)))
        if not source_dest_check:
            for instance in launched:
                self.ec2.modify_instance_attribute(InstanceId=instance["InstanceId"],
                                                   SourceDestCheck={"Value": False})
        return [_host(instance) for instance in launched]

    def instance(self, subnet_id: str, name: str | None, role: str | None = None, public: bool = False,
                 project: str | None = PROJECT, **options) -> dict:
        """One instance: {id, private, public, subnet, image} (options: groups, private_ip, ami_os, image_id...)."""
        return self.launch(subnet_id, [name], role, public, project, **options)[0]

    # ------------------------------------------------------------------ whole VPCs
    def project(self, vpc_name: str = "fumidai-vpc", cidr_prefix: str = "10.0", suffix: str = "", **options) -> Stack:
        """provision.yml's topology (see ``project_plan`` for the options); the ALB when the seeder has elbv2."""
        return self.build(project_plan(vpc_name, cidr_prefix, suffix, **{"ami_os": self.ami_os, **options}))

    def build(self, plan: VpcPlan) -> Stack:
        """One VPC in the order provisioning builds it: network, security groups, instances, routes, ALB."""
        ec2 = self.ec2
        stack = Stack(plan.name, self.vpc(plan.name, plan.cidr))
        for subnet in plan.subnets:
            stack.subnets[subnet.name] = self.subnet(stack.vpc_id, subnet.name, subnet.cidr, subnet.zone, subnet.tier)
        stack.igw_id = self.igw(stack.vpc_id, f"{PROJECT}-igw")
        stack.nacl_id = ec2.describe_network_acls(Filters=[{"Name": "vpc-id", "Values": [stack.vpc_id]},
                                                           {"Name": "default", "Values": ["true"]}]
                                                  )["NetworkAcls"][0]["NetworkAclId"]
        public = [s.name for s in plan.subnets if s.tier == "public"]
        if any(s.nat == "nat_gateway" for s in plan.subnets):
            eip = ec2.allocate_address(Domain="vpc", TagSpecifications=self.spec("elastic-ip",
                                                                                 f"{PROJECT}-nat-gateway-eip"))
            stack.nat_gateway_id = ec2.create_nat_gateway(
                SubnetId=stack.subnets[design().get("nat_gateway_subnet", public[0])],
                AllocationId=eip["AllocationId"], TagSpecifications=self.spec("natgateway", f"{PROJECT}-nat-gateway"),
            )["NatGateway"]["NatGatewayId"]
        stack.sgs = self.project_groups(stack.vpc_id, plan)

        for batch in _batches(plan):
            first = batch[0]
            role_group = ROLE_GROUPS.get(first.role)
            public_ip = first.public_ip if first.public_ip is not None else first.role == "nat"
            hosts = self.launch(stack.subnets[first.subnet], [h.name for h in batch], first.role, public_ip,
                                groups=[stack.sgs[role_group]] if role_group else None, private_ip=first.private_ip,
                                ami_os=first.ami_os or plan.ami_os, source_dest_check=first.role != "nat")
            stack.hosts.update({h.name: host for h, host in zip(batch, hosts, strict=True)})
        bastions = [h for h in plan.hosts if h.role == "bastion"]
        for host in plan.hosts:
            if host.role == "bastion" and host.public_ip is None:  # the bastion's Elastic IP (bastion-2's, ...)
                number = bastions.index(host) + 1
                eip_name = f"{PROJECT}-bastion-eip" if number == 1 else f"{PROJECT}-bastion-{number}-eip"
                eip = ec2.allocate_address(Domain="vpc", TagSpecifications=self.spec("elastic-ip", eip_name))
                ec2.associate_address(AllocationId=eip["AllocationId"], InstanceId=stack.hosts[host.name]["id"])

        stack.route_tables[f"{PROJECT}-public"] = self.route_table(
            stack.vpc_id, [stack.subnets[name] for name in public], f"{PROJECT}-public", GatewayId=stack.igw_id)
        nat_instance = next((stack.hosts[h.name]["id"] for h in plan.hosts if h.role == "nat"), None)
        for subnet in plan.subnets:
            if subnet.tier == "private" and subnet.nat:
                target = ({"NatGatewayId": stack.nat_gateway_id} if subnet.nat == "nat_gateway"
                          else {"InstanceId": nat_instance})
                name = f"{PROJECT}-{subnet.name}"
                stack.route_tables[name] = self.route_table(stack.vpc_id, [stack.subnets[subnet.name]], name, **target)
        if plan.alb and self.elbv2 is not None:
            self.alb(stack, plan)
        stopped = [stack.hosts[h.name]["id"] for h in plan.hosts if h.stopped]
        if stopped:
            ec2.stop_instances(InstanceIds=stopped)
        for page in ec2.get_paginator("describe_instances").paginate(
                Filters=[{"Name": "vpc-id", "Values": [stack.vpc_id]}]):
            for reservation in page["Reservations"]:
                for instance in reservation["Instances"]:
                    name = next((t["Value"] for t in instance.get("Tags", []) if t["Key"] == "Name"), None)
                    if name in stack.hosts:
                        stack.hosts[name] = _host(instance)  # the bastion's Elastic IP is its public IP now
        return stack

    def project_groups(self, vpc_id: str, plan: VpcPlan) -> dict[str, str]:
        """The four groups of roles/aws_security_groups, least privilege both ways."""
        nat_sources = [s.cidr for s in plan.subnets if s.tier == "private" and s.nat == "nat_instance"]
        bastion = self.security_group(vpc_id, f"{PROJECT}-bastion", f"{PROJECT} bastion: SSH from the admin networks "
                                      "only", [permission("tcp", 22, cidr=c, desc="SSH from admin_cidrs")
                                               for c in plan.admin_cidrs])
        alb = self.security_group(vpc_id, f"{PROJECT}-alb", f"{PROJECT} ALB: HTTP(S) from the internet",
                                  [permission("tcp", 80, cidr=WORLD, desc="Web traffic from the internet")])
        web = self.security_group(vpc_id, f"{PROJECT}-web", f"{PROJECT} web: HTTP from the ALB, SSH from the bastion",
                                  [permission("tcp", 80, group=alb),
                                   permission("tcp", 22, group=bastion)])
        nat = self.security_group(vpc_id, f"{PROJECT}-nat", f"{PROJECT} NAT instance: traffic from the private subnets",
                                  [rule for c in nat_sources for rule in forward(c, "Forwarded from a private subnet")]
                                  + [permission("tcp", 22, group=bastion)])
        egress = {
            bastion: [permission("tcp", 22, cidr=plan.cidr, desc="SSH into the VPC (the hop)"),
                      permission("tcp", 80, cidr=WORLD, desc="Package updates"),
                      permission("tcp", 443, cidr=WORLD, desc="Package updates")],
            alb: [permission("tcp", 80, group=web)],
            web: forward(WORLD, "To the internet through the NAT"),
            nat: forward(WORLD, "Forwarded traffic and updates to the internet", (80, 443)),
        }
        for group_id, rules in egress.items():
            self.ec2.authorize_security_group_egress(GroupId=group_id, IpPermissions=rules)
        return {"bastion": bastion, "alb": alb, "web": web, "nat": nat}

    def alb(self, stack: Stack, plan: VpcPlan) -> None:
        """aws_alb: internet-facing over the first public subnet of each zone, HTTP:80 forwarding to the web
        servers' target group (health check on /healthz)."""
        zones, subnets = set(), []
        for subnet in plan.subnets:
            if subnet.tier == "public" and subnet.zone not in zones:
                zones.add(subnet.zone)
                subnets.append(stack.subnets[subnet.name])
        name = f"{PROJECT}-alb{plan.suffix}"
        stack.alb_arn = self.elbv2.create_load_balancer(
            Name=name, Scheme="internet-facing", Type="application", Subnets=subnets,
            SecurityGroups=[stack.sgs["alb"]], Tags=self.tags(name))["LoadBalancers"][0]["LoadBalancerArn"]
        self.elbv2.modify_load_balancer_attributes(LoadBalancerArn=stack.alb_arn, Attributes=[
            {"Key": "routing.http.drop_invalid_header_fields.enabled", "Value": "true"}])
        group = f"{PROJECT}-web{plan.suffix}"
        stack.tg_arn = self.elbv2.create_target_group(
            Name=group, Protocol="HTTP", Port=80, VpcId=stack.vpc_id, TargetType="instance",
            HealthCheckProtocol="HTTP", HealthCheckPort="traffic-port",
            HealthCheckPath=design().get("alb_health_check_path", "/healthz"), Matcher={"HttpCode": "200"},
            Tags=self.tags(group))["TargetGroups"][0]["TargetGroupArn"]
        webs = [stack.hosts[h.name]["id"] for h in plan.hosts if h.role == "web" and not h.stopped]
        if webs:
            self.elbv2.register_targets(TargetGroupArn=stack.tg_arn, Targets=[{"Id": i, "Port": 80} for i in webs])
        stack.listener_arn = self.elbv2.create_listener(
            LoadBalancerArn=stack.alb_arn, Protocol="HTTP", Port=80,
            DefaultActions=[{"Type": "forward", "TargetGroupArn": stack.tg_arn}])["Listeners"][0]["ListenerArn"]


def _batches(plan: VpcPlan) -> list[list[HostPlan]]:
    """Consecutive hosts that can share one RunInstances call (same subnet, role, addressing, image), at most 50."""
    batches: list[list[HostPlan]] = []
    for host in plan.hosts:
        last = batches[-1] if batches else None
        if (last and len(last) < BATCH and host.private_ip is None and last[0].private_ip is None
                and host.role not in ("bastion", "nat")
                and replace(host, name="", stopped=False) == replace(last[0], name="", stopped=False)):
            last.append(host)
        else:
            batches.append([host])
    return batches
