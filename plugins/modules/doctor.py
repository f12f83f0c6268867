#!/usr/bin/python
# MIT License (see LICENSE)
"""fumidai.vpc.doctor: walk a network path through a VPC, hop by hop, from the account's real state."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: doctor
short_description: Explain why an instance can or cannot be reached, hop by hop
description:
  - Reads the state of the target's VPC from AWS (instances, subnets, route tables, security groups, network ACLs,
    NAT gateways, internet gateways and, for C(http), the load balancers with their listeners, target groups and
    target health) with read-only calls, or takes it from I(state), and walks one path.
  - The paths, one module each under plugins/module_utils/doctor/ and registered in its registry.py;
    C(ssh) from the admin's address (I(source_cidr)) through the bastion to the target; C(http) from the
    internet through the ALB to the target; C(egress) from the target out to the internet (I(egress_ports)).
  - Returns one verdict per hop, PASS, BLOCKED (with the reason and the fix), SKIPPED, or DEGRADED (passes with less
    to spare, e.g. through the other zone's bastion while the target's own is stopped; with the reason and the fix).
  - Names and descriptions read from AWS are untrusted; every hop, fix and summary shows them escaped
    (see plugins/module_utils/fumidai_text.py). C(target_name) is the raw tag value.
  - Never fails because a path is blocked; the caller decides (the result has C(blocked)).
    Fails on input it cannot use (unknown or ambiguous target, bad I(source_cidr)).
options:
  path:
    description: Which path to walk (see the description).
    type: str
    required: true
    choices: [ssh, http, egress]
  target:
    description: The target instance, by Name tag or instance id (live instances only).
    type: str
    required: true
  source_cidr:
    description: The admin's address or range (required for I(path=ssh)).
    type: str
  bastion:
    description: The bastion by Name or id; default the instance tagged Role=bastion in the target's VPC.
    type: str
  egress_ports:
    description: TCP ports the C(egress) path must allow to the internet.
    type: list
    elements: int
    default: [80, 443]
  state:
    description:
      - The VPC's state instead of reading it from AWS, keys C(instances), C(subnets), C(route_tables),
        C(security_groups), C(network_acls), C(nat_gateways), C(internet_gateways), C(load_balancers),
        C(target_groups), each as the matching amazon.aws info module returns it.
    type: dict
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
author: fumidai maintainers (@fumidai)
"""

EXAMPLES = r"""
- name: Walk the ssh path to web02
  fumidai.vpc.doctor:
    path: ssh
    target: web02
    source_cidr: 203.0.113.10/32
  register: doctor

- name: Walk the http path to an instance, in another region
  fumidai.vpc.doctor:
    region: eu-west-1
    path: http
    target: i-0123456789abcdef0
  register: doctor
"""

RETURN = r"""
path:
  description: The path walked.
  type: str
  returned: always
target:
  description: The target's instance id.
  type: str
  returned: always
target_name:
  description: The target's Name tag, raw (untrusted).
  type: str
  returned: always
vpc_id:
  description: The target's VPC.
  type: str
  returned: always
blocked:
  description: Whether any hop is blocked.
  type: bool
  returned: always
degraded:
  description: Whether any hop passes only degraded (the path works, with less to spare).
  type: bool
  returned: always
summary:
  description: One sentence verdict.
  type: str
  returned: always
hops:
  description: One entry per hop, with C(hop), C(status) (PASS, BLOCKED, SKIPPED, DEGRADED), C(detail) and C(fix).
  type: list
  elements: dict
  returned: always
lines:
  description: The report as printable lines.
  type: list
  elements: str
  returned: always
"""

try:  # noqa: SIM105 - amazon.aws's pattern: AnsibleAWSModule reports a missing botocore
    from botocore.exceptions import BotoCoreError, ClientError
except ImportError:
    pass

from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule
from ansible_collections.fumidai.vpc.plugins.module_utils.doctor.read_state import find_target, read_facts
from ansible_collections.fumidai.vpc.plugins.module_utils.doctor.registry import ARGUMENTS, PATHS, walk
from ansible_collections.fumidai.vpc.plugins.module_utils.doctor.state import DoctorError
from ansible_collections.fumidai.vpc.plugins.module_utils.vpc_reader import ReaderError

OPTIONS = {
    "source_cidr": {"type": "str"},
    "bastion": {"type": "str"},
    "egress_ports": {"type": "list", "elements": "int", "default": ARGUMENTS["egress_ports"]},
}


def argument_spec() -> dict:
    """The options, the path's choices from the registry."""
    return {"path": {"type": "str", "required": True, "choices": list(PATHS)},
            "target": {"type": "str", "required": True}, **OPTIONS, "state": {"type": "dict"}}


def required_if() -> list:
    return [("path", name, list(entry.required)) for name, entry in PATHS.items() if entry.required]


def read(module, entry, target_spec: str) -> tuple[dict, str]:
    """The facts for the walk and the target's instance id, read from AWS."""
    ec2 = module.client("ec2")
    elbv2 = module.client("elbv2") if "load_balancers" in entry.reads else None
    try:
        target = find_target(ec2, target_spec, module.region)
        return read_facts(ec2, elbv2, target, module.params["bastion"], entry.reads), target["instance_id"]
    except DoctorError as exc:  # unknown or ambiguous target: the usage would not help
        module.fail_json(msg=str(exc), doctor_usage=False)
    except ReaderError as exc:
        module.fail_json_aws(exc.__cause__ or exc, msg=f"The doctor could not read the VPC's state ({exc})",
                             doctor_usage=False)
    except (BotoCoreError, ClientError) as exc:
        module.fail_json_aws(exc, msg="The doctor could not look the target up", doctor_usage=False)


def main() -> None:
    module = AnsibleAWSModule(argument_spec=argument_spec(), required_if=required_if(), supports_check_mode=True)
    params = module.params
    entry = PATHS[params["path"]]
    facts, target = params["state"], params["target"]
    if facts is None:
        facts, target = read(module, entry, target)
    try:
        result = walk(facts, entry.name, target, **{name: params[name] for name in OPTIONS})
    except DoctorError as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
