"""What the doctor reads through vpc_reader (moto in-process): the project's VPC as AwsSeed builds it passes
every path; unknown or ambiguous targets are said in words."""

from __future__ import annotations

import pytest
from ansible_collections.fumidai.vpc.plugins.module_utils.doctor.read_state import find_target, read_facts
from ansible_collections.fumidai.vpc.plugins.module_utils.doctor.registry import PATHS, walk
from ansible_collections.fumidai.vpc.plugins.module_utils.doctor.state import DoctorError

from tests.support.aws_seed import ADMIN_CIDR, REGION
from tests.unit.seeded_moto import seeded_project


@pytest.fixture
def aws(monkeypatch):
    with seeded_project() as seeded:
        yield seeded


@pytest.mark.parametrize("path", list(PATHS))
def test_every_path_passes_on_what_the_doctor_reads(aws, path):
    ec2, elbv2, stack = aws
    target = find_target(ec2, "web01", REGION)
    assert target["instance_id"] == stack.instances["web01"]
    reads = PATHS[path].reads
    facts = read_facts(ec2, elbv2 if reads else None, target, None, reads)
    assert ("load_balancers" in facts) == ("load_balancers" in reads)
    report = walk(facts, path, target["instance_id"], source_cidr=ADMIN_CIDR)
    assert not report["blocked"], report["lines"]


def test_unknown_and_ambiguous_targets(aws):
    ec2, _elbv2, stack = aws
    with pytest.raises(DoctorError, match=f"No live instance named 'web99' in region {REGION}."):
        find_target(ec2, "web99", REGION)
    ec2.create_tags(Resources=[stack.instances["web02"]], Tags=[{"Key": "Name", "Value": "web01"}])
    with pytest.raises(DoctorError, match="2 instances are named 'web01' .*: pass the instance id."):
        find_target(ec2, "web01", REGION)


def test_a_bastion_named_on_the_command_line_is_read_wherever_it_is(aws):
    ec2, elbv2, stack = aws
    target = find_target(ec2, "web01", REGION)
    facts = read_facts(ec2, None, target, "bastion", ())
    assert [i["instance_id"] for i in facts["instances"]].count(stack.instances["bastion"]) == 1
