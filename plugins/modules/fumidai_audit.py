#!/usr/bin/python
"""fumidai_audit: find security violations in a VPC's state (no AWS calls)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: fumidai_audit
short_description: Report the security violations of one or more VPCs
description:
  - Pure analysis of the state collected with the amazon.aws C(*_info) modules (see C(playbooks/audit.yml)).
    Makes no AWS call.
  - Checks SSH open to the world, security groups other than the ALB's open to the internet, private
    instances with a public IP, IMDSv1, unencrypted EBS volumes, the NAT instance (SSH from outside the VPC,
    source/destination check) and web servers reachable on 80 from anything but the ALB.
  - Never fails because of a violation; the caller decides (the result has C(failed_checks)).
options:
  state:
    description:
      - Keys C(vpcs), C(instances), C(subnets), C(route_tables), C(security_groups), C(load_balancers),
        C(volumes) as the amazon.aws info modules return them, and C(project_tag) (C(key), C(value)) to
        include the project's unattached volumes.
    type: dict
    required: true
author: fumidai
"""

EXAMPLES = r"""
- name: Audit the collected state
  fumidai_audit:
    state:
      vpcs: "{{ vpcs.vpcs }}"
      instances: "{{ instances.instances }}"
      security_groups: "{{ groups.security_groups }}"
      route_tables: "{{ route_tables.route_tables }}"
      load_balancers: "{{ albs.load_balancers }}"
      volumes: "{{ volumes.volumes }}"
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
  description: The report as printable lines.
  type: list
  elements: str
  returned: always
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible.module_utils.fumidai_checks import audit  # noqa: E402


def main() -> None:
    module = AnsibleModule(argument_spec={"state": {"type": "dict", "required": True}}, supports_check_mode=True)
    result = audit(module.params["state"])
    # "failed" is reserved by Ansible for the task's own status.
    result["failed_checks"] = result.pop("failed")
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
