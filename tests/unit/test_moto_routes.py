"""lab/moto_routes.py: DescribeRouteTables reports a route ``blackhole`` while its target is gone (gateway
detached or deleted, NAT gateway deleted, NAT instance stopped or terminated, interface deleted), ``active``
again once the target is back, as AWS does.

Against moto in-process with the fix installed for the test only (monkeypatch undoes it); each test builds
the little it needs: a VPC, a subnet and a route table whose 0.0.0.0/0 goes to the target.
"""

from __future__ import annotations

import pytest

from lab import moto_dependencies, moto_routes
from tests.support.aws_seed import in_process

IMAGE = "ami-0f0d1e1a2b3c4d5e6"  # one of lab/moto_amis.json's images
WORLD = "0.0.0.0/0"


@pytest.fixture
def ec2(monkeypatch):
    moto_routes.apply(monkeypatch.setattr)
    with in_process() as seed:
        yield seed.ec2


@pytest.fixture
def vpc(ec2) -> dict:
    vpc_id = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet_id = ec2.create_subnet(VpcId=vpc_id, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
    table_id = ec2.create_route_table(VpcId=vpc_id)["RouteTable"]["RouteTableId"]
    return {"vpc": vpc_id, "subnet": subnet_id, "table": table_id}


def routes(ec2, table_id: str) -> dict[str, str]:
    """Destination -> state, as DescribeRouteTables answers."""
    table = ec2.describe_route_tables(RouteTableIds=[table_id])["RouteTables"][0]
    return {r["DestinationCidrBlock"]: r["State"] for r in table["Routes"]}


def default_state(ec2, table_id: str) -> str:
    return routes(ec2, table_id)[WORLD]


def attached_gateway(ec2, vpc_id: str) -> str:
    igw_id = ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
    ec2.attach_internet_gateway(InternetGatewayId=igw_id, VpcId=vpc_id)
    return igw_id


def nat_instance(ec2, subnet_id: str) -> str:
    return ec2.run_instances(ImageId=IMAGE, MinCount=1, MaxCount=1, InstanceType="t3.micro",
                             SubnetId=subnet_id)["Instances"][0]["InstanceId"]


def test_a_route_to_a_detached_gateway_is_blackhole_until_it_is_attached_again(ec2, vpc):
    igw_id = attached_gateway(ec2, vpc["vpc"])
    ec2.create_route(RouteTableId=vpc["table"], DestinationCidrBlock=WORLD, GatewayId=igw_id)
    assert routes(ec2, vpc["table"]) == {"10.0.0.0/16": "active", WORLD: "active"}
    ec2.detach_internet_gateway(InternetGatewayId=igw_id, VpcId=vpc["vpc"])
    assert routes(ec2, vpc["table"]) == {"10.0.0.0/16": "active", WORLD: "blackhole"}  # the local route stays
    ec2.attach_internet_gateway(InternetGatewayId=igw_id, VpcId=vpc["vpc"])
    assert default_state(ec2, vpc["table"]) == "active"


def test_a_route_to_a_gateway_of_another_vpc_or_a_deleted_one_is_blackhole(ec2, vpc):
    igw_id = attached_gateway(ec2, vpc["vpc"])
    ec2.create_route(RouteTableId=vpc["table"], DestinationCidrBlock=WORLD, GatewayId=igw_id)
    ec2.detach_internet_gateway(InternetGatewayId=igw_id, VpcId=vpc["vpc"])
    other = ec2.create_vpc(CidrBlock="10.1.0.0/16")["Vpc"]["VpcId"]
    ec2.attach_internet_gateway(InternetGatewayId=igw_id, VpcId=other)
    assert default_state(ec2, vpc["table"]) == "blackhole"
    ec2.detach_internet_gateway(InternetGatewayId=igw_id, VpcId=other)
    ec2.delete_internet_gateway(InternetGatewayId=igw_id)
    assert default_state(ec2, vpc["table"]) == "blackhole"


def test_a_route_to_a_deleted_nat_gateway_is_blackhole(ec2, vpc):
    allocation = ec2.allocate_address(Domain="vpc")["AllocationId"]
    nat_id = ec2.create_nat_gateway(SubnetId=vpc["subnet"], AllocationId=allocation)["NatGateway"]["NatGatewayId"]
    ec2.create_route(RouteTableId=vpc["table"], DestinationCidrBlock=WORLD, NatGatewayId=nat_id)
    assert default_state(ec2, vpc["table"]) == "active"
    ec2.delete_nat_gateway(NatGatewayId=nat_id)
    assert default_state(ec2, vpc["table"]) == "blackhole"


def test_a_route_to_a_stopped_nat_instance_is_blackhole_until_it_starts(ec2, vpc):
    nat_id = nat_instance(ec2, vpc["subnet"])
    ec2.create_route(RouteTableId=vpc["table"], DestinationCidrBlock=WORLD, InstanceId=nat_id)
    assert default_state(ec2, vpc["table"]) == "active"
    ec2.stop_instances(InstanceIds=[nat_id])
    assert default_state(ec2, vpc["table"]) == "blackhole"
    ec2.start_instances(InstanceIds=[nat_id])
    assert default_state(ec2, vpc["table"]) == "active"
    ec2.terminate_instances(InstanceIds=[nat_id])
    assert default_state(ec2, vpc["table"]) == "blackhole"


def test_a_route_to_a_nat_instances_interface_follows_the_instance_and_the_interface(ec2, vpc, monkeypatch):
    moto_dependencies.follow_instance_termination(monkeypatch.setattr)  # terminating deletes the interface
    tables = {}
    for name in ("stopped", "terminated"):
        nat_id = nat_instance(ec2, vpc["subnet"])
        eni_id = ec2.describe_instances(InstanceIds=[nat_id])["Reservations"][0]["Instances"][0][
            "NetworkInterfaces"][0]["NetworkInterfaceId"]
        table_id = ec2.create_route_table(VpcId=vpc["vpc"])["RouteTable"]["RouteTableId"]
        ec2.create_route(RouteTableId=table_id, DestinationCidrBlock=WORLD, NetworkInterfaceId=eni_id)
        assert default_state(ec2, table_id) == "active"
        tables[name] = (nat_id, eni_id, table_id)
    nat_id, _eni, table_id = tables["stopped"]
    ec2.stop_instances(InstanceIds=[nat_id])
    assert default_state(ec2, table_id) == "blackhole"
    nat_id, eni_id, table_id = tables["terminated"]
    ec2.terminate_instances(InstanceIds=[nat_id])
    assert not ec2.describe_network_interfaces(Filters=[{"Name": "network-interface-id", "Values": [eni_id]}])[
        "NetworkInterfaces"]
    assert default_state(ec2, table_id) == "blackhole"


def test_a_route_to_an_interface_attached_to_no_instance_is_blackhole(ec2, vpc):
    eni_id = ec2.create_network_interface(SubnetId=vpc["subnet"])["NetworkInterface"]["NetworkInterfaceId"]
    ec2.create_route(RouteTableId=vpc["table"], DestinationCidrBlock=WORLD, NetworkInterfaceId=eni_id)
    assert default_state(ec2, vpc["table"]) == "blackhole"
    nat_id = nat_instance(ec2, vpc["subnet"])
    ec2.attach_network_interface(NetworkInterfaceId=eni_id, InstanceId=nat_id, DeviceIndex=1)
    assert default_state(ec2, vpc["table"]) == "active"

