"""VPC topologies built with boto3 the way the project's provisioning builds them (for the inventory
plugin's unit tests, in-process moto or a moto server), and the hostile tag values they are tried with."""

from __future__ import annotations

REGION = "ap-northeast-1"


class Topology:
    """Builds VPCs the way the project's provisioning does, with boto3."""

    def __init__(self, ec2):
        self.ec2 = ec2
        self.ami = "ami-0fumidai0test0"

    @staticmethod
    def tags(name: str | None, project: str | None = "fumidai", **extra) -> list[dict]:
        tags = {"Name": name, "Project": project, **extra}
        return [{"Key": k, "Value": v} for k, v in tags.items() if v is not None]

    def tag(self, resource_id: str, name: str) -> None:
        self.ec2.create_tags(Resources=[resource_id], Tags=self.tags(name))

    def vpc(self, name: str | None, cidr: str) -> str:
        vpc_id = self.ec2.create_vpc(CidrBlock=cidr)["Vpc"]["VpcId"]
        if name:
            self.tag(vpc_id, name)
        return vpc_id

    def subnet(self, vpc_id: str, name: str | None, cidr: str, zone: str = "a") -> str:
        subnet_id = self.ec2.create_subnet(VpcId=vpc_id, CidrBlock=cidr,
                                           AvailabilityZone=REGION + zone)["Subnet"]["SubnetId"]
        if name:
            self.tag(subnet_id, name)
        return subnet_id

    def igw(self, vpc_id: str) -> str:
        igw_id = self.ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
        self.ec2.attach_internet_gateway(InternetGatewayId=igw_id, VpcId=vpc_id)
        return igw_id

    def route_table(self, vpc_id: str, subnets: list[str], **default_route) -> str:
        table_id = self.ec2.create_route_table(VpcId=vpc_id)["RouteTable"]["RouteTableId"]
        if default_route:
            self.ec2.create_route(RouteTableId=table_id, DestinationCidrBlock="0.0.0.0/0", **default_route)
        for subnet_id in subnets:
            self.ec2.associate_route_table(RouteTableId=table_id, SubnetId=subnet_id)
        return table_id

    def main_table(self, vpc_id: str) -> str:
        tables = self.ec2.describe_route_tables(Filters=[{"Name": "vpc-id", "Values": [vpc_id]},
                                                         {"Name": "association.main", "Values": ["true"]}])
        return tables["RouteTables"][0]["RouteTableId"]

    def instance(self, subnet_id: str, name: str | None, role: str | None = None, public: bool = False,
                 project: str | None = "fumidai") -> dict:
        extra = {"Role": role} if role else {}
        vpc_id = self.ec2.describe_subnets(SubnetIds=[subnet_id])["Subnets"][0]["VpcId"]
        group = self.ec2.describe_security_groups(Filters=[{"Name": "vpc-id", "Values": [vpc_id]},
                                                           {"Name": "group-name", "Values": ["default"]}])
        inst = self.ec2.run_instances(
            ImageId=self.ami, MinCount=1, MaxCount=1, InstanceType="t3.micro",
            NetworkInterfaces=[{"DeviceIndex": 0, "SubnetId": subnet_id, "AssociatePublicIpAddress": public,
                                "Groups": [group["SecurityGroups"][0]["GroupId"]]}],
            TagSpecifications=[{"ResourceType": "instance", "Tags": self.tags(name, project, **extra)}],
        )["Instances"][0]
        return {"id": inst["InstanceId"], "private": inst["PrivateIpAddress"],
                "public": inst.get("PublicIpAddress"), "subnet": subnet_id}

    def project(self, name: str = "fumidai-vpc", cidr_prefix: str = "10.0", suffix: str = "") -> dict:
        """The project's own shape: 2 public + 2 private subnets, IGW, NAT gateway and NAT instance routes."""
        vpc_id = self.vpc(name, f"{cidr_prefix}.0.0/16")
        pub1 = self.subnet(vpc_id, "public-subnet-1", f"{cidr_prefix}.1.0/24", "a")
        pub2 = self.subnet(vpc_id, "public-subnet-2", f"{cidr_prefix}.2.0/24", "c")
        priv1 = self.subnet(vpc_id, "private-subnet-1", f"{cidr_prefix}.11.0/24", "a")
        priv2 = self.subnet(vpc_id, "private-subnet-2", f"{cidr_prefix}.12.0/24", "c")
        igw_id = self.igw(vpc_id)
        self.route_table(vpc_id, [pub1, pub2], GatewayId=igw_id)
        eip = self.ec2.allocate_address(Domain="vpc")["AllocationId"]
        natgw = self.ec2.create_nat_gateway(SubnetId=pub1, AllocationId=eip)["NatGateway"]["NatGatewayId"]
        self.route_table(vpc_id, [priv1], NatGatewayId=natgw)
        hosts = {
            "bastion": self.instance(pub1, "bastion" + suffix, "bastion", public=True),
            "nat-instance": self.instance(pub2, "nat-instance" + suffix, "nat", public=True),
            "web01": self.instance(priv1, "web01" + suffix, "web"),
            "web02": self.instance(priv2, "web02" + suffix, "web"),
        }
        self.route_table(vpc_id, [priv2], InstanceId=hosts["nat-instance"]["id"])
        return {"vpc": vpc_id, "hosts": hosts}


# Tag values an attacker who can tag instances might choose (the list, and a few more).
HOSTILE_NAMES = ["0 *", "a b", 'web03\nMatch exec "touch /tmp/fumidai-pwned"', 'it\'s "quoted"', "$(touch /tmp/x)",
                 "%h", "<script>alert(1)</script>", "w" * 300, "ウェブ01", "-oProxyCommand=x", ".hidden", "localhost",
                 "ALL", "web\t01"]
