"""bastion_ec2's login identity: every host's ansible_user, and the hop's user on the bastion, come from the
host's image through plugins/module_utils/login.py; login_user overrides all, validated; tags and image
names never become user names."""

from __future__ import annotations

import dataclasses
import shlex

import pytest
from ansible.errors import AnsibleError

from tests.support.aws_seed import project_plan
from tests.unit import inventory_helpers as base
from tests.unit.inventory_helpers import run_inventory

aws = base.aws  # the fixture: in-process moto with the project's images, an AwsSeed

HOSTS = {"bastion", "nat-instance", "web01", "web02"}


def hop_login(result, host: str) -> str:
    """The user@address the ProxyCommand of ``host`` logs in to the bastion as."""
    command = shlex.split(result.vars(host)["ansible_ssh_common_args"])[-1]
    return shlex.split(command.split("=", 1)[1])[-3]


def users(result) -> dict:
    return {host: result.vars(host)["ansible_user"] for host in result.hosts}


def launch_from(aws, image_id: str, name: str, subnet: str) -> None:
    aws.ec2.run_instances(ImageId=image_id, MinCount=1, MaxCount=1, InstanceType="t3.micro",
                          NetworkInterfaces=[{"DeviceIndex": 0, "SubnetId": subnet}],
                          TagSpecifications=aws.spec("instance", name, Role="web"))


def test_debian_images_log_in_as_admin(aws, tmp_path):
    stack = aws.project()
    result = run_inventory(tmp_path)
    assert users(result) == dict.fromkeys(HOSTS, "admin")
    assert hop_login(result, "web01") == f"admin@{stack.hosts['bastion']['public']}"
    assert result.warnings == []


def test_amazon_linux_images_log_in_as_ec2_user(aws, tmp_path):
    stack = aws.project(ami_os="al2023")
    result = run_inventory(tmp_path)
    assert users(result) == dict.fromkeys(HOSTS, "ec2-user")
    bastion_ip = stack.hosts["bastion"]["public"]
    assert hop_login(result, "web02") == f"ec2-user@{bastion_ip}"
    assert result.vars("web01")["bastion"]["user"] == "ec2-user"
    # The bastion's own connection and the hop share one master: the socket is named after the same user.
    assert result.vars("bastion")["ansible_control_path"] in \
        shlex.split(result.vars("web01")["ansible_ssh_common_args"])[-1]
    assert result.warnings == []


def test_the_hop_logs_in_as_the_bastions_own_user(aws, tmp_path):
    plan = project_plan()
    plan.hosts = [dataclasses.replace(h, ami_os="al2023") if h.role == "bastion" else h for h in plan.hosts]
    stack = aws.build(plan)
    result = run_inventory(tmp_path)
    assert users(result) == {"bastion": "ec2-user", "nat-instance": "admin", "web01": "admin", "web02": "admin"}
    assert hop_login(result, "web01") == f"ec2-user@{stack.hosts['bastion']['public']}"


def test_the_bastion_left_out_by_filters_still_gives_its_user(aws, tmp_path):
    plan = project_plan()
    plan.hosts = [dataclasses.replace(h, ami_os="al2023") if h.role == "bastion" else h for h in plan.hosts]
    stack = aws.build(plan)
    result = run_inventory(tmp_path, filters={"tag:Role": "web"})
    assert result.hosts == {"web01", "web02"}
    assert hop_login(result, "web01") == f"ec2-user@{stack.hosts['bastion']['public']}"


def test_an_unknown_image_falls_back_to_admin_with_one_warning(aws, tmp_path):
    stack = aws.project()
    image = aws.ec2.register_image(Name="my-own-image", RootDeviceName="/dev/xvda")["ImageId"]
    launch_from(aws, image, "web03", stack.subnets["private-subnet-1"])
    launch_from(aws, image, "web04", stack.subnets["private-subnet-1"])
    result = run_inventory(tmp_path)
    assert result.vars("web03")["ansible_user"] == result.vars("web04")["ansible_user"] == "admin"
    assert result.vars("web01")["ansible_user"] == "admin"
    assert len(result.warnings) == 1, result.warnings
    assert image in result.warnings[0] and "2 instances" in result.warnings[0]
    assert "login_user" in result.warnings[0]


@pytest.mark.parametrize("name", ["ec2-user", "root", 'x\nMatch exec "touch /tmp/pwned"', "$(touch /tmp/x)",
                                  "debian-12-amd64-20990101-0000", "al2023-ami-2023.9.1-x86_64", "-oProxyCommand=x"])
def test_hostile_image_names_are_harmless(aws, tmp_path, name):
    stack = aws.project()
    image = aws.ec2.register_image(Name=name, RootDeviceName="/dev/xvda")["ImageId"]
    aws.ec2.create_tags(Resources=[image], Tags=[{"Key": "Name", "Value": name}, {"Key": "User", "Value": name}])
    launch_from(aws, image, "web03", stack.subnets["private-subnet-1"])
    result = run_inventory(tmp_path)
    # Not the publisher's account: a look-alike name is not trusted, and no image text becomes a user.
    assert result.vars("web03")["ansible_user"] == "admin"
    assert len(result.warnings) == 1 and "\n" not in result.warnings[0] and name not in result.warnings[0]
    assert set(users(result).values()) == {"admin"} and result.vars("web03")["bastion"]["user"] == "admin"


def test_login_user_overrides_every_host_and_the_hop(aws, tmp_path):
    stack = aws.project(ami_os="al2023")
    image = aws.ec2.register_image(Name="my-own-image", RootDeviceName="/dev/xvda")["ImageId"]
    launch_from(aws, image, "web03", stack.subnets["private-subnet-1"])
    result = run_inventory(tmp_path, login_user="ops")
    assert users(result) == dict.fromkeys(HOSTS | {"web03"}, "ops")
    assert hop_login(result, "web01") == f"ops@{stack.hosts['bastion']['public']}"
    assert result.warnings == []  # no image is looked at


def test_login_user_from_the_environment(aws, tmp_path, monkeypatch):
    aws.project()
    monkeypatch.setenv("FUMIDAI_LOGIN_USER", "deploy_1")
    assert set(users(run_inventory(tmp_path)).values()) == {"deploy_1"}


@pytest.mark.parametrize("bad", ["ops user", "root;id", "-oProxyCommand=x", "Admin", "a" * 33, "x\ny", "$(id)"])
def test_login_user_is_validated(aws, tmp_path, bad):
    aws.project()
    with pytest.raises(AnsibleError, match="login_user .* is not a user name"):
        run_inventory(tmp_path, login_user=bad)


def test_deprecated_bastion_user_still_sets_the_bastions_user(aws, tmp_path):
    stack = aws.project()
    result = run_inventory(tmp_path, bastion_user="jump")
    assert result.vars("bastion")["ansible_user"] == "jump"
    assert result.vars("web01")["ansible_user"] == "admin"
    assert hop_login(result, "web01") == f"jump@{stack.hosts['bastion']['public']}"


def test_users_are_served_from_the_cache_too(aws, tmp_path):
    aws.project(ami_os="al2023")
    cache = {"cache": True, "cache_plugin": "ansible.builtin.jsonfile", "cache_connection": str(tmp_path / "cache")}
    first = run_inventory(tmp_path, **cache)
    aws.ec2.deregister_image(ImageId=aws.ami)  # gone from AWS: the cached answer is still the one used
    again = run_inventory(tmp_path, **cache)
    assert users(again) == users(first) == dict.fromkeys(HOSTS, "ec2-user") and again.warnings == []
    # The same cached listing serves an override too.
    assert set(users(run_inventory(tmp_path, login_user="ops", **cache)).values()) == {"ops"}
