#!/usr/bin/python
"""fumidai.vpc.doctor: walk a network path through a VPC, hop by hop (no AWS calls)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: doctor
short_description: Explain why an instance can or cannot be reached, hop by hop
description:
  - Pure analysis of a VPC's state that the caller collected with the amazon.aws C(*_info) modules
    (see the C(fumidai.vpc.doctor) playbook). Makes no AWS call.
  - Walks one path (C(ssh) from the admin's address through the bastion, C(http) from the internet
    through the ALB, or C(egress) from the instance to the internet) and returns one verdict per hop,
    PASS, BLOCKED (with the reason and the fix) or SKIPPED.
  - Names and descriptions read from AWS are untrusted; every hop, fix and summary shows them escaped
    (see plugins/module_utils/fumidai_text.py). C(target_name) is the raw tag value.
  - Never fails because a path is blocked; the caller decides (the result has C(blocked)).
    Fails on input it cannot use (unknown or ambiguous target, bad I(source_cidr)).
options:
  path:
    description: Which path to walk.
    type: str
    required: true
    choices: [ssh, http, egress]
  target:
    description: The target instance, by Name tag or instance id.
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
      - The VPC's state, keys C(instances), C(subnets), C(route_tables), C(security_groups), C(network_acls),
        C(nat_gateways), C(internet_gateways), C(load_balancers), C(target_groups), each as the matching
        amazon.aws info module returns it.
    type: dict
    required: true
author: fumidai maintainers (@fumidai)
"""

EXAMPLES = r"""
- name: Walk the ssh path to web02
  fumidai.vpc.doctor:
    path: ssh
    target: web02
    source_cidr: 203.0.113.10/32
    state:
      instances: "{{ instances.instances }}"
      subnets: "{{ subnets.subnets }}"
      route_tables: "{{ route_tables.route_tables }}"
      security_groups: "{{ groups.security_groups }}"
      network_acls: "{{ nacls.nacls }}"
      nat_gateways: "{{ nat_gateways.result }}"
      internet_gateways: "{{ igws.internet_gateways }}"
  register: doctor
"""

RETURN = r"""
blocked:
  description: Whether any hop is blocked.
  type: bool
  returned: always
summary:
  description: One sentence verdict.
  type: str
  returned: always
hops:
  description: One entry per hop, with C(hop), C(status) (PASS, BLOCKED, SKIPPED), C(detail) and C(fix).
  type: list
  elements: dict
  returned: always
lines:
  description: The report as printable lines.
  type: list
  elements: str
  returned: always
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.fumidai.vpc.plugins.module_utils.fumidai_paths import DoctorError, walk


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "str", "required": True, "choices": ["ssh", "http", "egress"]},
            "target": {"type": "str", "required": True},
            "source_cidr": {"type": "str"},
            "bastion": {"type": "str"},
            "egress_ports": {"type": "list", "elements": "int", "default": [80, 443]},
            "state": {"type": "dict", "required": True},
        },
        required_if=[("path", "ssh", ["source_cidr"])],
        supports_check_mode=True,
    )
    params = module.params
    try:
        result = walk(params["state"], params["path"], params["target"], source_cidr=params["source_cidr"],
                      bastion=params["bastion"], egress_ports=params["egress_ports"])
    except DoctorError as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
