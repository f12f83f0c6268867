"""lab/moto_dependencies.py: the local API refuses the deletes AWS refuses, with AWS's codes, and frees what
AWS frees when an instance is terminated or a NAT gateway deleted, so that the teardown's order is tested.

Against moto in-process with the project's patches installed for the test only (monkeypatch undoes them),
on fumidai's VPC as the seeder builds it (tests/support/aws_seed.py).
"""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from lab import moto_dependencies
from tests.support.aws_seed import in_process


@pytest.fixture
def seeded(monkeypatch):
    moto_dependencies.apply(monkeypatch.setattr)
    with in_process() as seed:
        yield seed, seed.project()


def refused(call, code: str, *names: str) -> str:
    """The call fails with AWS's ``code``, naming each of ``names``; returns the message."""
    with pytest.raises(ClientError) as failure:
        call()
    error = failure.value.response["Error"]
    assert error["Code"] == code, error
    for name in names:
        assert name in error["Message"], (name, error["Message"])
    return error["Message"]


def terminate_all(ec2, stack) -> None:
    ec2.terminate_instances(InstanceIds=list(stack.instances.values()))


def delete_load_balancer(elbv2, stack) -> None:
    elbv2.delete_listener(ListenerArn=stack.listener_arn) if stack.listener_arn else None
    elbv2.delete_load_balancer(LoadBalancerArn=stack.alb_arn)


def addresses(ec2) -> dict[str, dict]:
    return {a["AllocationId"]: a for a in ec2.describe_addresses()["Addresses"]}


# --- security groups -------------------------------------------------------------------------------

def test_a_group_used_by_an_instance_is_not_deleted(seeded):
    seed, stack = seeded
    web01 = seed.ec2.describe_instances(InstanceIds=[stack.instances["web01"]])["Reservations"][0]["Instances"][0]
    # The instance's interface holds the group (as on AWS, where the groups are the interface's).
    refused(lambda: seed.ec2.delete_security_group(GroupId=stack.sgs["web"]), "DependencyViolation",
            stack.sgs["web"], web01["NetworkInterfaces"][0]["NetworkInterfaceId"])


def test_a_group_referenced_by_another_groups_rule_is_not_deleted_until_the_rule_goes(seeded):
    seed, stack = seeded
    terminate_all(seed.ec2, stack)
    delete_load_balancer(seed.elbv2, stack)
    # The web group's ingress rule names the bastion's group (SSH from the bastion only).
    refused(lambda: seed.ec2.delete_security_group(GroupId=stack.sgs["bastion"]), "DependencyViolation",
            f"{stack.sgs['web']} (a rule references it)")
    for group_id in stack.sgs.values():
        group = seed.ec2.describe_security_groups(GroupIds=[group_id])["SecurityGroups"][0]
        if group["IpPermissions"]:
            seed.ec2.revoke_security_group_ingress(GroupId=group_id, IpPermissions=group["IpPermissions"])
        if group["IpPermissionsEgress"]:
            seed.ec2.revoke_security_group_egress(GroupId=group_id, IpPermissions=group["IpPermissionsEgress"])
    seed.ec2.delete_security_group(GroupId=stack.sgs["bastion"])


def test_a_group_used_by_a_load_balancer_is_not_deleted(seeded):
    seed, stack = seeded
    terminate_all(seed.ec2, stack)
    refused(lambda: seed.ec2.delete_security_group(GroupId=stack.sgs["alb"]), "DependencyViolation", "fumidai-alb")


def test_a_group_used_by_a_network_interface_is_not_deleted(seeded):
    seed, stack = seeded
    group = seed.ec2.create_security_group(GroupName="extra", Description="x", VpcId=stack.vpc_id)["GroupId"]
    eni = seed.ec2.create_network_interface(SubnetId=stack.subnets["private-subnet-1"], Groups=[group])
    eni_id = eni["NetworkInterface"]["NetworkInterfaceId"]
    refused(lambda: seed.ec2.delete_security_group(GroupId=group), "DependencyViolation", eni_id)
    seed.ec2.delete_network_interface(NetworkInterfaceId=eni_id)
    seed.ec2.delete_security_group(GroupId=group)


# --- subnets, gateways, the VPC ----------------------------------------------------------------------

def test_a_subnet_with_an_instance_is_not_deleted(seeded):
    seed, stack = seeded
    refused(lambda: seed.ec2.delete_subnet(SubnetId=stack.subnets["private-subnet-1"]), "DependencyViolation",
            stack.instances["web01"])


def test_a_subnet_with_a_nat_gateway_is_not_deleted_until_the_gateway_is(seeded):
    seed, stack = seeded
    terminate_all(seed.ec2, stack)
    delete_load_balancer(seed.elbv2, stack)
    refused(lambda: seed.ec2.delete_subnet(SubnetId=stack.subnets["public-subnet-1"]), "DependencyViolation",
            stack.nat_gateway_id)
    seed.ec2.delete_nat_gateway(NatGatewayId=stack.nat_gateway_id)
    seed.ec2.delete_subnet(SubnetId=stack.subnets["public-subnet-1"])


def test_a_subnet_of_a_load_balancer_is_not_deleted(seeded):
    seed, stack = seeded
    terminate_all(seed.ec2, stack)
    seed.ec2.delete_nat_gateway(NatGatewayId=stack.nat_gateway_id)
    refused(lambda: seed.ec2.delete_subnet(SubnetId=stack.subnets["public-subnet-2"]), "DependencyViolation",
            "fumidai-alb")


def test_a_vpc_with_an_attached_gateway_or_its_own_groups_is_not_deleted():
    with pytest.MonkeyPatch.context() as monkeypatch:
        moto_dependencies.apply(monkeypatch.setattr)
        with in_process() as seed:
            ec2 = seed.ec2
            vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
            igw = ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
            ec2.attach_internet_gateway(InternetGatewayId=igw, VpcId=vpc)
            group = ec2.create_security_group(GroupName="own", Description="x", VpcId=vpc)["GroupId"]
            refused(lambda: ec2.delete_vpc(VpcId=vpc), "DependencyViolation", igw, group)
            ec2.detach_internet_gateway(InternetGatewayId=igw, VpcId=vpc)
            refused(lambda: ec2.delete_vpc(VpcId=vpc), "DependencyViolation", group)
            ec2.delete_security_group(GroupId=group)
            ec2.delete_vpc(VpcId=vpc)


def test_the_gateway_is_not_detached_while_public_addresses_are_mapped(seeded):
    seed, stack = seeded
    detach = lambda: seed.ec2.detach_internet_gateway(InternetGatewayId=stack.igw_id,  # noqa: E731
                                                       VpcId=stack.vpc_id)
    refused(detach, "DependencyViolation", "mapped public address")
    terminate_all(seed.ec2, stack)  # the bastion's EIP and the NAT instance's public address go
    refused(detach, "DependencyViolation", "mapped public address")  # the NAT gateway's EIP is left
    seed.ec2.delete_nat_gateway(NatGatewayId=stack.nat_gateway_id)
    detach()


# --- Elastic IPs and target groups -------------------------------------------------------------------

def test_an_associated_address_is_not_released(seeded):
    seed, stack = seeded
    bastion_eip = next(a for a in addresses(seed.ec2).values() if a.get("InstanceId") == stack.instances["bastion"])
    release = lambda: seed.ec2.release_address(AllocationId=bastion_eip["AllocationId"])  # noqa: E731
    refused(release, "InvalidIPAddress.InUse", bastion_eip["PublicIp"])
    seed.ec2.disassociate_address(AssociationId=bastion_eip["AssociationId"])
    release()


def test_a_target_group_behind_a_listener_is_not_deleted(seeded):
    seed, stack = seeded
    refused(lambda: seed.elbv2.delete_target_group(TargetGroupArn=stack.tg_arn), "ResourceInUse", stack.tg_arn)


# --- what AWS frees, which the right order relies on -----------------------------------------------------

def test_terminating_frees_the_instances_addresses_and_interfaces(seeded):
    seed, stack = seeded
    interfaces = {e["NetworkInterfaceId"] for e in seed.ec2.describe_network_interfaces()["NetworkInterfaces"]
                  if e.get("Attachment", {}).get("InstanceId") in stack.instances.values()}
    assert len(interfaces) == len(stack.instances)
    terminate_all(seed.ec2, stack)
    left = {e["NetworkInterfaceId"] for e in seed.ec2.describe_network_interfaces()["NetworkInterfaces"]}
    assert not interfaces & left
    assert not [a for a in addresses(seed.ec2).values() if a.get("InstanceId")]
    # The terminated instances are still described (what the teardown's wait reads), as terminated.
    described = seed.ec2.describe_instances(InstanceIds=list(stack.instances.values()))["Reservations"]
    assert {i["State"]["Name"] for r in described for i in r["Instances"]} == {"terminated"}


def test_deleting_the_nat_gateway_frees_its_address_and_interface(seeded):
    seed, stack = seeded
    gateway = seed.ec2.describe_nat_gateways(NatGatewayIds=[stack.nat_gateway_id])["NatGateways"][0]
    (address,) = gateway["NatGatewayAddresses"]
    seed.ec2.delete_nat_gateway(NatGatewayId=stack.nat_gateway_id)
    left = {e["NetworkInterfaceId"] for e in seed.ec2.describe_network_interfaces()["NetworkInterfaces"]}
    assert address["NetworkInterfaceId"] not in left
    assert not addresses(seed.ec2)[address["AllocationId"]].get("AssociationId")
    seed.ec2.release_address(AllocationId=address["AllocationId"])
    # Still described (what the teardown's wait reads), as deleted.
    gone = seed.ec2.describe_nat_gateways(NatGatewayIds=[stack.nat_gateway_id])["NatGateways"]
    assert [g["State"] for g in gone] == ["deleted"]


def test_the_teardowns_order_passes_and_a_reordered_one_is_refused(seeded):
    """roles/aws_teardown's order (load balancers, instances, NAT gateways, addresses, groups with their
    cross-references revoked first, subnets, gateway, VPC) goes through; the security groups before the
    instances, or the subnets before the NAT gateway, are refused."""
    seed, stack = seeded
    ec2 = seed.ec2
    refused(lambda: ec2.delete_security_group(GroupId=stack.sgs["nat"]), "DependencyViolation")
    delete_load_balancer(seed.elbv2, stack)
    seed.elbv2.delete_target_group(TargetGroupArn=stack.tg_arn)
    terminate_all(ec2, stack)
    refused(lambda: ec2.delete_subnet(SubnetId=stack.subnets["public-subnet-1"]), "DependencyViolation")
    for table in ec2.describe_route_tables(Filters=[{"Name": "vpc-id", "Values": [stack.vpc_id]}])["RouteTables"]:
        if any(a.get("Main") for a in table["Associations"]):
            continue
        for association in table["Associations"]:
            ec2.disassociate_route_table(AssociationId=association["RouteTableAssociationId"])
        ec2.delete_route_table(RouteTableId=table["RouteTableId"])
    ec2.delete_nat_gateway(NatGatewayId=stack.nat_gateway_id)
    for allocation in addresses(ec2):
        ec2.release_address(AllocationId=allocation)
    for group_id in stack.sgs.values():
        group = ec2.describe_security_groups(GroupIds=[group_id])["SecurityGroups"][0]
        if group["IpPermissions"]:
            ec2.revoke_security_group_ingress(GroupId=group_id, IpPermissions=group["IpPermissions"])
        if group["IpPermissionsEgress"]:
            ec2.revoke_security_group_egress(GroupId=group_id, IpPermissions=group["IpPermissionsEgress"])
    for group_id in stack.sgs.values():
        ec2.delete_security_group(GroupId=group_id)
    for subnet_id in stack.subnets.values():
        ec2.delete_subnet(SubnetId=subnet_id)
    ec2.detach_internet_gateway(InternetGatewayId=stack.igw_id, VpcId=stack.vpc_id)
    ec2.delete_internet_gateway(InternetGatewayId=stack.igw_id)
    ec2.delete_vpc(VpcId=stack.vpc_id)
    assert stack.vpc_id not in {v["VpcId"] for v in ec2.describe_vpcs()["Vpcs"]}


# --- with the opt-in transitions (lab/moto_transitions.py) ------------------------------------------------

def test_a_shutting_down_instance_still_holds_its_group_and_subnet(monkeypatch):
    """AWS lets go of a group or subnet only once the instance is terminated, not while it shuts down."""
    from lab import moto_transitions

    now = [1000.0]
    monkeypatch.setattr(moto_transitions, "clock", lambda: now[0])
    moto_dependencies.apply(monkeypatch.setattr)  # in the server's order: the dependencies, then the transitions
    moto_transitions.apply({"instance": 1.0}, lambda target, name, value: monkeypatch.setattr(target, name, value,
                                                                                              raising=False))
    with in_process() as seed:
        ec2 = seed.ec2
        vpc_id = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        subnet_id = ec2.create_subnet(VpcId=vpc_id, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
        group_id = ec2.create_security_group(GroupName="held", Description="held", VpcId=vpc_id)["GroupId"]
        instance_id = ec2.run_instances(ImageId="ami-0f0d1e1a2b3c4d5e6", MinCount=1, MaxCount=1, SubnetId=subnet_id,
                                        SecurityGroupIds=[group_id])["Instances"][0]["InstanceId"]
        now[0] += 1.0
        ec2.terminate_instances(InstanceIds=[instance_id])
        state = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]["State"]
        assert state["Name"] == "shutting-down"
        refused(lambda: ec2.delete_security_group(GroupId=group_id), "DependencyViolation", instance_id)
        refused(lambda: ec2.delete_subnet(SubnetId=subnet_id), "DependencyViolation", instance_id)
        now[0] += 1.0  # terminated: both go
        ec2.delete_security_group(GroupId=group_id)
        ec2.delete_subnet(SubnetId=subnet_id)
        assert subnet_id not in {s["SubnetId"] for s in ec2.describe_subnets()["Subnets"]}
