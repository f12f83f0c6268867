"""aws_teardown's plan: from what discovery read (every *_info result, all
read-only) and the stack record, decide what teardown deletes, what it leaves
alone and what makes it refuse.

Only resources inside the stack's VPC that carry the project tag are
deleted, plus the stack's own Elastic IPs, load balancer, target groups and
key pair, found by the IDs the record holds (and checked to still carry the
project tag). Everything read from AWS is untrusted: names are only shown,
cleaned of control characters and shortened.

Documented for ansible-doc in the sidecar teardown_plan.yml beside this file.
"""

from __future__ import annotations

import re

from ansible.errors import AnsibleFilterError

# Ordered as teardown deletes (roles/aws_teardown/defaults/main.yml).
KINDS = ("load_balancers", "target_groups", "instances", "route_tables", "nat_gateways", "eips",
         "security_groups", "subnets", "internet_gateways", "vpcs", "key_pairs")
LABELS = {"load_balancers": "load-balancer", "target_groups": "target-group", "instances": "instance",
          "route_tables": "route-table", "nat_gateways": "nat-gateway", "eips": "eip",
          "security_groups": "security-group", "subnets": "subnet", "internet_gateways": "internet-gateway",
          "vpcs": "vpc", "key_pairs": "key-pair"}
UNPRINTABLE = re.compile(r"[^\x20-\x7e]")
NAME_LIMIT = 64


def _tags(resource: dict) -> dict:
    tags = resource.get("tags") or {}
    if isinstance(tags, list):  # boto3 style [{key, value}]
        return {t.get("key", t.get("Key")): t.get("value", t.get("Value")) for t in tags}
    return tags


def _shown(value) -> str:
    """A tag value fit for one line of output: printable ASCII, at most NAME_LIMIT characters."""
    text = UNPRINTABLE.sub("?", str(value or ""))
    return text if len(text) <= NAME_LIMIT else text[:NAME_LIMIT - 3] + "..."


def _name(resource: dict) -> str:
    return _shown(_tags(resource).get("Name", ""))


def teardown_plan(found: dict, stack: dict, tag_key: str, project: str) -> dict:
    """Return {vpc_found, delete: {kind: [...]}, lines, keep, foreign, protected, eni_ids, count}.

    found: vpcs, instances, nat_gateways, route_tables, security_groups, subnets,
    internet_gateways (each already filtered by the stack's VPC), eips, load_balancers,
    target_groups (all of the region) and key_pairs (by the recorded name).
    stack: the record (vpc_id, eip_allocation_ids, alb_arn, target_group_arns, key_pair).
    """
    if not isinstance(found, dict) or not isinstance(stack, dict):
        raise AnsibleFilterError("aws_teardown_plan: found and stack must be dicts")
    vpc_id = stack.get("vpc_id") or ""
    if not vpc_id:
        raise AnsibleFilterError("aws_teardown_plan: the stack has no vpc_id")

    def ours(resource: dict) -> bool:
        return _tags(resource).get(tag_key) == project

    def listed(key: str) -> list:
        return [r for r in (found.get(key) or []) if isinstance(r, dict)]

    delete: dict[str, list] = {kind: [] for kind in KINDS}
    keep: list[str] = []
    foreign: list[str] = []

    vpcs = [v for v in listed("vpcs") if (v.get("id") or v.get("vpc_id")) == vpc_id]
    vpc_found = bool(vpcs)

    # Resources found by the VPC filter: the tagged ones are the stack's; anything
    # else (but the VPC's own default group and main route table) blocks deleting
    # the VPC and belongs to someone else, so teardown refuses.
    def split(key: str, kind: str, ident, is_default=lambda r: False) -> list:
        mine = []
        for resource in listed(key):
            if ours(resource):
                mine.append(resource)
            elif not is_default(resource):
                foreign.append(f"{LABELS[kind]} {ident(resource)} ({_name(resource)})")
        return mine

    instances = split("instances", "instances", lambda r: r.get("instance_id"))
    nat_gateways = split("nat_gateways", "nat_gateways", lambda r: r.get("nat_gateway_id"))
    route_tables = split("route_tables", "route_tables", lambda r: r.get("id") or r.get("route_table_id"),
                         lambda r: any(a.get("main") for a in r.get("associations") or []))
    groups = split("security_groups", "security_groups", lambda r: r.get("group_id"),
                   lambda r: r.get("group_name") == "default")
    subnets = split("subnets", "subnets", lambda r: r.get("id") or r.get("subnet_id"))
    igws = split("internet_gateways", "internet_gateways", lambda r: r.get("internet_gateway_id"))

    delete["instances"] = [{"id": i["instance_id"], "name": _name(i)} for i in instances]
    delete["nat_gateways"] = [{"id": g["nat_gateway_id"], "name": _name(g)} for g in nat_gateways]
    delete["route_tables"] = [{"id": t.get("id") or t.get("route_table_id"), "vpc_id": vpc_id, "name": _name(t)}
                              for t in route_tables]
    delete["security_groups"] = [
        {"id": g["group_id"], "name": _shown(g.get("group_name")), "group_name": g.get("group_name"),
         "description": g.get("description"), "vpc_id": vpc_id,
         "references_groups": any(p.get("user_id_group_pairs")
                                  for p in (g.get("ip_permissions") or []) + (g.get("ip_permissions_egress") or []))}
        for g in groups]
    delete["subnets"] = [{"id": s.get("id") or s.get("subnet_id"), "vpc_id": vpc_id, "cidr": s.get("cidr_block"),
                          "name": _name(s)} for s in subnets]
    delete["internet_gateways"] = [{"id": g["internet_gateway_id"], "vpc_id": vpc_id, "name": _name(g)}
                                   for g in igws]
    for vpc in vpcs:
        if ours(vpc):
            delete["vpcs"].append({"id": vpc_id, "name": _name(vpc), "cidr": vpc.get("cidr_block")})
        else:
            foreign.append(f"vpc {vpc_id} ({_name(vpc)}) does not carry {tag_key}={project}")

    # Load balancers and target groups: the region's, kept when inside the VPC or
    # named by the record, and tagged.
    def elb(key: str, kind: str, arn_key: str, name_key: str, recorded: set) -> None:
        for resource in listed(key):
            arn = resource.get(arn_key)
            in_vpc = resource.get("vpc_id") == vpc_id
            if not in_vpc and arn not in recorded:
                continue
            line = f"{LABELS[kind]} {arn} ({_shown(resource.get(name_key))})"
            if ours(resource):
                delete[kind].append({"arn": arn, "name": resource.get(name_key)})
            elif in_vpc:
                foreign.append(line)
            else:
                keep.append(f"{line}: recorded for this stack but no longer tagged {tag_key}={project}")

    elb("load_balancers", "load_balancers", "load_balancer_arn", "load_balancer_name",
        {stack["alb_arn"]} if stack.get("alb_arn") else set())
    elb("target_groups", "target_groups", "target_group_arn", "target_group_name",
        set(stack.get("target_group_arns") or []))

    # Elastic IPs: the recorded ones and the tagged ones attached to this stack's
    # instances or NAT gateways, found before anything is deleted (terminating
    # the bastion detaches its EIP). An EIP attached to anything else is never
    # touched.
    instance_ids = {i["instance_id"] for i in instances}
    eni_ids = {n.get("network_interface_id") for i in instances for n in i.get("network_interfaces") or []}
    eni_ids |= {a.get("network_interface_id") for g in nat_gateways for a in g.get("nat_gateway_addresses") or []}
    eni_ids.discard(None)
    eni_ids.discard("")
    recorded_eips = set(stack.get("eip_allocation_ids") or [])
    for eip in listed("eips"):
        allocation = eip.get("allocation_id")
        eni = eip.get("network_interface_id") or ""
        instance = eip.get("instance_id") or ""
        attached_to_stack = bool(eni) and eni in eni_ids and (not instance or instance in instance_ids)
        if allocation not in recorded_eips and not (attached_to_stack and ours(eip)):
            if ours(eip):
                where = f"attached to {instance or eni}" if (instance or eni) else "not attached"
                keep.append(f"eip {allocation} ({_shown(eip.get('public_ip'))}, {_name(eip)}): tagged "
                            f"{tag_key}={project} but neither recorded for this stack nor attached to it "
                            f"({where}): left alone")
            continue
        line = f"eip {allocation} ({_shown(eip.get('public_ip'))}, {_name(eip)})"
        if not ours(eip):
            keep.append(f"{line}: recorded for this stack but no longer tagged {tag_key}={project}: left alone")
        elif (instance or eni) and not attached_to_stack:
            keep.append(f"{line}: attached to {instance or eni}, which is not part of this stack: "
                        "left alone (neither detached nor released)")
        else:
            delete["eips"].append({"allocation_id": allocation, "public_ip": eip.get("public_ip"),
                                   "name": _name(eip), "network_interface_id": eni})

    # The key pair: by the recorded name, only while it is the recorded one (same
    # ID) and still tagged; another stack may have re-imported the name since.
    recorded_key = stack.get("key_pair") or {}
    for key in listed("key_pairs"):
        if key.get("key_name") != recorded_key.get("name"):
            continue
        line = f"key-pair {key.get('key_pair_id')} ({_shown(key.get('key_name'))})"
        if recorded_key.get("id") and key.get("key_pair_id") != recorded_key["id"]:
            keep.append(f"{line}: not the recorded key pair {recorded_key['id']} (re-imported since): left alone")
        elif not ours(key):
            keep.append(f"{line}: no longer tagged {tag_key}={project}: left alone")
        else:
            delete["key_pairs"].append({"id": key.get("key_pair_id"), "name": key.get("key_name")})

    # Deletion protection is someone's decision that this load balancer must not
    # go: teardown does not override it.
    protected = [f"load-balancer {lb.get('load_balancer_arn')} ({_shown(lb.get('load_balancer_name'))})"
                 for lb in listed("load_balancers")
                 if lb.get("load_balancer_arn") in {item["arn"] for item in delete["load_balancers"]}
                 and str(lb.get("deletion_protection_enabled", "")).lower() == "true"]

    lines = []
    for kind in KINDS:
        for item in delete[kind]:
            if kind in ("load_balancers", "target_groups"):
                lines.append(f"{LABELS[kind]} {item['arn']} ({_shown(item['name'])})")
            elif kind == "eips":
                lines.append(f"eip {item['allocation_id']} ({_shown(item['public_ip'])}, {item['name']})")
            elif kind == "key_pairs":
                lines.append(f"key-pair {item['id']} ({_shown(item['name'])})")
            else:
                lines.append(f"{LABELS[kind]} {item['id']} ({item['name']})")
    return {"vpc_found": vpc_found, "delete": delete, "lines": lines, "keep": keep, "foreign": foreign,
            "protected": protected, "eni_ids": sorted(eni_ids), "count": len(lines)}


class FilterModule:
    """fumidai.vpc.teardown_plan: what teardown deletes, leaves alone or refuses."""

    def filters(self):
        return {"teardown_plan": teardown_plan}
