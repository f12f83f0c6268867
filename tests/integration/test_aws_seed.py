"""The seeder builds what provisioning builds: playbooks/provision.yml (the shared provisioned stack) and
tests/support/aws_seed.py, each on a moto server of its own, leave the same VPC (names, tags, routes, security
group rules, instances, images, ALB)."""

from __future__ import annotations

import boto3

from tests.support.aws_plans import ADMIN_CIDR_V6
from tests.support.aws_seed import ADMIN_CIDR, AwsSeed


def tags(resource: dict) -> dict:
    return {t["Key"]: t["Value"] for t in resource.get("Tags", [])}


def shape(ec2, elbv2) -> dict:
    """Everything tagged for the project, ids replaced by Name tags (or group names), descriptions left out."""
    project = [{"Name": "tag:Project", "Values": ["fumidai"]}]
    vpcs = ec2.describe_vpcs(Filters=project)["Vpcs"]
    assert len(vpcs) == 1
    vpc_id = vpcs[0]["VpcId"]
    in_vpc = [{"Name": "vpc-id", "Values": [vpc_id]}]
    names = {vpc_id: tags(vpcs[0]).get("Name")}
    subnets = ec2.describe_subnets(Filters=in_vpc)["Subnets"]
    groups = [g for g in ec2.describe_security_groups(Filters=in_vpc)["SecurityGroups"] if g["GroupName"] != "default"]
    instances = [i for r in ec2.describe_instances(Filters=in_vpc + [
        {"Name": "instance-state-name", "Values": ["running"]}])["Reservations"] for i in r["Instances"]]
    igws = ec2.describe_internet_gateways(Filters=[{"Name": "attachment.vpc-id", "Values": [vpc_id]}])[
        "InternetGateways"]
    nat_gateways = ec2.describe_nat_gateways(Filters=in_vpc)["NatGateways"]
    for resource, key in ((subnets, "SubnetId"), (instances, "InstanceId"), (igws, "InternetGatewayId"),
                          (nat_gateways, "NatGatewayId")):
        names.update({item[key]: tags(item).get("Name") for item in resource})
    names.update({g["GroupId"]: g["GroupName"] for g in groups})

    def rules(permissions: list[dict]) -> list[tuple]:
        found = []
        for perm in permissions:
            ports = (perm["IpProtocol"], perm.get("FromPort"), perm.get("ToPort"))
            found += [(*ports, r["CidrIp"]) for r in perm.get("IpRanges", [])]
            found += [(*ports, r["CidrIpv6"]) for r in perm.get("Ipv6Ranges", [])]
            found += [(*ports, names[r["GroupId"]]) for r in perm.get("UserIdGroupPairs", [])]
        return sorted(found)

    def target(route: dict) -> str:
        for key in ("GatewayId", "NatGatewayId", "InstanceId"):
            if route.get(key) and route[key] != "local":
                return f"{key}:{names[route[key]]}"
        return "local"

    def volume(volume_id: str) -> dict:
        return ec2.describe_volumes(VolumeIds=[volume_id])["Volumes"][0]

    images = {i["ImageId"]: i["Name"] for i in ec2.describe_images(
        ImageIds=sorted({i["ImageId"] for i in instances}))["Images"]}
    loaded = {}
    for lb in elbv2.describe_load_balancers()["LoadBalancers"]:
        groups_of = elbv2.describe_target_groups(LoadBalancerArn=lb["LoadBalancerArn"])["TargetGroups"]
        loaded[lb["LoadBalancerName"]] = {
            "scheme": lb["Scheme"], "subnets": sorted(names[z["SubnetId"]] for z in lb["AvailabilityZones"]),
            "groups": sorted(names[g] for g in lb["SecurityGroups"]),
            "listeners": sorted((ls["Protocol"], ls["Port"], ls["DefaultActions"][0]["Type"]) for ls in
                                elbv2.describe_listeners(LoadBalancerArn=lb["LoadBalancerArn"])["Listeners"]),
            "target_groups": {g["TargetGroupName"]: (g["Protocol"], g["Port"], g["HealthCheckPath"], sorted(
                names[t["Target"]["Id"]] for t in elbv2.describe_target_health(
                    TargetGroupArn=g["TargetGroupArn"])["TargetHealthDescriptions"])) for g in groups_of}}
    return {
        "vpc": (vpcs[0]["CidrBlock"], tags(vpcs[0])),
        "subnets": {names[s["SubnetId"]]: (s["CidrBlock"], s["AvailabilityZone"], tags(s)) for s in subnets},
        "internet_gateways": [tags(g) for g in igws],
        "nat_gateways": [(names[g["SubnetId"]], tags(g)) for g in nat_gateways],
        "route_tables": sorted([
            (tags(t), sorted(names[a["SubnetId"]] for a in t["Associations"] if a.get("SubnetId")),
             sorted((r.get("DestinationCidrBlock"), target(r)) for r in t["Routes"]))
            for t in ec2.describe_route_tables(Filters=in_vpc)["RouteTables"] if tags(t)], key=repr),
        "security_groups": {g["GroupName"]: (tags(g), rules(g["IpPermissions"]), rules(g["IpPermissionsEgress"]))
                            for g in groups},
        "instances": {names[i["InstanceId"]]: {
            "tags": tags(i), "subnet": names[i["SubnetId"]], "type": i["InstanceType"], "key": i.get("KeyName"),
            "image": images.get(i["ImageId"]), "public_ip": bool(i.get("PublicIpAddress")),
            "groups": sorted(names[g["GroupId"]] for g in i["NetworkInterfaces"][0]["Groups"]),
            "metadata": (i["MetadataOptions"]["HttpTokens"], i["MetadataOptions"]["HttpEndpoint"]),
            "source_dest_check": i.get("SourceDestCheck"),
            "root": [(m["DeviceName"], volume(m["Ebs"]["VolumeId"])["Encrypted"]) for m in i["BlockDeviceMappings"]],
        } for i in instances},
        "addresses": sorted([(tags(a), names.get(a.get("InstanceId"), "-")) for a in ec2.describe_addresses(
            Filters=project)["Addresses"]], key=repr),
        "load_balancers": loaded,
    }


def test_the_seeder_builds_what_provisioning_builds(provisioned_stack, aws_env, ec2, elbv2):
    """The shared provisioned stack (its own moto server) against the seeder's (this worker's, reset)."""
    provisioned = shape(provisioned_stack.client("ec2"), provisioned_stack.client("elbv2"))
    assert set(provisioned["instances"]) == {"bastion", "nat-instance", "web01", "web02"}
    assert len(provisioned["security_groups"]) == 4 and "fumidai-alb" in provisioned["load_balancers"]
    assert provisioned_stack.admin_cidrs == (ADMIN_CIDR, ADMIN_CIDR_V6), "both are built with the same admin ranges"

    AwsSeed(boto3.client("ec2"), boto3.client("elbv2")).project(admin_cidrs=(ADMIN_CIDR, ADMIN_CIDR_V6))
    seeded = shape(ec2, elbv2)
    for part in provisioned:
        assert seeded[part] == provisioned[part], part
