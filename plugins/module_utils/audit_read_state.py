"""What the security audit reads from AWS: the audited VPCs, their instances, groups, routes, load balancers
and volumes, through vpc_reader (the one reader of VPC state) with the audit module's clients."""

from __future__ import annotations

from ansible_collections.fumidai.vpc.plugins.module_utils import vpc_reader
from ansible_collections.fumidai.vpc.plugins.module_utils.doctor.read_state import LIVE_STATES

PARTS = ("instances", "security_groups", "subnets", "route_tables", "load_balancers")


class NothingToAudit(Exception):
    """No VPC matches what the audit was asked to look at."""


def find_vpcs(ec2, vpc_id: str | None, project_tag: dict, region: str | None) -> list[dict]:
    """The VPC ``vpc_id``, else every VPC tagged with the project's tag; NothingToAudit when there is none."""
    wanted = {"vpc-id": [vpc_id]} if vpc_id else {f"tag:{project_tag['key']}": [project_tag["value"]]}
    vpcs = vpc_reader.describe_part(ec2, "vpcs", filters=wanted)
    if not vpcs:
        what = f"No VPC {vpc_id}" if vpc_id else f"No VPC tagged {project_tag['key']}={project_tag['value']}"
        raise NothingToAudit(f"{what} in region {region or '(default)'}: provision first, or pass -e vpc_id=<id>.")
    return vpcs


def read_facts(ec2, elbv2, vpcs: list[dict], project_tag: dict) -> dict:
    """The audit's facts for ``vpcs``: live instances, groups, subnets, route tables, load balancers, and the
    volumes attached to those instances or tagged with the project's tag (attached or not)."""
    vpc_ids = [v["vpc_id"] for v in vpcs]
    facts = vpc_reader.read(ec2, PARTS, elbv2=elbv2, vpc_ids=vpc_ids,
                            instance_filters={"instance-state-name": LIVE_STATES})
    instance_ids = [i["instance_id"] for i in facts["instances"]]
    volumes = vpc_reader.describe_part(ec2, "volumes", filters={"attachment.instance-id": instance_ids}) \
        if instance_ids else []
    volumes += vpc_reader.describe_part(ec2, "volumes", filters={f"tag:{project_tag['key']}": [project_tag["value"]]})
    facts["volumes"] = list({v["volume_id"]: v for v in volumes}.values())
    return {**facts, "vpcs": vpcs, "project_tag": project_tag}
