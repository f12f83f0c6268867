"""Provisioning killed mid-run (SIGKILL, no cleanup), then run again: it
converges, with exactly one of everything (no second internet gateway, NAT
gateway, EIP, security group or instance)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import boto3
import pytest

from lab import moto_local
from tests.support.playbook import ROOT, run_playbook

REGION = "ap-northeast-1"
TAGGED = [{"Name": "tag:Project", "Values": ["fumidai"]}]
RECAP = re.compile(r"^localhost\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)
EXPECTED = {"vpcs": 1, "subnets": 4, "internet gateways": 1, "nat gateways": 1, "addresses": 2,
            "route tables": 3, "security groups": 4, "instances": 4, "key pairs": 1,
            "load balancers": 1, "target groups": 1}


def counts(ec2, elbv2) -> dict[str, int]:
    reservations = ec2.describe_instances(Filters=TAGGED)["Reservations"]
    load_balancers = [lb["LoadBalancerArn"] for lb in elbv2.describe_load_balancers()["LoadBalancers"]]
    target_groups = [tg["TargetGroupArn"] for tg in elbv2.describe_target_groups()["TargetGroups"]]

    def elb_tagged(arns: list[str]) -> int:
        if not arns:
            return 0
        return sum({"Key": "Project", "Value": "fumidai"} in d["Tags"]
                   for d in elbv2.describe_tags(ResourceArns=arns)["TagDescriptions"])

    return {
        "vpcs": len(ec2.describe_vpcs(Filters=TAGGED)["Vpcs"]),
        "subnets": len(ec2.describe_subnets(Filters=TAGGED)["Subnets"]),
        "internet gateways": len(ec2.describe_internet_gateways(Filters=TAGGED)["InternetGateways"]),
        "nat gateways": len([g for g in ec2.describe_nat_gateways(Filters=TAGGED)["NatGateways"]
                             if g["State"] in ("pending", "available")]),
        "addresses": len(ec2.describe_addresses(Filters=TAGGED)["Addresses"]),
        "route tables": len(ec2.describe_route_tables(Filters=TAGGED)["RouteTables"]),
        "security groups": len(ec2.describe_security_groups(Filters=TAGGED)["SecurityGroups"]),
        "instances": len([i for r in reservations for i in r["Instances"]
                          if i["State"]["Name"] in ("pending", "running", "stopping", "stopped")]),
        "key pairs": len(ec2.describe_key_pairs(Filters=TAGGED)["KeyPairs"]),
        "load balancers": elb_tagged(load_balancers),
        "target groups": elb_tagged(target_groups),
    }


def run_until(command: list[str], env: dict, log_path: Path, ready, what: str) -> int:
    """Start ``command`` in its own process group and SIGKILL the group (ansible-playbook and the module it is
    running) as soon as ``ready()`` holds; returns the exit status."""
    log = log_path.open("w")
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 900
    try:
        while not ready():
            if proc.poll() is not None:
                raise AssertionError(f"provisioning finished before {what}:\n{log_path.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"never reached: {what}")
            time.sleep(0.1)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        log.close()
    return proc.returncode


@pytest.fixture(scope="module")
def scenario(moto_endpoint, tmp_path_factory):
    """Provisioning killed twice, then run again, twice:

    1. killed once the subnets exist, before the internet gateway task; the gateway is then left as a run
       killed between ec2_vpc_igw's create (tags included) and its attach leaves it: tagged, never attached;
    2. killed once the bastion's EIP exists (after the NAT gateway, its EIP and the bastion);
    3. run to the end, then once more.
    (Detaching the gateway of the running VPC instead is what AWS refuses while public addresses are mapped.)"""
    urllib.request.urlopen(urllib.request.Request(f"{moto_endpoint}/moto-api/reset", method="POST"), timeout=10).close()
    tmp = tmp_path_factory.mktemp("resume")
    key = tmp / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    env = {**moto_local.environment(moto_endpoint), "FUMIDAI_OUTPUTS_FILE": str(tmp / "outputs.yml")}
    extra = ["-e", json.dumps({"admin_cidrs": ["192.168.250.0/24"], "ssh_public_key_path": f"{key}.pub"})]
    session = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION)
    ec2 = session.client("ec2", endpoint_url=moto_endpoint)
    elbv2 = session.client("elbv2", endpoint_url=moto_endpoint)
    command = [str(Path(sys.executable).parent / "ansible-playbook"), "playbooks/provision.yml", *extra]
    full_env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1", **env}

    def subnets_exist() -> bool:
        return len(ec2.describe_subnets(Filters=TAGGED)["Subnets"]) == EXPECTED["subnets"]

    def bastion_eip_exists() -> bool:
        return len(ec2.describe_addresses(Filters=TAGGED)["Addresses"]) >= 2

    killed_early = run_until(command, full_env, tmp / "killed-early.log", subnets_exist, "the subnets exist")
    early = counts(ec2, elbv2)
    igw = ec2.create_internet_gateway(TagSpecifications=[{"ResourceType": "internet-gateway", "Tags": [
        {"Key": "Project", "Value": "fumidai"}, {"Key": "Name", "Value": "fumidai-igw"}]}])["InternetGateway"]

    killed_with = run_until(command, full_env, tmp / "interrupted.log", bastion_eip_exists, "the bastion's EIP exists")
    interrupted = counts(ec2, elbv2)
    igws_interrupted = ec2.describe_internet_gateways(Filters=TAGGED)["InternetGateways"]

    resumed = run_playbook("playbooks/provision.yml", *extra, env=env)
    converged = counts(ec2, elbv2)
    vpc_id = ec2.describe_vpcs(Filters=TAGGED)["Vpcs"][0]["VpcId"]
    igws = ec2.describe_internet_gateways(Filters=TAGGED)["InternetGateways"]
    again = run_playbook("playbooks/provision.yml", *extra, env=env)
    return {"early": early, "killed_early": killed_early, "interrupted": interrupted, "killed_with": killed_with,
            "resumed": resumed, "converged": converged, "again": again, "igw": igw["InternetGatewayId"],
            "vpc_id": vpc_id, "igws_interrupted": igws_interrupted, "igws": igws}


def recap(proc) -> dict[str, int]:
    match = RECAP.search(proc.stdout)
    assert match, f"no PLAY RECAP for localhost:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return dict(zip(("ok", "changed", "unreachable", "failed"), map(int, match.groups()), strict=True))


def test_the_first_run_was_killed_before_the_internet_gateway(scenario):
    assert scenario["killed_early"] == -signal.SIGKILL
    early = scenario["early"]
    assert (early["vpcs"], early["subnets"]) == (1, EXPECTED["subnets"])
    assert (early["internet gateways"], early["nat gateways"], early["addresses"], early["instances"]) == (0, 0, 0, 0)


def test_the_second_run_was_really_cut_short(scenario):
    assert scenario["killed_with"] == -signal.SIGKILL
    partial = scenario["interrupted"]
    assert partial["nat gateways"] == 1 and partial["addresses"] == 2
    # Killed before the end: no load balancer yet.
    assert partial["load balancers"] == 0


def test_rerun_completes(scenario):
    result = recap(scenario["resumed"])
    assert (scenario["resumed"].returncode, result["failed"]) == (0, 0), scenario["resumed"].stdout[-4000:]


def test_rerun_converges_to_exactly_one_of_everything(scenario):
    assert scenario["converged"] == EXPECTED


def test_detached_internet_gateway_reattached_not_duplicated(scenario):
    """The gateway left tagged and unattached is the one attached (by the first run that got that far), and
    stays the only one."""
    for igws in (scenario["igws_interrupted"], scenario["igws"]):
        assert [(i["InternetGatewayId"], [a["VpcId"] for a in i["Attachments"]]) for i in igws] == [
            (scenario["igw"], [scenario["vpc_id"]])]


def test_run_after_convergence_changes_nothing(scenario):
    result = recap(scenario["again"])
    assert (result["changed"], result["failed"]) == (0, 0), scenario["again"].stdout[-4000:]
