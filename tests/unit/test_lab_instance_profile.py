"""The lab's stand-in for an instance profile: only an instance launched with one gets credentials, root-only."""

from __future__ import annotations

import io
import ipaddress
import tarfile

from lab.plan import build_plan
from lab.render import instance
from tests.unit.test_lab_routes import topo

OFFICE = ipaddress.ip_network("192.168.250.0/24")
PROFILE_ARN = "arn:aws:iam::123456789012:instance-profile/fumidai-nat-watchdog-ap-northeast-1"
AWS_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing-secret"}


def plan_with_profile():
    described = topo([], "i-000000000000000a1")
    standby = next(i for i in described["instances"] if i["tags"]["Name"] == "nat-instance-standby")
    standby["iam_instance_profile"] = {"arn": PROFILE_ARN, "id": "AIPA0000000000000000"}
    return build_plan(described, OFFICE)


def members(payload: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(payload)) as tar:
        return {m.name: m for m in tar.getmembers()}


def file_text(payload: bytes, name: str) -> str:
    with tarfile.open(fileobj=io.BytesIO(payload)) as tar:
        return tar.extractfile(name).read().decode()


def test_the_plan_keeps_the_profile_of_the_instance_launched_with_one():
    nodes = {n["name"]: n for n in plan_with_profile()["nodes"]}
    assert nodes["nat-instance-standby"]["instance_profile"] == PROFILE_ARN
    assert nodes["nat-instance"]["instance_profile"] == ""
    assert nodes["web02"]["instance_profile"] == ""


def test_an_instance_with_a_profile_gets_the_local_apis_credentials_readable_by_root_only():
    nodes = {n["name"]: n for n in plan_with_profile()["nodes"]}
    credentials = instance.profile_credentials(nodes["nat-instance-standby"], AWS_ENV)
    payload = instance.boot_payload("#!/bin/sh\n", credentials)
    found = members(payload)
    assert found["root/.aws"].isdir() and found["root/.aws"].mode == 0o700
    assert found["root/.aws/credentials"].mode == 0o600
    lines = file_text(payload, "root/.aws/credentials").splitlines()
    assert "[default]" in lines
    assert "aws_access_key_id = testing" in lines
    assert "aws_secret_access_key = testing-secret" in lines
    # The boot script is still there (positive control of the tar's shape).
    assert file_text(payload, "usr/local/sbin/fumidai-lab-net") == "#!/bin/sh\n"


def test_an_instance_without_a_profile_gets_no_credentials():
    nodes = {n["name"]: n for n in plan_with_profile()["nodes"]}
    for name in ("nat-instance", "web02", "bastion"):
        assert instance.profile_credentials(nodes[name], AWS_ENV) is None
    payload = instance.boot_payload("#!/bin/sh\n", None)
    assert not [name for name in members(payload) if name.startswith("root/")]
    assert "usr/local/sbin/fumidai-lab-net" in members(payload)
