"""What the audit reads through vpc_reader (moto in-process): the project's VPCs as AwsSeed builds them, their
instances and volumes; no VPC to audit is said in words."""

from __future__ import annotations

import pytest
from ansible_collections.fumidai.vpc.plugins.module_utils.audit_read_state import NothingToAudit, find_vpcs, read_facts
from ansible_collections.fumidai.vpc.plugins.module_utils.audit_report import audit

from tests.support.aws_seed import REGION
from tests.unit.seeded_moto import seeded_project

PROJECT_TAG = {"key": "Project", "value": "fumidai"}


@pytest.fixture
def aws(monkeypatch):
    with seeded_project() as seeded:
        yield seeded


def test_the_audit_reads_the_project_vpcs(aws):
    ec2, elbv2, stack = aws
    vpcs = find_vpcs(ec2, None, PROJECT_TAG, REGION)
    assert [v["vpc_id"] for v in vpcs] == [stack.vpc_id]
    facts = read_facts(ec2, elbv2, vpcs, PROJECT_TAG)
    result = audit({**facts, "known_hosts": {"path": "known_hosts", "text": ""}})
    # Nothing is pinned in this test; everything else is as provisioning builds it.
    assert {v["check"] for v in result["violations"]} == {"no_pinned_host_key"}, result["lines"]
    assert f"{len(stack.instances)} instances, {len(stack.instances)} volumes checked" in result["summary"]
    with pytest.raises(NothingToAudit, match=f"No VPC tagged Project=other in region {REGION}: provision first"):
        find_vpcs(ec2, None, {"key": "Project", "value": "other"}, REGION)
