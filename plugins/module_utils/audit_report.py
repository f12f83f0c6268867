"""The security audit: what must never be true in a fumidai VPC, checked on the VPCs' facts, and its report.

Pure Python, no AWS calls. ``audit(facts)`` takes the audited VPCs' state as vpc_reader reads it (vpcs,
instances, subnets, route_tables, security_groups, load_balancers, volumes; amazon.aws's ``*_info`` shapes
work too), the project's known_hosts file (``known_hosts``: its path and text) and the design's policy
(``policy``: allow_ssh_from_anywhere, update_ports, and forward_ports in nat_instance_forward_ports's shape),
and returns one violation per problem, each with the resource, the reason and the fix in plain words. The
checks are audit_checks's (instances, host keys, volumes) and audit_group_checks's (security groups).
"""

from __future__ import annotations

from ansible_collections.fumidai.vpc.plugins.module_utils.audit_checks import (
    CHECKS,
    DEFAULT_POLICY,
    admits_tcp_port,
    attached_instance_ids,
    check_host_keys,
    check_instances,
    check_volumes,
    world_sources,
)
from ansible_collections.fumidai.vpc.plugins.module_utils.audit_group_checks import (
    check_admin_ranges,
    check_bastion_egress,
    check_nat_groups,
    check_security_groups,
    nat_standby_notes,
)
from ansible_collections.fumidai.vpc.plugins.module_utils.fumidai_access import truthy
from ansible_collections.fumidai.vpc.plugins.module_utils.vpc_model import instance_group_ids, label, tags_dict

__all__ = ["CHECKS", "audit"]


def audit(facts: dict) -> dict:
    vpcs = facts.get("vpcs") or []
    vpc_ids = {v["vpc_id"] for v in vpcs}
    vpc_cidrs = {v["vpc_id"]: [a["cidr_block"] for a in v.get("cidr_block_association_set") or []
                               if a.get("cidr_block")] or [v.get("cidr_block")] for v in vpcs}
    instances = [i for i in facts.get("instances") or [] if i.get("vpc_id") in vpc_ids
                 and (i.get("state") or {}).get("name") not in ("terminated", "shutting-down")]
    groups = {g["group_id"]: g for g in facts.get("security_groups") or [] if g.get("vpc_id") in vpc_ids}
    subnets = [s for s in facts.get("subnets") or [] if s.get("vpc_id") in vpc_ids]
    route_tables = facts.get("route_tables") or []
    albs = [lb for lb in facts.get("load_balancers") or [] if lb.get("vpc_id") in vpc_ids]
    alb_group_ids = {g for lb in albs for g in lb.get("security_groups") or []}
    instance_ids = {i["instance_id"] for i in instances}
    project = facts.get("project_tag") or {}
    volumes = [v for v in facts.get("volumes") or []
               if any(i in instance_ids for i in attached_instance_ids(v))
               or (project and tags_dict(v).get(project.get("key")) == project.get("value"))]
    policy = {**DEFAULT_POLICY, **{k: v for k, v in (facts.get("policy") or {}).items() if v is not None}}
    allow_anywhere = truthy(policy["allow_ssh_from_anywhere"])
    bastions = [i for i in instances if tags_dict(i).get("Role") == "bastion"]
    nats = [i for i in instances if tags_dict(i).get("Role") == "nat"]
    bastion_group_ids = {gid for i in bastions for gid in instance_group_ids(i, all_interfaces=True)}

    notes = []
    accepted = frozenset(bastion_group_ids) if allow_anywhere else frozenset()
    for gid in sorted(accepted):
        if any(world_sources(r) and admits_tcp_port(r, 22) for r in groups.get(gid, {}).get("ip_permissions") or []):
            notes.append(f"allow_ssh_from_anywhere is true: SSH from anywhere to the bastion's security group "
                         f"{label(groups[gid])} is accepted as the design's choice, not reported")
    violations = check_security_groups(list(groups.values()), alb_group_ids, accepted)
    violations += check_admin_ranges(bastions, groups, allow_anywhere, notes)
    violations += check_bastion_egress(bastions, groups, vpc_cidrs, [int(p) for p in policy["update_ports"]])
    violations += check_instances(instances, route_tables, groups, alb_group_ids, vpc_cidrs)
    violations += check_nat_groups(nats, groups, subnets, route_tables, bastion_group_ids, policy)
    notes += nat_standby_notes(nats, subnets, route_tables)
    violations += check_host_keys(instances, facts.get("known_hosts"))
    violations += check_volumes(volumes, instances)
    audited = ", ".join(label(v) for v in vpcs)
    counts = f"{len(groups)} security groups, {len(instances)} instances, {len(volumes)} volumes"
    if violations:
        summary = f"{len(violations)} violation(s) in {audited} ({counts} checked)"
    else:
        summary = f"clean: no violation in {audited} ({counts} checked)"
    lines = [f"[VIOLATION] {v['title']}: {v['message']}\n      fix: {v['fix']}" for v in violations]
    lines += [f"[NOTE] {note}" for note in notes]
    return {"violations": violations, "failed": bool(violations), "summary": summary, "lines": lines + [summary],
            "notes": notes, "checks": CHECKS}
