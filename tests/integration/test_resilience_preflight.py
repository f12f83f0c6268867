"""bastion_per_az and nat_instance_standby need their second host in another availability zone: a topology that
cannot give it stops playbooks/provision.yml in validation (roles/aws_preflight/tasks/validate.yml), with a
message naming the option, before any AWS call; the default topology passes with both options on."""

from __future__ import annotations

import json
import subprocess

import pytest

from lab import moto_local
from tests.integration.test_bad_input import GOOD_SUBNETS, REGION, console, project_resources, reset_moto
from tests.support.playbook import run_playbook


def subnets(*changes: dict, extra: tuple[dict, ...] = ()) -> list[dict]:
    """GOOD_SUBNETS with per-index changes ({} keeps one), plus extra subnets."""
    changed = [{**s, **(changes[i] if i < len(changes) else {})} for i, s in enumerate(GOOD_SUBNETS)]
    return changed + list(extra)


THIRD_PUBLIC_IN_A = {"name": "public-subnet-3", "cidr": "10.0.3.0/24", "az": f"{REGION}a", "tier": "public"}

# (id, settings over a valid baseline, words the message must contain)
CASES = [
    # The NAT instance in zone a, and the first other public subnet (the standby's) in zone a too.
    ("standby-in-the-nat-instance-zone",
     {"nat_instance_standby": True, "nat_instance_subnet": "public-subnet-3",
      "subnets": subnets(extra=(THIRD_PUBLIC_IN_A,))},
     ["nat_instance_standby", "nat_instance_subnet public-subnet-3", f"({REGION}a)",
      "public-subnet-1 in the same zone", "Nothing was created"]),
    ("standby-without-a-nat-instance-subnet",
     {"nat_instance_standby": True, "subnets": subnets({}, {}, {}, {"nat": "nat_gateway"})},
     ["nat_instance_standby", "exactly one private subnet", "found none"]),
    ("standby-with-two-nat-instance-subnets",
     {"nat_instance_standby": True, "subnets": subnets({}, {}, {"nat": "nat_instance"})},
     ["nat_instance_standby", "found private-subnet-1, private-subnet-2"]),
    # One zone for every public subnet: the network check refuses it first (the ALB needs two zones too).
    ("bastion-per-az-one-public-zone",
     {"bastion_per_az": True, "subnets": subnets({}, {"az": f"{REGION}a"})},
     ["public subnets are only in", "two availability zones"]),
]


@pytest.fixture(scope="module")
def env(moto_endpoint, tmp_path_factory) -> dict:
    """The session's moto server, emptied (the checks below look for anything created), and an outputs file."""
    reset_moto(moto_endpoint)
    outputs = tmp_path_factory.mktemp("outputs") / "outputs.yml"
    return {**moto_local.environment(moto_endpoint), "FUMIDAI_OUTPUTS_FILE": str(outputs)}


@pytest.fixture(scope="module")
def settings(tmp_path_factory) -> dict:
    key = tmp_path_factory.mktemp("key") / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    return {"admin_cidrs": ["192.168.250.0/24"], "ssh_public_key_path": f"{key}.pub"}


@pytest.mark.parametrize(("overrides", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_a_topology_without_a_second_zone_is_refused_before_anything_changes(overrides, expected, settings, env,
                                                                              moto_endpoint):
    proc = run_playbook("playbooks/provision.yml", "-e", json.dumps({**settings, **overrides}), env=env)
    out = console(proc.stdout + proc.stderr)
    assert proc.returncode != 0, out[-3000:]
    for words in expected:
        assert words in out, f"{words!r} not in the error:\n{out[-3000:]}"
    assert "Call STS GetCallerIdentity" not in out  # stopped in validation, before the first AWS call
    assert all(not found for found in project_resources(moto_endpoint).values()), project_resources(moto_endpoint)


def test_the_default_topology_passes_the_check_with_both_options(settings, env, moto_endpoint):
    """Positive control: with both options on, the default subnets pass this check; the run stops at the next
    one (a web host in a subnet that does not exist), so validation got past the zones and nothing was created."""
    proc = run_playbook("playbooks/provision.yml", "-e", json.dumps(
        {**settings, "bastion_per_az": True, "nat_instance_standby": True,
         "web_instances": [{"name": "web01", "subnet": "nowhere"}]}), env=env)
    out = console(proc.stdout + proc.stderr)
    assert proc.returncode != 0
    assert "Check the zones bastion_per_az and nat_instance_standby need" in out, out[-3000:]
    assert "resilience options need" not in out
    assert "web_instances[0] (web01): subnet 'nowhere'" in out, out[-3000:]
    assert all(not found for found in project_resources(moto_endpoint).values())
