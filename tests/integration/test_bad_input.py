"""Bad input stops playbooks/provision.yml before anything is created, with a
message naming the variable and the problem; an unreachable AWS endpoint is
reported with its address."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

import boto3
import pytest

from lab import moto_local
from tests.support.playbook import ROOT, run_playbook

REGION = "ap-northeast-1"
GOOD_SUBNETS = [
    {"name": "public-subnet-1", "cidr": "10.0.1.0/24", "az": f"{REGION}a", "tier": "public"},
    {"name": "public-subnet-2", "cidr": "10.0.2.0/24", "az": f"{REGION}c", "tier": "public"},
    {"name": "private-subnet-1", "cidr": "10.0.11.0/24", "az": f"{REGION}a", "tier": "private", "nat": "nat_gateway"},
    {"name": "private-subnet-2", "cidr": "10.0.12.0/24", "az": f"{REGION}c", "tier": "private", "nat": "nat_instance"},
]


def subnets_with(index: int, **change) -> list[dict]:
    subnets = [dict(s) for s in GOOD_SUBNETS]
    subnets[index].update(change)
    return subnets


# (id, extra vars over a valid baseline, words the message must contain)
CASES = [
    ("vpc-cidr-invalid", {"vpc_cidr": "10.0.0.0/33"}, ["vpc_cidr", "10.0.0.0/33", "not a valid"]),
    ("vpc-cidr-not-a-cidr", {"vpc_cidr": "ten.0.0.0/16"}, ["vpc_cidr", "not a valid"]),
    ("subnet-cidr-invalid", {"subnets": subnets_with(2, cidr="10.0.11.0/24x")},
     ["subnets[2] (private-subnet-1)", "not a valid"]),
    ("subnet-outside-vpc", {"subnets": subnets_with(3, cidr="10.1.12.0/24")},
     ["subnets[3] (private-subnet-2)", "10.1.12.0/24", "outside vpc_cidr 10.0.0.0/16"]),
    ("subnets-overlap", {"subnets": subnets_with(1, cidr="10.0.1.128/25")},
     ["subnets", "public-subnet-1", "overlaps", "public-subnet-2"]),
    ("public-subnets-one-az", {"subnets": subnets_with(1, az=f"{REGION}a")},
     ["subnets", f"only in {REGION}a", "two availability zones"]),
    ("admin-cidrs-empty", {"admin_cidrs": []}, ["admin_cidrs", "is empty"]),
    ("admin-cidrs-anywhere", {"admin_cidrs": ["0.0.0.0/0"]},
     ["admin_cidrs[0]", "0.0.0.0/0", "allow_ssh_from_anywhere"]),
    ("admin-cidrs-anywhere-v6", {"admin_cidrs": ["192.168.250.0/24", "::/0"]},
     ["admin_cidrs[1]", "::/0", "allow_ssh_from_anywhere"]),
    ("admin-cidrs-invalid", {"admin_cidrs": ["192.168.250.0/33"]}, ["admin_cidrs[0]", "not a valid CIDR"]),
    # Too broad (plugins/module_utils/fumidai_access.py): one by one, and together.
    ("admin-cidrs-half-internet-pair", {"admin_cidrs": ["0.0.0.0/1", "128.0.0.0/1"]},
     ["admin_cidrs[0]: 0.0.0.0/1 is broader than a /8", "admin_cidrs[1]: 128.0.0.0/1 is broader than a /8",
      "allow_ssh_from_anywhere"]),
    ("admin-cidrs-half-internet-v6", {"admin_cidrs": ["::/1"]}, ["admin_cidrs[0]: ::/1 is broader than a /32"]),
    ("admin-cidrs-v6-beyond-32", {"admin_cidrs": ["192.168.250.0/24", "2001:db8::/31"]},
     ["admin_cidrs[1]: 2001:db8::/31 is broader than a /32"]),
    ("admin-cidrs-too-broad-together", {"admin_cidrs": ["10.0.0.0/8", "172.16.0.0/12"]},
     ["admin_cidrs: together the IPv4 ranges (10.0.0.0/8, 172.16.0.0/12)", "more than one /8"]),
    ("admin-cidrs-ipv4-mapped", {"admin_cidrs": ["::ffff:0:0/96"]},
     ["admin_cidrs[0]: ::ffff:0:0/96 is an IPv4-mapped IPv6 range"]),
    # What the private hosts may send out: the NAT instance's forward list, which the security groups share.
    ("forward-list-invalid", {"nat_instance_forward_ports": [{"proto": "tcp", "port": 80},
                                                            {"proto": "sctp", "port": 9}]},
     ["Invalid port lists", "nat_instance_forward_ports[1]: proto 'sctp' must be one of tcp, udp, icmp"]),
    ("update-ports-invalid", {"aws_security_groups_update_ports": [443, 70000]},
     ["aws_security_groups_update_ports: 70000 is not a TCP port (1-65535)"]),
    ("alb-access-logs-without-bucket", {"aws_alb_access_logs_enabled": True},
     ["aws_alb_access_logs_bucket", "required when access logs are on; got \"\""]),
    ("alb-access-logs-bad-bucket", {"aws_alb_access_logs_enabled": True, "aws_alb_access_logs_bucket": "My_Logs"},
     ["aws_alb_access_logs_bucket must name an S3 bucket", 'got "My_Logs"']),
    ("alb-access-logs-prefix-awslogs", {"aws_alb_access_logs_enabled": True,
                                        "aws_alb_access_logs_bucket": "fumidai-logs",
                                        "aws_alb_access_logs_prefix": "alb/AWSLogs"},
     ['does not contain "AWSLogs" (got "alb/AWSLogs")']),
    ("public-key-missing", {"ssh_public_key_path": "/nonexistent/fumidai_test_key.pub"},
     ["ssh_public_key_path", "/nonexistent/fumidai_test_key.pub", "missing"]),
    ("web-instance-unknown-subnet", {"web_instances": [{"name": "web01", "subnet": "private-subnet-9"}]},
     ["web_instances[0] (web01)", "private-subnet-9", "not a subnet"]),
    ("ami-os-unknown", {"ami_os": "windows"}, ["ami_os", "windows"]),
    # The standby watchdog's probe (nat_instance_standby): provisioning routes the probe address's /32.
    ("standby-probe-address-cidr", {"nat_instance_standby": True, "nat_instance_watchdog_probe_address": "1.1.1.1/32"},
     ["nat_instance_watchdog_probe_address", 'got "1.1.1.1/32"', "two different IPv4 addresses (not names or CIDRs)"]),
    ("standby-probe-control-same", {"nat_instance_standby": True, "nat_instance_watchdog_control_address": "1.1.1.1"},
     ["nat_instance_watchdog_control_address (reached directly, got \"1.1.1.1\")", "two different IPv4 addresses"]),
    ("standby-probe-port-not-forwarded", {"nat_instance_standby": True, "nat_instance_watchdog_probe_port": 8080},
     ["nat_instance_watchdog_probe_port (8080)",
      "a TCP port the NAT instance forwards (nat_instance_forward_ports: 80, 443)"]),
]


def reset_moto(endpoint: str) -> None:
    req = urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST")
    urllib.request.urlopen(req, timeout=10).close()


def console(text: str) -> str:
    """Console output with YAML's line folding and quote doubling undone."""
    return " ".join(text.split()).replace("''", "'")


@pytest.fixture(scope="module")
def public_key(tmp_path_factory) -> Path:
    key = tmp_path_factory.mktemp("key") / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    return key.with_suffix(".pub")


@pytest.fixture(scope="module")
def env(moto_endpoint, tmp_path_factory):
    reset_moto(moto_endpoint)
    outputs = tmp_path_factory.mktemp("outputs") / "outputs.yml"
    return {**moto_local.environment(moto_endpoint), "FUMIDAI_OUTPUTS_FILE": str(outputs)}


def project_resources(endpoint: str) -> dict[str, list]:
    ec2 = boto3.client("ec2", endpoint_url=endpoint, region_name=REGION,
                       aws_access_key_id="testing", aws_secret_access_key="testing")
    tagged = [{"Name": "tag:Project", "Values": ["fumidai"]}]
    return {
        "vpcs": ec2.describe_vpcs(Filters=tagged)["Vpcs"],
        "non-default vpcs": [v for v in ec2.describe_vpcs()["Vpcs"] if not v["IsDefault"]],
        "key pairs": ec2.describe_key_pairs()["KeyPairs"],
        "addresses": ec2.describe_addresses()["Addresses"],
        "security groups": [g for g in ec2.describe_security_groups()["SecurityGroups"] if g["GroupName"] != "default"],
    }


@pytest.mark.parametrize(("overrides", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_fails_before_anything_is_created(overrides, expected, env, public_key, moto_endpoint):
    extra = {"admin_cidrs": ["192.168.250.0/24"], "ssh_public_key_path": str(public_key), **overrides}
    proc = run_playbook("playbooks/provision.yml", "-e", json.dumps(extra), env=env)
    out = console(proc.stdout + proc.stderr)
    assert proc.returncode != 0, out[-3000:]
    for words in expected:
        assert words in out, f"{words!r} not in the error:\n{out[-3000:]}"
    # It stopped in validation: the first AWS task never ran.
    assert "Call STS GetCallerIdentity" not in out
    assert all(not found for found in project_resources(moto_endpoint).values()), project_resources(moto_endpoint)


def test_ssh_from_anywhere_passes_with_the_opt_in(env, public_key, moto_endpoint):
    """0.0.0.0/0 and any other range too broad are accepted when allow_ssh_from_anywhere is true: the run
    gets past the admin_cidrs check and stops at the next bad value instead."""
    extra = {"admin_cidrs": ["0.0.0.0/0", "0.0.0.0/1", "128.0.0.0/1", "::/1"], "allow_ssh_from_anywhere": True,
             "ssh_public_key_path": str(public_key),
             "web_instances": [{"name": "web01", "subnet": "nowhere"}]}
    proc = run_playbook("playbooks/provision.yml", "-e", json.dumps(extra), env=env)
    out = console(proc.stdout + proc.stderr)
    assert proc.returncode != 0
    assert "Invalid SSH access input" not in out
    assert "web_instances[0] (web01): subnet 'nowhere'" in out


def unreachable_endpoint() -> str:
    # A free port on 127.0.0.1 that nothing listens on.
    return f"http://127.0.0.1:{moto_local.free_port()}"


def test_unreachable_endpoint_named_by_provisioning(env, public_key, tmp_path):
    """With the project's inventory the bastion_ec2 plugin meets the dead endpoint first;
    either way the run fails and names the endpoint."""
    endpoint = unreachable_endpoint()
    extra = {"admin_cidrs": ["192.168.250.0/24"], "ssh_public_key_path": str(public_key)}
    proc = run_playbook("playbooks/provision.yml", "-e", json.dumps(extra), env={**env, "AWS_ENDPOINT_URL": endpoint})
    out = console(proc.stdout + proc.stderr)
    assert proc.returncode != 0
    assert endpoint in out


def test_unreachable_endpoint_named_by_provision_preflight(env, public_key, tmp_path):
    """provision.yml's own preflight (inventory = localhost + the project's group_vars)."""
    # The implicit localhost's settings: local connection, this venv's Python.
    (tmp_path / "hosts").write_text(f"localhost ansible_connection=local ansible_python_interpreter={sys.executable}\n")
    (tmp_path / "group_vars").symlink_to(ROOT / "inventory" / "group_vars")
    endpoint = unreachable_endpoint()
    extra = {"admin_cidrs": ["192.168.250.0/24"], "ssh_public_key_path": str(public_key)}
    proc = run_playbook("playbooks/provision.yml", "-i", str(tmp_path / "hosts"), "-e", json.dumps(extra),
                        env={**env, "AWS_ENDPOINT_URL": endpoint})
    out = console(proc.stdout + proc.stderr)
    assert proc.returncode != 0
    assert re.search(rf"Cannot use the AWS API at {re.escape(endpoint)} \(AWS_ENDPOINT_URL\)", out), out[-3000:]
    assert "python -m lab.moto_local start" in out
    # Validation passed, nothing after the preflight ran.
    assert "Ensure the VPC exists" not in out
