#!/usr/bin/python
# MIT License (see LICENSE)
"""fumidai.vpc.audit: find the security violations of one or more VPCs, read from the account."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: audit
short_description: Report the security violations of one or more VPCs
description:
  - Reads the audited VPCs (I(vpc_id), else every VPC tagged with I(project_tag)) from AWS with read-only calls,
    their live instances, security groups, subnets, route tables, load balancers and the volumes attached to the
    instances or tagged with I(project_tag), or takes that state from I(state).
  - Checks SSH open to the world, security groups other than the ALB's open to the internet, private
    instances with a public IP, IMDSv1, unencrypted EBS volumes, the NAT instance (SSH from outside the VPC,
    source/destination check, a security group wider than the private hosts need), web servers reachable on 80
    from anything but the ALB, the bastion (SSH sources broader than the admin_cidrs limit, outbound rules wider
    than SSH into the VPC and updates) and every live instance without a pinned SSH host key.
  - Names and descriptions read from AWS are untrusted; every message shows them escaped (see fumidai_text).
  - Reads I(known_hosts_file) on the controller (the play runs on localhost); a missing file means no instance
    is pinned.
  - Never fails because of a violation; the caller decides (the result has C(failed_checks)).
options:
  vpc_id:
    description: The VPC to audit; default every VPC tagged with I(project_tag).
    type: str
  project_tag:
    description: The project's tag (C(key), C(value)), naming its VPCs and its volumes (attached or not).
    type: dict
    default: {key: Project, value: fumidai}
  state:
    description:
      - The state instead of reading it from AWS, keys C(vpcs), C(instances), C(subnets), C(route_tables),
        C(security_groups), C(load_balancers), C(volumes) as the amazon.aws info modules return them, and
        C(project_tag) (C(key), C(value)) to include the project's unattached volumes.
    type: dict
  known_hosts_file:
    description: The project's known_hosts file (C(<instance-id> <key-type> <key>) lines) that pins host keys.
    type: path
    required: true
  allow_ssh_from_anywhere:
    description: The design's opt-in for SSH from anywhere to the bastion (then broad sources are not reported).
    type: bool
    default: false
  update_ports:
    description: TCP ports the bastion and the NAT instance may open to the internet for their updates.
    type: list
    elements: int
    default: [80, 443]
  forward_ports:
    description:
      - "What the NAT instance forwards for the private subnets routed through it, as C(nat_instance_forward_ports)
        spells it, C({proto: tcp|udp, port: N}) or C({proto: icmp}) entries."
    type: list
    elements: dict
    default: [{proto: tcp, port: 80}, {proto: tcp, port: 443}, {proto: icmp}]
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
author: fumidai maintainers (@fumidai)
"""

EXAMPLES = r"""
- name: Audit every VPC tagged Project=fumidai
  fumidai.vpc.audit:
    known_hosts_file: .cache/known_hosts
  register: audit

- name: Audit one VPC
  fumidai.vpc.audit:
    vpc_id: vpc-0123456789abcdef0
    known_hosts_file: .cache/known_hosts
  register: audit
"""

RETURN = r"""
violations:
  description: One entry per violation, with C(check), C(title), C(resource), C(resource_id), C(message), C(fix).
  type: list
  elements: dict
  returned: always
failed_checks:
  description: Whether there is at least one violation.
  type: bool
  returned: always
summary:
  description: One sentence verdict.
  type: str
  returned: always
lines:
  description: The report as printable lines (violations, then notes, then the summary).
  type: list
  elements: str
  returned: always
known_hosts_file:
  description: The known_hosts file the pinned host keys were read from.
  type: str
  returned: always
notes:
  description: What was deliberately not reported and why (e.g. SSH from anywhere with the opt-in).
  type: list
  elements: str
  returned: always
"""

try:  # noqa: SIM105 - amazon.aws's pattern: AnsibleAWSModule reports a missing botocore
    from botocore.exceptions import BotoCoreError, ClientError
except ImportError:
    pass

from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule
from ansible_collections.fumidai.vpc.plugins.module_utils.audit_read_state import NothingToAudit, find_vpcs, read_facts
from ansible_collections.fumidai.vpc.plugins.module_utils.audit_report import audit
from ansible_collections.fumidai.vpc.plugins.module_utils.fumidai_access import (
    DEFAULT_FORWARD,
    forward_problems,
    port_problems,
)
from ansible_collections.fumidai.vpc.plugins.module_utils.vpc_reader import ReaderError


def read(module) -> dict:
    """The audited VPCs' state, read from AWS."""
    params = module.params
    ec2 = module.client("ec2")
    try:
        vpcs = find_vpcs(ec2, params["vpc_id"], params["project_tag"], module.region)
        return read_facts(ec2, module.client("elbv2"), vpcs, params["project_tag"])
    except NothingToAudit as exc:
        module.fail_json(msg=str(exc))
    except ReaderError as exc:
        module.fail_json_aws(exc.__cause__ or exc, msg=f"The audit could not read the VPCs' state ({exc})")
    except (BotoCoreError, ClientError) as exc:
        module.fail_json_aws(exc, msg="The audit could not read the VPCs' state")


def main() -> None:
    module = AnsibleAWSModule(
        argument_spec={
            "vpc_id": {"type": "str"},
            "project_tag": {"type": "dict", "default": {"key": "Project", "value": "fumidai"}},
            "state": {"type": "dict"},
            "known_hosts_file": {"type": "path", "required": True},
            "allow_ssh_from_anywhere": {"type": "bool", "default": False},
            "update_ports": {"type": "list", "elements": "int", "default": [80, 443]},
            "forward_ports": {"type": "list", "elements": "dict", "default": DEFAULT_FORWARD},
        },
        supports_check_mode=True,
    )
    params = module.params
    problems = forward_problems(params["forward_ports"], "forward_ports")
    problems += port_problems(params["update_ports"], "update_ports")
    if problems:
        module.fail_json(msg="; ".join(problems))
    path = params["known_hosts_file"]
    try:
        with open(path, encoding="utf-8") as handle:
            known_hosts_text = handle.read()
    except FileNotFoundError:
        known_hosts_text = None
    except (OSError, UnicodeDecodeError) as exc:
        module.fail_json(msg=f"cannot read known_hosts_file {path}: {exc}")
    state = params["state"] if params["state"] is not None else read(module)
    facts = {**state, "known_hosts": {"path": path, "text": known_hosts_text},
             "policy": {key: params[key] for key in ("allow_ssh_from_anywhere", "update_ports", "forward_ports")}}
    result = audit(facts)
    result["known_hosts_file"] = path
    # "failed" is reserved by Ansible for the task's own status.
    result["failed_checks"] = result.pop("failed")
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
