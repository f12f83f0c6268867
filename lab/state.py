"""Reading state: what moto holds about the VPC (the lab's input) and the lab's own lab.json (its output)."""

from __future__ import annotations

import json

from lab import config, moto_local
from lab.proc import LabError


def aws_env() -> dict[str, str]:
    state = moto_local.read_state()
    if not state:
        raise LabError("the moto server is not running (python -m lab.moto_local start, or `python -m lab step moto`)")
    return moto_local.environment(state["endpoint"], state["region"])


def aws_client(env: dict, service: str):
    """A boto3 client for the lab's local API, from the variables moto_local.environment gives (``env``)."""
    import boto3

    return boto3.client(service, endpoint_url=env["AWS_ENDPOINT_URL"], region_name=env["AWS_REGION"],
                        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"])


def describe(project_name: str = "fumidai", tag_key: str = "Project") -> dict:
    """Everything the lab needs from moto, read by the project's one reader (vpc_reader), in its snake_case
    shapes; the ALBs as the plan wants them (listeners and target groups with their targets)."""
    import boto3
    from ansible_collections.fumidai.vpc.plugins.module_utils import vpc_reader

    env = aws_env()
    session = boto3.session.Session(aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                                    aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"], region_name=env["AWS_REGION"])
    ec2 = session.client("ec2", endpoint_url=env["AWS_ENDPOINT_URL"])
    elbv2 = session.client("elbv2", endpoint_url=env["AWS_ENDPOINT_URL"])
    project = {f"tag:{tag_key}": project_name}
    try:
        vpcs = vpc_reader.read(ec2, ["vpcs"], filters={"vpcs": project})["vpcs"]
        if len(vpcs) != 1:
            raise LabError(f"expected one VPC tagged {tag_key}={project_name} on moto, found {len(vpcs)}: "
                           "has playbooks/provision.yml run?")
        vpc = vpcs[0]
        facts = vpc_reader.read(ec2, ["instances", "images", "subnets", "route_tables", "security_groups",
                                      "network_acls", "nat_gateways", "internet_gateways", "load_balancers"],
                                elbv2=elbv2,
                                vpc_ids=[vpc["vpc_id"]],
                                instance_filters={**project, "instance-state-name": ["pending", "running"]})
    except vpc_reader.ReaderError as exc:
        raise LabError(f"the local AWS API at {env['AWS_ENDPOINT_URL']} failed {exc}") from exc
    keys = ec2.describe_key_pairs(IncludePublicKey=True)["KeyPairs"]
    return {
        "vpc": vpc,
        "subnets": facts["subnets"],
        "route_tables": facts["route_tables"],
        "security_groups": facts["security_groups"],
        "network_acls": facts["network_acls"],
        "nat_gateways": [n for n in facts["nat_gateways"] if n.get("state") in ("pending", "available")],
        "internet_gateways": facts["internet_gateways"],
        "instances": facts["instances"],
        "images": facts["images"],
        "albs": _albs(facts),
        "key_pairs": {k["KeyName"]: k for k in keys},
    }


def _albs(facts: dict) -> list[dict]:
    """Each load balancer with its target groups, each group with its registered targets ({id, port})."""
    albs = []
    for lb in facts["load_balancers"]:
        groups = [{**group, "targets": [h["target"] for h in group.get("targets_health_description") or []]}
                  for group in facts["target_groups"] if lb["load_balancer_arn"] in group.get("load_balancer_arns", [])]
        albs.append({**lb, "target_groups": groups})
    return albs


def load_state() -> dict | None:
    try:
        return json.loads(config.STATE_FILE.read_text())
    except (OSError, ValueError):
        return None


def save_state(plan: dict) -> None:
    config.STATE_FILE.parent.mkdir(parents=True, exist_ok=True)
    config.STATE_FILE.write_text(json.dumps(plan, indent=2, default=str))
