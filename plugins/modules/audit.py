#!/usr/bin/python
"""fumidai.vpc.audit: find security violations in a VPC's state (no AWS calls)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: audit
short_description: Report the security violations of one or more VPCs
description:
  - Pure analysis of the state collected with the amazon.aws C(*_info) modules (see the C(fumidai.vpc.audit) playbook).
    Makes no AWS call.
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
  state:
    description:
      - Keys C(vpcs), C(instances), C(subnets), C(route_tables), C(security_groups), C(load_balancers),
        C(volumes) as the amazon.aws info modules return them, and C(project_tag) (C(key), C(value)) to
        include the project's unattached volumes.
    type: dict
    required: true
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
author: fumidai maintainers (@fumidai)
"""

EXAMPLES = r"""
- name: Audit the collected state
  fumidai.vpc.audit:
    state:
      vpcs: "{{ vpcs.vpcs }}"
      instances: "{{ instances.instances }}"
      security_groups: "{{ groups.security_groups }}"
      route_tables: "{{ route_tables.route_tables }}"
      load_balancers: "{{ albs.load_balancers }}"
      volumes: "{{ volumes.volumes }}"
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

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.fumidai.vpc.plugins.module_utils.fumidai_access import (
    DEFAULT_FORWARD,
    forward_problems,
    port_problems,
)
from ansible_collections.fumidai.vpc.plugins.module_utils.fumidai_checks import audit


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "state": {"type": "dict", "required": True},
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
    facts = {**params["state"], "known_hosts": {"path": path, "text": known_hosts_text},
             "policy": {key: params[key] for key in ("allow_ssh_from_anywhere", "update_ports", "forward_ports")}}
    result = audit(facts)
    result["known_hosts_file"] = path
    # "failed" is reserved by Ansible for the task's own status.
    result["failed_checks"] = result.pop("failed")
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
