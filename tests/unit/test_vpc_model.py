"""vpc_model: tiers from route tables, the security groups of an instance, NACLs, gateways, names."""

from __future__ import annotations

from ansible_collections.fumidai.vpc.plugins.module_utils import vpc_model as model
from ansible_collections.fumidai.vpc.plugins.module_utils.vpc_model import VpcModel

from tests.unit.fumidai_state import IGW, INSTANCES, NAT_GW, SG, SUBNETS, VPC, clean_state, instance, route_table


def subnet(name: str) -> str:
    return SUBNETS[name][0]


def test_tags_names_and_group_names():
    assert model.tags_dict({"Tags": [{"Key": "Name", "Value": "x"}]}) == {"Name": "x"}
    assert model.tags_dict({"tags": [{"key": "Role", "value": "web"}]}) == {"Role": "web"}
    assert model.tag_value({"tags": {"Name": "a"}}, "Role", "none") == "none"
    assert model.sanitize_group_name("private-subnet-1") == "private_subnet_1"
    assert model.label({"instance_id": "i-1", "tags": {"Name": "web01"}}) == "web01 (i-1)"
    assert model.label(None, "sg-1") == "sg-1"
    assert "\x1b" not in model.label({"group_id": "sg-1", "tags": {"Name": "evil\x1b[2J"}})


def test_tiers_from_route_tables_explicit_association_else_main():
    vpc = VpcModel(clean_state())
    assert vpc.tier(subnet("public-subnet-1")) == model.PUBLIC
    assert vpc.tier(subnet("private-subnet-1")) == model.PRIVATE
    assert vpc.is_public(subnet("public-subnet-2")) and not vpc.is_public(subnet("private-subnet-2"))
    # A subnet without its own table follows the main table: make the main table public.
    state = clean_state()
    route_table(state, "rtb-0main")["routes"].append({"destination_cidr_block": "0.0.0.0/0", "gateway_id": IGW})
    assert VpcModel(state).tier("subnet-0new", VPC) == model.PUBLIC
    assert VpcModel(clean_state()).tier("subnet-0new", VPC) == model.PRIVATE
    assert model.subnet_is_public(subnet("public-subnet-1"), VPC, state["route_tables"])


def test_default_route_targets_ipv4_and_ipv6():
    vpc = VpcModel(clean_state())
    assert vpc.default_route_target(subnet("public-subnet-1")) == ("internet_gateway", IGW)
    assert vpc.default_route_target(subnet("private-subnet-1")) == ("nat_gateway", NAT_GW)
    assert vpc.default_route_target(subnet("private-subnet-2")) == ("instance", INSTANCES["nat-instance"][0])
    assert vpc.default_route_target(subnet("public-subnet-1"), ipv6=True) is None
    state = clean_state()
    route_table(state, "rtb-0prv1")["routes"].append(
        {"destination_ipv6_cidr_block": "::/0", "egress_only_internet_gateway_id": "eigw-1"})
    assert VpcModel(state).default_route_target(subnet("private-subnet-1"), ipv6=True) == ("other", "eigw-1")
    # An IPv6 route to an IGW does not make a subnet public: the tier is decided by 0.0.0.0/0.
    route_table(state, "rtb-0prv1")["routes"][-1] = {"destination_ipv6_cidr_block": "::/0", "gateway_id": IGW}
    assert VpcModel(state).tier(subnet("private-subnet-1")) == model.PRIVATE


def test_instance_groups_instance_list_and_primary_interface_merged():
    state = clean_state()
    bastion = instance(state, "bastion")
    vpc = VpcModel(state)
    assert [g["group_name"] for g in vpc.instance_groups(bastion)] == ["fumidai-bastion"]
    bastion["security_groups"].append({"group_id": "sg-extra", "group_name": "extra"})
    assert model.instance_group_ids(bastion) == [SG["bastion"], "sg-extra"]
    assert vpc.instance_groups(bastion)[-1] == {"group_id": "sg-extra"}  # not described: a stub
    # Only the primary interface reports them (some emulations): still found.
    only_eni = {"network_interfaces": [
        {"attachment": {"device_index": 1}, "groups": [{"group_id": "sg-second"}]},
        {"attachment": {"device_index": 0}, "groups": [{"group_id": "sg-primary"}]}]}
    assert model.instance_group_ids(only_eni) == ["sg-primary"]
    assert model.instance_group_ids(only_eni, all_interfaces=True) == ["sg-second", "sg-primary"]
    assert model.instance_group_ids({}) == []


def test_instances_by_id_and_eni_and_gone_ones_left_out():
    state = clean_state()
    web01 = instance(state, "web01")
    state["instances"].append({"instance_id": "i-gone", "state": {"name": "terminated"}})
    vpc = VpcModel(state)
    assert vpc.instance_by_id(web01["instance_id"]) is web01
    assert vpc.instance_by_eni(web01["network_interfaces"][0]["network_interface_id"]) is web01
    assert vpc.instance_by_id("i-gone") is None and vpc.instance_by_eni("eni-none") is None
    assert VpcModel(state, include_gone=True).instance_by_id("i-gone")
    assert str(vpc.instance_net(web01)) == "10.0.11.10/32"


def test_nacl_igw_and_images():
    state = clean_state()
    vpc = VpcModel(state)
    assert vpc.nacl_for_subnet(subnet("private-subnet-1"))["nacl_id"] == "acl-0def"
    assert vpc.attached_igw(VPC)["internet_gateway_id"] == IGW
    assert vpc.attached_igw("vpc-other") is None
    state["network_acls"].append({"network_acl_id": "acl-1", "vpc_id": VPC,
                                  "associations": [{"subnet_id": subnet("public-subnet-1")}]})
    state["network_acls"][0]["subnets"] = []
    state["images"] = [{"image_id": "ami-1", "name": "debian-12"}]
    vpc = VpcModel(state)
    assert vpc.nacl_for_subnet(subnet("public-subnet-1"))["network_acl_id"] == "acl-1"
    assert vpc.nacl_for_subnet(subnet("public-subnet-2"))["nacl_id"] == "acl-0def"  # the default one
    assert vpc.image_of({"image_id": "ami-1"})["name"] == "debian-12" and vpc.image_of({}) is None
    assert str(vpc.subnet_net(subnet("public-subnet-1"))) == "10.0.1.0/24"
