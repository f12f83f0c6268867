"""What the doctor reads from AWS for one walk: the target, its VPC's network, and what the path needs.

Through vpc_reader (the one reader of VPC state), with the clients of the doctor module
(AnsibleAWSModule's ``module.client``). Only live instances count (pending, running, stopping, stopped).
"""

from __future__ import annotations

from ansible_collections.fumidai.vpc.plugins.module_utils import vpc_reader
from ansible_collections.fumidai.vpc.plugins.module_utils.doctor.state import INSTANCE_ID, DoctorError
from ansible_collections.fumidai.vpc.plugins.module_utils.fumidai_text import text as shown_text

LIVE_STATES = ["pending", "running", "stopping", "stopped"]
# The VPC's network, for every path; a path's own needs (e.g. the load balancers) come from the registry.
NETWORK = ("instances", "subnets", "route_tables", "security_groups", "network_acls", "nat_gateways")


def find_instances(ec2, spec: str) -> list[dict]:
    """Live instances with this id (i-...) or Name tag, in any VPC of the region."""
    key = "instance-id" if INSTANCE_ID.match(spec) else "tag:Name"
    return vpc_reader.describe_instances(ec2, {"instance-state-name": LIVE_STATES, key: [spec]})


def find_target(ec2, spec: str, region: str | None) -> dict:
    """The one live instance ``spec`` names; a DoctorError saying why otherwise."""
    found = find_instances(ec2, spec)
    if not found:
        how = "with id" if INSTANCE_ID.match(spec) else "named"
        raise DoctorError(f"No live instance {how} '{shown_text(spec)}' in region {region or '(default)'}.")
    if len(found) > 1:
        ids = ", ".join(i["instance_id"] for i in found)
        raise DoctorError(f"{len(found)} instances are named '{shown_text(spec)}' ({ids}): pass the instance id.")
    return found[0]


def read_facts(ec2, elbv2, target: dict, bastion: str | None, reads=()) -> dict:
    """The facts for a walk to ``target`` (an instance found by find_target): its VPC's network, the
    bastion given by name or id (it may live elsewhere: the walk says so), every internet gateway (a route
    may point at one no longer attached), and ``reads`` (vpc_reader parts, e.g. load_balancers)."""
    vpc_id = target.get("vpc_id")
    facts = vpc_reader.read(ec2, NETWORK + tuple(reads), elbv2=elbv2, vpc_ids=[vpc_id],
                            instance_filters={"instance-state-name": LIVE_STATES})
    facts["internet_gateways"] = vpc_reader.describe_part(ec2, "internet_gateways")
    if bastion:
        known = {i["instance_id"] for i in facts["instances"]}
        facts["instances"] += [i for i in find_instances(ec2, bastion) if i["instance_id"] not in known]
    return facts
