"""The login identity (plugins/module_utils/login.py): one table from image OS to login user and image lookup,
and a classifier of EC2 images that never lets AWS text become a user name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from ansible_collections.fumidai.vpc.plugins.module_utils import login

ROOT = Path(__file__).resolve().parents[2]


def test_table_holds_the_two_images_fumidai_launches():
    assert login.choices() == ["debian12", "al2023"]
    assert login.DEFAULT_OS == "debian12"
    assert login.image_lookup("debian12") == {"os": "debian12", "owner": "136693071363",
                                              "name": "debian-12-amd64-*", "user": "admin"}
    assert login.image_lookup("al2023") == {"os": "al2023", "owner": "137112412989",
                                            "name": "al2023-ami-2023.*-x86_64", "user": "ec2-user"}
    assert login.login_user("al2023") == "ec2-user"
    assert sorted(login.LOGIN_USERS) == ["admin", "ec2-user"]


def test_table_cannot_be_changed_at_run_time():
    with pytest.raises(TypeError):
        login.IMAGE_OS["evil"] = login.IMAGE_OS["debian12"]  # type: ignore[index]


@pytest.mark.parametrize("bad", ["windows", "", None, "DEBIAN12", ["debian12"], 12])
def test_unknown_os_is_refused_with_the_choices(bad):
    assert "debian12, al2023" in login.image_os_problem(bad)
    assert login.image_os_problem(bad).startswith("ami_os: ")
    with pytest.raises(login.UnknownImageOS, match="one of debian12, al2023"):
        login.login_user(bad)


def test_every_image_of_the_local_api_is_classified():
    """The images the moto server serves (lab/moto_amis.json, amazon.aws's snake_case) and what provisioning
    looks up: every one classified, the arm64 Debian too (the login user does not depend on the architecture)."""
    images = json.loads((ROOT / "lab" / "moto_amis.json").read_text())
    found = {image["name"]: login.classify_image(image) for image in images}
    assert found == {"debian-12-amd64-20250610-2137": "debian12", "debian-12-amd64-20251006-2257": "debian12",
                     "debian-12-arm64-20251006-2257": "debian12",
                     "al2023-ami-2023.9.20251014.0-kernel-6.1-x86_64": "al2023"}


def describe_images_entry(**changes) -> dict:
    """One image as boto3's DescribeImages returns it."""
    return {"ImageId": "ami-0c3d4e5f6a7b80921", "Name": "al2023-ami-2023.9.20251014.0-kernel-6.1-x86_64",
            "OwnerId": "137112412989", "Description": "Amazon Linux 2023 AMI", "PlatformDetails": "Linux/UNIX",
            **changes}


def test_describe_images_shape_is_classified():
    assert login.classify_image(describe_images_entry()) == "al2023"
    assert login.user_of_image(describe_images_entry()) == "ec2-user"


@pytest.mark.parametrize("changes", [
    {"OwnerId": "123456789012"},                         # a look-alike name from another account
    {"Name": "amzn2-ami-hvm-2.0.20240131-x86_64-gp2"},   # another product of the same publisher
    {"PlatformDetails": "Windows"},
    {"Name": None},
    {"OwnerId": 137112412989},                            # not the text DescribeImages returns
])
def test_images_that_match_no_row_are_unknown(changes):
    image = describe_images_entry(**changes)
    assert login.classify_image(image) is None
    assert login.user_of_image(image) is None
    assert login.user_of_image(image, default="admin") == "admin"


@pytest.mark.parametrize("image", [None, "al2023", [], {}])
def test_anything_but_an_image_is_unknown(image):
    assert login.classify_image(image) is None


def test_the_user_never_comes_from_aws_text():
    """Whatever an image says about itself, the user is one of the table's values."""
    hostile = [describe_images_entry(Name="al2023-ami-x; user=root", Description="user: root"),
               describe_images_entry(OwnerId="136693071363", Name="debian-12-$(id)"),
               describe_images_entry(Name="root"), {"name": "debian-12-amd64-x", "owner_id": "136693071363",
                                                    "user": "root"}]
    for image in hostile:
        assert login.user_of_image(image, default="admin") in login.LOGIN_USERS


def test_the_settings_role_offers_exactly_the_table_s_choices():
    """roles/settings validates ami_os when a play loads it (argument_specs must be static YAML): its choices
    are the table's keys, checked here so the two cannot drift."""
    spec = yaml.safe_load((ROOT / "roles" / "settings" / "meta" / "argument_specs.yml").read_text())
    assert spec["argument_specs"]["main"]["options"]["ami_os"]["choices"] == login.choices()
    defaults = yaml.safe_load((ROOT / "roles" / "settings" / "defaults" / "main" / "instances.yml").read_text())
    assert defaults["ami_os"] == login.DEFAULT_OS
    assert "ami_lookup" not in defaults and "ansible_user" not in defaults
