"""How the doctor's and the audit's reports word things: roles, lists of groups, port ranges, networks.

Resources are named "Name (id)" by vpc_model.label (tag values are untrusted: escaped by fumidai_text).
"""

from __future__ import annotations

from ansible_collections.fumidai.vpc.plugins.module_utils.vpc_model import label


def role_label(role: str, resource: dict) -> str:
    """'bastion (i-1)' for an instance named after its role, else 'bastion jump-1 (i-1)'."""
    text = label(resource)
    return text if text.split(" ")[0] == role else f"{role} {text}"


def groups_text(groups: list[dict]) -> str:
    """'web (sg-1), admin (sg-2)': the groups an instance or a load balancer holds."""
    return ", ".join(label(g) for g in groups)


def port_text(ports: tuple[int, int]) -> str:
    return str(ports[0]) if ports[0] == ports[1] else f"{ports[0]}-{ports[1]}"


def net_text(net) -> str:
    return "the internet (0.0.0.0/0)" if net.prefixlen == 0 else str(net)
