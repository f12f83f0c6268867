"""vpc_reader against moto in-process: the parts asked for, paginated, in the model's snake_case shape."""

from __future__ import annotations

import boto3
import pytest
from ansible.module_utils.common.dict_transformations import camel_dict_to_snake_dict
from ansible_collections.fumidai.vpc.plugins.module_utils import vpc_reader as reader
from ansible_collections.fumidai.vpc.plugins.module_utils.vpc_model import VpcModel

from tests.support.aws_seed import REGION
from tests.unit import inventory_helpers as base

seeded = base.aws  # the fixture: in-process moto with the project's images, an AwsSeed


@pytest.fixture
def aws(seeded):
    stack = seeded.project()
    yield seeded.ec2, seeded, {"vpc": stack.vpc_id, "hosts": stack.hosts}


def test_snake_is_camel_dict_to_snake_dict():
    item = {"InstanceId": "i-1", "TargetGroupARNs": ["a"], "Tags": [{"Key": "CamelKey", "Value": "v"}],
            "NetworkInterfaces": [{"Attachment": {"DeviceIndex": 0}, "Groups": [{"GroupId": "sg-1"}]}],
            "Nested": [[{"IpV6Thing": 1}]], "State": {"Name": "running"}}
    assert reader.snake(item) == camel_dict_to_snake_dict(item, ignore_list=["Tags"])
    assert reader.facts_item(item)["tags"] == {"CamelKey": "v"}
    projected = reader.facts_item(item, ("InstanceId", "NetworkInterfaces.Groups", "Missing"))
    assert projected == {"instance_id": "i-1", "network_interfaces": [{"groups": [{"group_id": "sg-1"}]}], "tags": {}}


def test_reads_the_parts_asked_for_in_the_model_shape(aws):
    ec2, _topo, project = aws
    facts = reader.read(ec2, ["instances", "subnets", "route_tables", "security_groups", "network_acls",
                              "internet_gateways", "nat_gateways", "vpcs", "addresses", "volumes"],
                        vpc_ids=[project["vpc"]], instance_filters={"tag:Project": "fumidai"}, workers=4)
    assert {i["tags"]["Name"] for i in facts["instances"]} == {"bastion", "nat-instance", "web01", "web02"}
    assert all(isinstance(i["tags"], dict) and i["state"]["name"] == "running" for i in facts["instances"])
    assert len(facts["subnets"]) == 4 and len(facts["internet_gateways"]) == 1 and len(facts["nat_gateways"]) == 1
    assert {v["vpc_id"] for v in facts["vpcs"]} == {project["vpc"]} and facts["addresses"]
    assert facts["network_acls"][0]["entries"] and "ip_permissions" in facts["security_groups"][0]
    model = VpcModel(facts)
    tiers = {h: model.tier(project["hosts"][h]["subnet"]) for h in project["hosts"]}
    assert tiers == {"bastion": "public", "nat-instance": "public", "web01": "private", "web02": "private"}
    web01 = model.instance_by_id(project["hosts"]["web01"]["id"])
    assert [g["group_name"] for g in model.instance_groups(web01)] == ["fumidai-web"]
    assert model.nacl_for_subnet(web01["subnet_id"])["is_default"]


def test_only_the_parts_asked_for_and_filters_apply(aws):
    ec2, topo, project = aws
    other = topo.vpc("other", "10.9.0.0/16")
    topo.instance(topo.subnet(other, "lonely", "10.9.1.0/24"), "stranger", project=None)
    facts = reader.read(ec2, ["instances"], instance_fields=("InstanceId", "Tags"),
                        instance_filters={"tag:Project": "fumidai", "instance-state-name": "running"})
    assert set(facts) == {"instances"} and len(facts["instances"]) == 4
    assert set(facts["instances"][0]) == {"instance_id", "tags"}
    everything = reader.read(ec2, ["subnets", "vpcs"])
    assert len(everything["subnets"]) > 4 and other in {v["vpc_id"] for v in everything["vpcs"]}
    assert reader.read(ec2, ["subnets"], vpc_ids=[other])["subnets"][0]["tags"]["Name"] == "lonely"


def test_images_of_the_listed_instances_in_one_call(aws):
    ec2, topo, _project = aws
    image = ec2.register_image(Name="my-own-image", RootDeviceName="/dev/xvda")["ImageId"]
    subnet = topo.subnet(topo.vpc("img", "10.8.0.0/16"), "img-subnet", "10.8.1.0/24")
    ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1, NetworkInterfaces=[{"DeviceIndex": 0, "SubnetId": subnet}],
                      TagSpecifications=topo.spec("instance", "imaged"))
    calls = []
    original = ec2.describe_images
    ec2.describe_images = lambda **kw: calls.append(kw) or original(**kw)
    facts = reader.read(ec2, ["instances", "images"], instance_filters={"tag:Project": "fumidai"})
    assert len(calls) == 1 and sorted(calls[0]["Filters"][0]["Values"]) == sorted(
        {i["image_id"] for i in facts["instances"]})
    assert sorted(i["name"] for i in facts["images"]) == ["debian-12-amd64-20251006-2257", "my-own-image"]
    ec2.deregister_image(ImageId=image)  # an image gone is just absent
    assert [i["image_id"] for i in reader.read(ec2, ["images"])["images"]] == [topo.ami]
    assert reader.read(ec2, ["images"], instance_filters={"tag:Name": "nobody"}) == {"images": []}


def test_pagination_reads_every_page(aws):
    ec2, topo, project = aws
    subnet = project["hosts"]["web01"]["subnet"]
    for n in range(6):
        topo.instance(subnet, f"extra{n}", "web")
    original = ec2.get_paginator

    def small_pages(operation):
        paginator = original(operation)
        paginate = paginator.paginate
        paginator.paginate = lambda **kw: paginate(**{**kw, "PaginationConfig": {"PageSize": 5}})
        return paginator

    ec2.get_paginator = small_pages
    assert len(reader.read(ec2, ["instances"])["instances"]) == 10


def test_load_balancers_with_listeners_and_target_health(aws):
    ec2, _topo, project = aws
    elbv2 = boto3.client("elbv2", region_name=REGION)
    subnets = [s["SubnetId"] for s in ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [project["vpc"]]}])[
        "Subnets"] if s["CidrBlock"].startswith("10.0.1.") or s["CidrBlock"].startswith("10.0.2.")]
    lb = elbv2.create_load_balancer(Name="fumidai-alb", Subnets=subnets)["LoadBalancers"][0]
    tg = elbv2.create_target_group(Name="fumidai-web", Protocol="HTTP", Port=80, VpcId=project["vpc"])[
        "TargetGroups"][0]
    elbv2.register_targets(TargetGroupArn=tg["TargetGroupArn"], Targets=[{"Id": project["hosts"]["web01"]["id"]}])
    elbv2.create_listener(LoadBalancerArn=lb["LoadBalancerArn"], Protocol="HTTP", Port=80,
                          DefaultActions=[{"Type": "forward", "TargetGroupArn": tg["TargetGroupArn"]}])
    facts = reader.read(ec2, ["load_balancers"], elbv2=elbv2, vpc_ids=[project["vpc"]])
    listener = facts["load_balancers"][0]["listeners"][0]
    assert listener["port"] == 80
    assert listener["rules"][0]["is_default"] and \
        listener["rules"][0]["actions"][0]["target_group_arn"] == tg["TargetGroupArn"]
    health = facts["target_groups"][0]["targets_health_description"]
    assert health[0]["target"]["id"] == project["hosts"]["web01"]["id"]
    with pytest.raises(ValueError):
        reader.read(ec2, ["load_balancers"])


def test_errors_name_the_part_and_regions_fail_apart(aws, monkeypatch):
    ec2, _topo, _project = aws
    with pytest.raises(ValueError):
        reader.read(ec2, ["everything"])
    broken = boto3.client("ec2", region_name="us-east-1")
    monkeypatch.setattr(broken, "describe_subnets", lambda **kw: (_ for _ in ()).throw(RuntimeError("boom")))
    with pytest.raises(reader.ReaderError, match="describing subnets: boom") as caught:
        reader.read(broken, ["subnets"])
    assert isinstance(caught.value.__cause__, RuntimeError)
    results, failures = reader.read_regions({REGION: ec2, "us-east-1": broken}, ["subnets"])
    assert set(results) == {REGION} and isinstance(failures["us-east-1"], RuntimeError)


def test_endpoint_from_the_environment(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:5000")
    monkeypatch.delenv("AWS_ENDPOINT_URL_EC2", raising=False)
    assert reader.endpoint_url("ec2") == "http://127.0.0.1:5000"
    monkeypatch.setenv("AWS_ENDPOINT_URL_EC2", "http://127.0.0.1:5001")
    assert reader.endpoint_url("ec2") == "http://127.0.0.1:5001"
    session = boto3.session.Session(aws_access_key_id="x", aws_secret_access_key="y")
    made = reader.clients(session, "ec2", ["ap-northeast-1", "us-east-1"])
    assert {c.meta.endpoint_url for c in made.values()} == {"http://127.0.0.1:5001"}
    assert made["us-east-1"].meta.region_name == "us-east-1"
