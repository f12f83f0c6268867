"""Provisioning never takes an Elastic IP that someone else attached, even when it carries the names fumidai
looks for (the bastion's EIP is found by its Name tag so that an interrupted run reuses it)."""

from __future__ import annotations

import json
import subprocess

import boto3

from tests.support.playbook import run_playbook


def test_a_tagged_eip_attached_elsewhere_is_never_moved(aws_env, tmp_path):
    ec2 = boto3.client("ec2")
    image = ec2.describe_images(Owners=["136693071363"])["Images"][0]["ImageId"]
    # Someone else's instance in another VPC, holding an EIP tagged as if it were fumidai's bastion EIP.
    vpc = ec2.create_vpc(CidrBlock="172.31.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="172.31.1.0/24")["Subnet"]["SubnetId"]
    theirs = ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1, SubnetId=subnet)["Instances"][0]["InstanceId"]
    eip = ec2.allocate_address(Domain="vpc", TagSpecifications=[{"ResourceType": "elastic-ip", "Tags": [
        {"Key": "Project", "Value": "fumidai"}, {"Key": "Name", "Value": "fumidai-bastion-eip"}]}])
    ec2.associate_address(AllocationId=eip["AllocationId"], InstanceId=theirs)

    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "id")], check=True)
    extra = json.dumps({"admin_cidrs": ["192.0.2.0/24"], "ssh_public_key_path": str(tmp_path / "id.pub")})
    proc = run_playbook("playbooks/provision.yml", "-e", extra,
                        env={"FUMIDAI_OUTPUTS_FILE": str(tmp_path / "outputs.yml")})
    assert proc.returncode != 0
    assert (f"The Elastic IP {eip['PublicIp']} tagged Name=fumidai-bastion-eip is attached to {theirs}, not to this "
            "stack's bastion") in " ".join(proc.stdout.split())
    address = ec2.describe_addresses(AllocationIds=[eip["AllocationId"]])["Addresses"][0]
    assert address["InstanceId"] == theirs  # still theirs
