"""aws_teardown's plan filter (roles/aws_teardown/filter_plugins/aws_teardown_plan.py):
which resources teardown deletes, leaves alone (with a warning) or refuses
over, from hand-made *_info results shaped as amazon.aws returns them."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.fumidai.vpc.plugins.filter.teardown_plan import FilterModule, teardown_plan

VPC = "vpc-0aaaaaaaaaaaaaaa1"
OURS = {"Project": "fumidai"}
STACK = {"vpc_id": VPC, "eip_allocation_ids": ["eipalloc-nat", "eipalloc-bastion"],
         "key_pair": {"name": "fumidai", "id": "key-1"},
         "alb_arn": "arn:alb/fumidai-alb", "target_group_arns": ["arn:tg/fumidai-web"]}


def instance(iid: str, name: str, eni: str, tags=OURS) -> dict:
    return {"instance_id": iid, "tags": {**tags, "Name": name}, "network_interfaces": [{"network_interface_id": eni}]}


def eip(allocation: str, name: str, eni: str = "", instance_id: str = "", tags=OURS) -> dict:
    return {"allocation_id": allocation, "public_ip": "198.51.100.1", "network_interface_id": eni,
            "instance_id": instance_id, "tags": {**tags, "Name": name}}


def stack_found(**overrides) -> dict:
    """A provisioned stack as discovery reads it, plus what else the region holds."""
    found = {
        "vpcs": [{"id": VPC, "cidr_block": "10.0.0.0/16", "tags": {**OURS, "Name": "fumidai-vpc"}}],
        "instances": [instance("i-bastion", "bastion", "eni-bastion"), instance("i-web01", "web01", "eni-web01")],
        "nat_gateways": [{"nat_gateway_id": "nat-1", "tags": {**OURS, "Name": "fumidai-nat-gateway"},
                          "nat_gateway_addresses": [{"allocation_id": "eipalloc-nat",
                                                     "network_interface_id": "eni-nat"}]}],
        "route_tables": [{"id": "rtb-main", "tags": {}, "associations": [{"main": True}]},
                         {"id": "rtb-public", "tags": {**OURS, "Name": "fumidai-public"}, "associations": []}],
        "security_groups": [{"group_id": "sg-default", "group_name": "default", "tags": {}},
                            {"group_id": "sg-web", "group_name": "fumidai-web", "description": "web", "tags": OURS,
                             "ip_permissions": [{"user_id_group_pairs": [{"group_id": "sg-alb"}]}]},
                            {"group_id": "sg-alb", "group_name": "fumidai-alb", "description": "alb", "tags": OURS,
                             "ip_permissions": [{"user_id_group_pairs": []}]}],
        "subnets": [{"id": "subnet-1", "cidr_block": "10.0.1.0/24", "tags": {**OURS, "Name": "public-subnet-1"}}],
        "internet_gateways": [{"internet_gateway_id": "igw-1", "tags": {**OURS, "Name": "fumidai-igw"}}],
        "eips": [eip("eipalloc-nat", "fumidai-nat-gateway-eip", eni="eni-nat"),
                 eip("eipalloc-bastion", "fumidai-bastion-eip", eni="eni-bastion", instance_id="i-bastion"),
                 # Tagged like ours, attached to an instance outside the stack.
                 eip("eipalloc-elsewhere", "fumidai-bastion-eip", eni="eni-other", instance_id="i-other"),
                 # Another project's.
                 eip("eipalloc-theirs", "x", tags={"Project": "other"})],
        "load_balancers": [{"load_balancer_arn": "arn:alb/fumidai-alb", "load_balancer_name": "fumidai-alb",
                            "vpc_id": VPC, "tags": OURS},
                           {"load_balancer_arn": "arn:alb/other-alb", "load_balancer_name": "other-alb",
                            "vpc_id": "vpc-other", "tags": OURS}],
        "target_groups": [{"target_group_arn": "arn:tg/fumidai-web", "target_group_name": "fumidai-web",
                           "vpc_id": VPC, "tags": OURS},
                          {"target_group_arn": "arn:tg/other-web", "target_group_name": "other-web",
                           "vpc_id": "vpc-other", "tags": OURS}],
        "key_pairs": [{"key_name": "fumidai", "key_pair_id": "key-1", "tags": OURS}],
    }
    found.update(overrides)
    return found


def plan(found: dict, stack: dict = STACK) -> dict:
    return teardown_plan(found, stack, "Project", "fumidai")


def ids(result: dict, kind: str) -> list:
    key = "arn" if kind in ("load_balancers", "target_groups") else "allocation_id" if kind == "eips" else "id"
    return [item[key] for item in result["delete"][kind]]


def test_registered_under_its_name():
    assert FilterModule().filters()["teardown_plan"] is teardown_plan


def test_a_whole_stack_is_planned_in_deletion_order():
    result = plan(stack_found())
    assert result["vpc_found"] is True
    assert result["foreign"] == []
    assert {kind: ids(result, kind) for kind in result["delete"]} == {
        "load_balancers": ["arn:alb/fumidai-alb"], "target_groups": ["arn:tg/fumidai-web"],
        "instances": ["i-bastion", "i-web01"], "route_tables": ["rtb-public"], "nat_gateways": ["nat-1"],
        "eips": ["eipalloc-nat", "eipalloc-bastion"], "security_groups": ["sg-web", "sg-alb"],
        "subnets": ["subnet-1"], "internet_gateways": ["igw-1"], "vpcs": [VPC], "key_pairs": ["key-1"]}
    assert result["lines"][0] == "load-balancer arn:alb/fumidai-alb (fumidai-alb)"
    assert "instance i-bastion (bastion)" in result["lines"]
    assert result["lines"][-1] == "key-pair key-1 (fumidai)"
    assert result["count"] == len(result["lines"]) == 14
    assert result["eni_ids"] == ["eni-bastion", "eni-nat", "eni-web01"]


def test_only_groups_with_group_references_get_their_rules_revoked():
    groups = {g["id"]: g["references_groups"] for g in plan(stack_found())["delete"]["security_groups"]}
    assert groups == {"sg-web": True, "sg-alb": False}


def test_eip_attached_outside_the_stack_is_left_alone_with_its_reason():
    result = plan(stack_found())
    assert "eipalloc-elsewhere" not in ids(result, "eips")
    assert result["keep"] == [
        "eip eipalloc-elsewhere (198.51.100.1, fumidai-bastion-eip): tagged Project=fumidai but neither recorded "
        "for this stack nor attached to it (attached to i-other): left alone"]


def test_recorded_eip_attached_elsewhere_is_neither_detached_nor_released():
    found = stack_found(eips=[eip("eipalloc-bastion", "fumidai-bastion-eip", eni="eni-x", instance_id="i-x")])
    result = plan(found)
    assert ids(result, "eips") == []
    assert result["keep"] == ["eip eipalloc-bastion (198.51.100.1, fumidai-bastion-eip): attached to i-x, which is "
                              "not part of this stack: left alone (neither detached nor released)"]


def test_unrecorded_eip_attached_to_the_stack_is_released():
    # Provisioning interrupted before the bastion's EIP was recorded: found by its attachment.
    found = stack_found()
    result = plan(found, {**STACK, "eip_allocation_ids": []})
    assert ids(result, "eips") == ["eipalloc-nat", "eipalloc-bastion"]


def test_untagged_eip_attached_to_the_stack_is_not_taken():
    found = stack_found(eips=[eip("eipalloc-x", "x", eni="eni-web01", instance_id="i-web01", tags={})])
    result = plan(found, {**STACK, "eip_allocation_ids": []})
    assert ids(result, "eips") == []
    assert result["keep"] == []


def test_recorded_eip_that_lost_the_tag_is_left_alone():
    found = stack_found(eips=[eip("eipalloc-nat", "nat", tags={"Project": "other"})])
    result = plan(found)
    assert ids(result, "eips") == []
    assert result["keep"] == ["eip eipalloc-nat (198.51.100.1, nat): recorded for this stack but no longer tagged "
                              "Project=fumidai: left alone"]


@pytest.mark.parametrize(("key_pairs", "expected_keep"), [
    ([{"key_name": "fumidai", "key_pair_id": "key-2", "tags": OURS}],
     "key-pair key-2 (fumidai): not the recorded key pair key-1 (re-imported since): left alone"),
    ([{"key_name": "fumidai", "key_pair_id": "key-1", "tags": {"Project": "other"}}],
     "key-pair key-1 (fumidai): no longer tagged Project=fumidai: left alone"),
])
def test_key_pair_only_while_it_is_the_recorded_one(key_pairs, expected_keep):
    result = plan(stack_found(key_pairs=key_pairs))
    assert ids(result, "key_pairs") == []
    assert result["keep"][-1] == expected_keep


def test_vpc_gone_deletes_only_what_the_record_names_by_id():
    found = stack_found(vpcs=[], instances=[], nat_gateways=[], route_tables=[], security_groups=[], subnets=[],
                        internet_gateways=[], load_balancers=[],
                        eips=[eip("eipalloc-nat", "fumidai-nat-gateway-eip"),
                              eip("eipalloc-bastion", "fumidai-bastion-eip", eni="eni-y", instance_id="i-y")],
                        target_groups=[{"target_group_arn": "arn:tg/fumidai-web", "target_group_name": "fumidai-web",
                                        "vpc_id": "vpc-gone", "tags": OURS}])
    result = plan(found)
    assert result["vpc_found"] is False
    assert {kind: ids(result, kind) for kind in result["delete"] if result["delete"][kind]} == {
        "target_groups": ["arn:tg/fumidai-web"], "eips": ["eipalloc-nat"], "key_pairs": ["key-1"]}
    assert [line.split(":")[0] for line in result["keep"]] == [
        "eip eipalloc-bastion (198.51.100.1, fumidai-bastion-eip)"]


def test_resources_without_the_tag_inside_the_vpc_are_foreign():
    found = stack_found()
    found["instances"].append(instance("i-someone", "web01", "eni-someone", tags={"Owner": "someone"}))
    found["subnets"].append({"id": "subnet-x", "cidr_block": "10.0.9.0/24", "tags": {"Name": "theirs"}})
    found["load_balancers"].append({"load_balancer_arn": "arn:alb/theirs", "load_balancer_name": "theirs",
                                    "vpc_id": VPC, "tags": {}})
    result = plan(found)
    assert result["foreign"] == ["instance i-someone (web01)", "subnet subnet-x (theirs)",
                                 "load-balancer arn:alb/theirs (theirs)"]


def test_a_vpc_without_the_project_tag_is_foreign():
    found = stack_found(vpcs=[{"id": VPC, "tags": {"Name": "not-ours"}}])
    result = plan(found)
    assert ids(result, "vpcs") == []
    assert result["foreign"] == [f"vpc {VPC} (not-ours) does not carry Project=fumidai"]


def test_another_stacks_tagged_load_balancer_outside_the_vpc_is_ignored():
    result = plan(stack_found())
    assert "arn:alb/other-alb" not in ids(result, "load_balancers")
    assert "arn:tg/other-web" not in ids(result, "target_groups")
    assert not any("other-alb" in line or "other-web" in line for line in result["keep"] + result["foreign"])


def test_hostile_names_are_shown_on_one_printable_line():
    found = stack_found(instances=[instance("i-1", "a\nMatch exec \"touch /tmp/x\"\x1b[2J" + "x" * 200, "eni-1")])
    line = plan(found)["lines"][2]
    assert line.startswith("instance i-1 (a?Match exec \"touch /tmp/x\"?[2J")
    assert line.endswith("...)")
    assert "\n" not in line and "\x1b" not in line
    assert len(line) <= len("instance i-1 ()") + 64


@pytest.mark.parametrize(("flag", "protected"), [("true", True), (True, True), ("false", False), (None, False)])
def test_deletion_protection_is_reported(flag, protected):
    found = stack_found()
    found["load_balancers"][0]["deletion_protection_enabled"] = flag
    result = plan(found)
    assert result["protected"] == (["load-balancer arn:alb/fumidai-alb (fumidai-alb)"] if protected else [])
    assert ids(result, "load_balancers") == ["arn:alb/fumidai-alb"]


def test_a_stack_without_a_vpc_is_an_error():
    with pytest.raises(AnsibleFilterError, match="no vpc_id"):
        teardown_plan(stack_found(), {}, "Project", "fumidai")
