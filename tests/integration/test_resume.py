"""Provisioning killed mid-run (SIGKILL, no cleanup), then run again: it
converges, with exactly one of everything (no second NAT gateway, EIP,
security group or instance)."""

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


@pytest.fixture(scope="module")
def scenario(moto_endpoint, tmp_path_factory):
    """Start provisioning, SIGKILL it once the bastion's EIP exists (after the
    NAT gateway, its EIP and the bastion), then provision again, twice."""
    urllib.request.urlopen(urllib.request.Request(f"{moto_endpoint}/moto-api/reset", method="POST"), timeout=10).close()
    tmp = tmp_path_factory.mktemp("resume")
    key = tmp / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    env = {**moto_local.environment(moto_endpoint), "FUMIDAI_OUTPUTS_FILE": str(tmp / "outputs.yml")}
    extra = ["-e", json.dumps({"admin_cidrs": ["192.168.250.0/24"], "ssh_public_key_path": f"{key}.pub"})]
    session = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION)
    ec2 = session.client("ec2", endpoint_url=moto_endpoint)
    elbv2 = session.client("elbv2", endpoint_url=moto_endpoint)

    full_env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1", **env}
    log = (tmp / "interrupted.log").open("w")
    # Its own process group, so the kill takes ansible-playbook and the module it is running.
    proc = subprocess.Popen([str(Path(sys.executable).parent / "ansible-playbook"), "playbooks/provision.yml", *extra],
                            cwd=ROOT, env=full_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 900
    try:
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"provisioning finished before it could be interrupted:\n"
                                     f"{(tmp / 'interrupted.log').read_text()[-3000:]}")
            if len(ec2.describe_addresses(Filters=TAGGED)["Addresses"]) >= 2:
                break
            if time.monotonic() > deadline:
                raise AssertionError("the bastion's EIP never appeared")
            time.sleep(0.2)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        log.close()
    interrupted = counts(ec2, elbv2)
    # Also leave the internet gateway as a run killed between creating and
    # attaching it would: tagged but detached. The re-run must attach it, not
    # create a second one.
    igw = ec2.describe_internet_gateways(Filters=TAGGED)["InternetGateways"][0]
    ec2.detach_internet_gateway(InternetGatewayId=igw["InternetGatewayId"], VpcId=igw["Attachments"][0]["VpcId"])

    resumed = run_playbook("playbooks/provision.yml", *extra, env=env)
    converged = counts(ec2, elbv2)
    vpc_id = ec2.describe_vpcs(Filters=TAGGED)["Vpcs"][0]["VpcId"]
    igws = ec2.describe_internet_gateways(Filters=TAGGED)["InternetGateways"]
    again = run_playbook("playbooks/provision.yml", *extra, env=env)
    return {"interrupted": interrupted, "resumed": resumed, "converged": converged, "again": again,
            "killed_with": proc.returncode, "igw": igw["InternetGatewayId"], "vpc_id": vpc_id, "igws": igws}


def recap(proc) -> dict[str, int]:
    match = RECAP.search(proc.stdout)
    assert match, f"no PLAY RECAP for localhost:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return dict(zip(("ok", "changed", "unreachable", "failed"), map(int, match.groups()), strict=True))


def test_the_first_run_was_really_cut_short(scenario):
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
    assert [(i["InternetGatewayId"], [a["VpcId"] for a in i["Attachments"]]) for i in scenario["igws"]] == [
        (scenario["igw"], [scenario["vpc_id"]])]


def test_run_after_convergence_changes_nothing(scenario):
    result = recap(scenario["again"])
    assert (result["changed"], result["failed"]) == (0, 0), scenario["again"].stdout[-4000:]
