"""The teardown's order is tested: against the project's local API, which refuses what AWS refuses
(lab/moto_dependencies.py), roles/aws_teardown in a deliberately wrong order (the security groups before the
load balancers and instances that use them) stops with AWS's DependencyViolation and deletes nothing it should
not, where the role as shipped takes the same VPC down.

The VPC is the seeder's (tests/support/aws_seed.py, proven equal to provisioning's by test_aws_seed), named by
teardown_vpc_id with the account confirmed, as for a stack without a record.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.integration.teardown_helpers import ACCOUNT
from tests.support.aws_seed import AwsSeed
from tests.support.playbook import ROOT, run_playbook

GROUPS_STEP = """\
    - name: Delete the security groups
      ansible.builtin.include_tasks: security_groups.yml
      when: not ansible_check_mode
"""
FIRST_DELETE = "    - name: Delete the load balancers and target groups\n"


def reordered_teardown(tmp_path: Path) -> Path:
    """A copy of the project's teardown playbook whose aws_teardown role deletes the groups first."""
    role = tmp_path / "roles" / "aws_teardown"
    shutil.copytree(ROOT / "roles" / "aws_teardown", role)
    main = role / "tasks" / "main.yml"
    text = main.read_text()
    assert GROUPS_STEP in text and FIRST_DELETE in text, "roles/aws_teardown/tasks/main.yml changed its steps"
    main.write_text(text.replace(GROUPS_STEP, "").replace(FIRST_DELETE, GROUPS_STEP + "\n" + FIRST_DELETE))
    playbook = (ROOT / "playbooks" / "teardown.yml").read_text()
    assert "- role: fumidai.vpc.aws_teardown\n" in playbook
    path = tmp_path / "teardown_reordered.yml"
    path.write_text(playbook.replace("- role: fumidai.vpc.aws_teardown\n", f"- role: {role}\n"))
    return path


@pytest.fixture
def seeded(ec2, elbv2):
    return AwsSeed(ec2, elbv2).project()


def live(ec2, vpc_id: str) -> dict[str, int]:
    in_vpc = [{"Name": "vpc-id", "Values": [vpc_id]}]
    instances = [i for r in ec2.describe_instances(Filters=in_vpc + [
        {"Name": "instance-state-name", "Values": ["running"]}])["Reservations"] for i in r["Instances"]]
    groups = [g for g in ec2.describe_security_groups(Filters=in_vpc)["SecurityGroups"] if g["GroupName"] != "default"]
    vpcs = ec2.describe_vpcs(Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])["Vpcs"]
    return {"vpcs": len(vpcs), "instances": len(instances), "groups": len(groups)}


def test_a_reordered_teardown_is_refused_and_the_shipped_order_passes(seeded, ec2, inventory, tmp_path):
    named = ["-i", inventory, "-e", f"teardown_vpc_id={seeded.vpc_id}", "-e", f"confirm_account={ACCOUNT}",
             "-e", "aws_teardown_retries=0", "-e", "aws_teardown_retry_delay=1"]
    env = {"FUMIDAI_OUTPUTS_FILE": str(tmp_path / "outputs.yml")}
    before = live(ec2, seeded.vpc_id)
    assert before == {"vpcs": 1, "instances": 4, "groups": 4}

    wrong = run_playbook(str(reordered_teardown(tmp_path)), *named, env=env)
    output = wrong.stdout + wrong.stderr
    assert wrong.returncode != 0, output[-4000:]
    assert "DependencyViolation" in output and "has a dependent object" in output, output[-4000:]
    assert live(ec2, seeded.vpc_id) == before, "the refused teardown deleted something it depends on"

    right = run_playbook("playbooks/teardown.yml", *named, env=env)
    assert right.returncode == 0, (right.stdout + right.stderr)[-4000:]
    assert live(ec2, seeded.vpc_id) == {"vpcs": 0, "instances": 0, "groups": 0}
