"""One login identity end to end: a lab provisioned with ami_os=al2023 is reached as ec2-user on every host.

Provisioning launches the Amazon Linux image that the table in plugins/module_utils/login.py names and
tells people to log in as ec2-user; the inventory gives every host (the bastion and the hop too) that
user; the hosts answer `id -un` with it; the lab creates that user in each container, as the image would
have it. The host keys are pinned from the consoles by fumidai.vpc.host_keys, as configure would.

Its own lab (steps up to hosts, no configure: the login is what is tested, and configuring would double
the time), built and taken down before the session's lab (tests/lab/conftest.py runs this module first).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pytest
import yaml
from ansible_collections.fumidai.vpc.plugins.module_utils import login

from lab import config as lab_config
from lab import steps as lab_steps
from tests.lab.lab_helpers import lab_cli
from tests.support.playbook import plain

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
ONE_LINE = re.compile(r"^(\S+) \| (\w+)(?:!)?(?: \| rc=(\d+))? .*?(?:\(stdout\) (\S+))?$", re.MULTILINE)


def _ansible(env: dict, *args: str) -> subprocess.CompletedProcess:
    extra = ["-e", f"@{lab_config.LAB_VARS.relative_to(ROOT)}"]
    return subprocess.run([str(BIN / args[0]), *args[1:], *extra], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)


@pytest.fixture(scope="module")
def al2023_lab():
    if os.environ.get("FUMIDAI_LAB_REUSE") == "1":
        pytest.skip("FUMIDAI_LAB_REUSE: the running lab is the session's; this test builds a lab of its own")
    if os.geteuid() != 0:
        pytest.fail("the lab needs root (network interfaces, routes, rootful podman)")
    started = time.monotonic()
    # --no-teardown: moto's state goes with the server; the teardown playbook would double this test's time.
    lab_cli("down", "--no-teardown")
    try:
        lab_cli("up", "--until", "hosts", "--ami-os", "al2023")
        env = lab_steps.ansible_env()
        pinned = _ansible(env, "ansible-playbook", "fumidai.vpc.host_keys")
        assert pinned.returncode == 0, pinned.stdout[-3000:] + pinned.stderr[-2000:]
        yield json.loads(lab_config.STATE_FILE.read_text()), env
    finally:
        lab_cli("down", "--no-teardown")
        print(f"\nal2023 lab (up to hosts, host keys, down): {time.monotonic() - started:.0f}s")


def test_every_host_of_an_al2023_lab_answers_as_ec2_user(al2023_lab):
    state, env = al2023_lab
    instances = {n["name"] for n in state["nodes"] if n["kind"] == "instance"}
    assert {n["login_user"] for n in state["nodes"] if n["kind"] == "instance"} == {"ec2-user"}, \
        "the lab reads the login user from each instance's image"
    proc = _ansible(env, "ansible", "all", "-m", "ansible.builtin.command", "-a", "id -un", "-o")
    answers = {host: (status, user) for host, status, _rc, user in ONE_LINE.findall(proc.stdout)}
    assert "UNREACHABLE" not in proc.stdout, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert set(answers) == instances, (answers, proc.stdout[-3000:], proc.stderr[-2000:])
    assert {user for _status, user in answers.values()} == {"ec2-user"}, answers
    assert "bastion" in answers, "the bastion is reached as the image's user too"


def test_provisioning_launched_an_al2023_image_of_the_table(al2023_lab):
    """The launched image is what the classifier (the inventory's way to each host's user) calls al2023."""
    _state, env = al2023_lab
    ec2 = boto3.client("ec2", endpoint_url=env["AWS_ENDPOINT_URL"], region_name=env["AWS_DEFAULT_REGION"],
                       aws_access_key_id=env["AWS_ACCESS_KEY_ID"], aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"])
    reservations = ec2.describe_instances(Filters=[{"Name": "tag:Project", "Values": ["fumidai"]}])["Reservations"]
    image_ids = {i["ImageId"] for r in reservations for i in r["Instances"]}
    assert len(image_ids) == 1, image_ids
    (image,) = ec2.describe_images(ImageIds=sorted(image_ids))["Images"]
    assert login.classify_image(image) == "al2023"
    assert login.user_of_image(image) == "ec2-user"


def test_outputs_tell_people_to_log_in_as_ec2_user(al2023_lab):
    _state, env = al2023_lab
    outputs = yaml.safe_load(Path(env["FUMIDAI_OUTPUTS_FILE"]).read_text())
    assert outputs["ssh_user"] == "ec2-user"
    assert outputs["ssh_bastion"] == f"ssh ec2-user@{outputs['bastion']['public_ip']}"


def test_the_inventory_gives_every_host_and_the_hop_ec2_user(al2023_lab):
    """With no ansible_user from group_vars or the settings role to fall back on."""
    _state, env = al2023_lab
    proc = subprocess.run([str(BIN / "ansible-inventory"), "--list"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    hostvars = plain(json.loads(proc.stdout))["_meta"]["hostvars"]
    assert sorted(hostvars) == ["bastion", "nat-instance", "web01", "web02"]
    assert {name: host.get("ansible_user") for name, host in hostvars.items()} == dict.fromkeys(hostvars, "ec2-user")
    assert hostvars["web01"]["bastion"]["user"] == "ec2-user"
    assert " ec2-user@" in hostvars["web01"]["ansible_ssh_common_args"]
