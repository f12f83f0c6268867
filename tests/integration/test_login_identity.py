"""One login identity, end to end against a moto server: provisioning with ami_os=al2023 launches the Amazon
Linux image the table in plugins/module_utils/login.py names, tells people to log in as ec2-user, and the
inventory logs in to every host as ec2-user."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import boto3
import pytest
import yaml
from ansible_collections.fumidai.vpc.plugins.module_utils import login

from lab import moto_local
from tests.support.playbook import ROOT, plain, run_playbook

REGION = "ap-northeast-1"
PROJECT_FILTER = [{"Name": "tag:Project", "Values": ["fumidai"]}]


@pytest.fixture(scope="module")
def al2023_stack(moto_endpoint, tmp_path_factory):
    """playbooks/provision.yml with ami_os=al2023 on a fresh moto."""
    urllib.request.urlopen(urllib.request.Request(f"{moto_endpoint}/moto-api/reset", method="POST"), timeout=10).close()
    tmp = tmp_path_factory.mktemp("al2023")
    key = tmp / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    outputs = tmp / "outputs.yml"
    env = {**moto_local.environment(moto_endpoint), "FUMIDAI_OUTPUTS_FILE": str(outputs),
           "FUMIDAI_SSH_PRIVATE_KEY": str(key), "ANSIBLE_INVENTORY_CACHE": "false"}
    extra = json.dumps({"admin_cidrs": ["192.0.2.0/24"], "ami_os": "al2023"})
    proc = run_playbook("playbooks/provision.yml", "-e", extra, env=env, check=True)
    ec2 = boto3.client("ec2", endpoint_url=moto_endpoint, region_name=REGION,
                       aws_access_key_id="testing", aws_secret_access_key="testing")
    return {"proc": proc, "outputs": yaml.safe_load(outputs.read_text()), "ec2": ec2, "env": env}


def test_every_instance_runs_an_al2023_image_of_the_table(al2023_stack):
    """The launched image is what the classifier (the inventory's way to each host's user) calls al2023."""
    ec2 = al2023_stack["ec2"]
    reservations = ec2.describe_instances(Filters=PROJECT_FILTER)["Reservations"]
    image_ids = {i["ImageId"] for r in reservations for i in r["Instances"]}
    assert len(image_ids) == 1
    (image,) = ec2.describe_images(ImageIds=sorted(image_ids))["Images"]
    assert login.classify_image(image) == "al2023"
    assert login.user_of_image(image) == "ec2-user"


def test_outputs_name_ec2_user(al2023_stack):
    outputs = al2023_stack["outputs"]
    assert outputs["ssh_user"] == "ec2-user"
    assert outputs["ssh_bastion"] == f"ssh ec2-user@{outputs['bastion']['public_ip']}"


def test_the_key_pair_is_the_one_key_setting(al2023_stack):
    """Only FUMIDAI_SSH_PRIVATE_KEY was given: provisioning imported its .pub as the key pair."""
    public = al2023_stack["env"]["FUMIDAI_SSH_PRIVATE_KEY"] + ".pub"
    with open(public) as handle:
        fingerprint_source = handle.read().split()[1]
    pairs = al2023_stack["ec2"].describe_key_pairs(IncludePublicKey=True)["KeyPairs"]
    assert [p["KeyName"] for p in pairs] == ["fumidai"]
    assert fingerprint_source in pairs[0]["PublicKey"]


def test_the_inventory_logs_in_to_every_host_as_ec2_user(al2023_stack):
    """The bastion_ec2 inventory gives each host the user of its image's OS (the bastion and the hop too), with
    no ansible_user from group_vars or the settings role to fall back on."""
    proc = subprocess.run([str(Path(sys.executable).parent / "ansible-inventory"), "--list"], cwd=ROOT,
                          env={**os.environ, **al2023_stack["env"], "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg")},
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    hostvars = plain(json.loads(proc.stdout))["_meta"]["hostvars"]
    assert sorted(hostvars) == ["bastion", "nat-instance", "web01", "web02"]
    assert {name: host.get("ansible_user") for name, host in hostvars.items()} == dict.fromkeys(hostvars, "ec2-user")
    assert hostvars["web01"]["bastion"]["user"] == "ec2-user"
    assert " ec2-user@" in hostvars["web01"]["ansible_ssh_common_args"]
