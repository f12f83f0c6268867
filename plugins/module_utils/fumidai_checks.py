"""The security audit's checks: what must never be true in a fumidai VPC.

Pure Python, no AWS calls. ``audit(facts)`` takes the audited VPCs' state as
the amazon.aws ``*_info`` modules return it (vpcs, instances, subnets,
route_tables, security_groups, load_balancers, volumes) and returns one
violation per problem, each with the resource, the reason and the fix in plain
words. Rule matching is fumidai_paths's; "is this subnet public?" is
fumidai_topology's.

Imported by modules as ``ansible.module_utils.fumidai_checks``.
"""

from __future__ import annotations

import ipaddress

try:
    from ansible.module_utils.fumidai_paths import label, sg_rule_matches
    from ansible.module_utils.fumidai_topology import subnet_is_public, tags_dict
except ImportError:  # imported from plugins/module_utils directly (unit tests)
    from fumidai_paths import label, sg_rule_matches
    from fumidai_topology import subnet_is_public, tags_dict

WORLD = ("0.0.0.0/0", "::/0")

CHECKS = {
    "ssh_open_to_world": "SSH open to the world",
    "open_to_internet": "open to the internet (not the ALB)",
    "private_instance_public_ip": "private instance with a public IP",
    "imdsv1_allowed": "IMDSv1 allowed",
    "unencrypted_volume": "unencrypted EBS volume",
    "nat_ssh_from_outside": "NAT instance: SSH from outside the VPC",
    "nat_source_dest_check": "NAT instance: source/dest check on",
    "web_http_not_only_alb": "web server: port 80 not only from the ALB",
}


def _violation(check: str, resource: dict | None, resource_id: str, message: str, fix: str) -> dict:
    return {"check": check, "title": CHECKS[check], "resource_id": resource_id,
            "resource": label(resource, resource_id), "message": message, "fix": fix}


def _world_sources(rule: dict) -> list[str]:
    cidrs = [r.get("cidr_ip") for r in rule.get("ip_ranges") or []]
    cidrs += [r.get("cidr_ipv6") for r in rule.get("ipv6_ranges") or []]
    return [c for c in cidrs if c in WORLD]


def _ports_text(rule: dict) -> str:
    if str(rule.get("ip_protocol")) in ("-1", "all"):
        return "all traffic"
    low, high = rule.get("from_port"), rule.get("to_port")
    ports = str(low) if low == high else f"{low}-{high}"
    return f"{str(rule.get('ip_protocol')).upper()} {ports}"


def _covers_ssh(rule: dict) -> bool:
    return sg_rule_matches({**rule, "ip_ranges": [{"cidr_ip": "0.0.0.0/0"}], "ipv6_ranges": [],
                            "user_id_group_pairs": []}, 22, ipaddress.ip_network("0.0.0.0/32")) is not None


def _instance_group_ids(inst: dict) -> list[str]:
    ids = [g["group_id"] for g in inst.get("security_groups") or []]
    for eni in inst.get("network_interfaces") or []:
        ids += [g["group_id"] for g in eni.get("groups") or []]
    return list(dict.fromkeys(ids))


def _revoke(group: dict, rule: dict, source: str) -> str:
    proto = str(rule.get("ip_protocol"))
    perm = f"IpProtocol={proto}"
    if proto not in ("-1", "all"):
        perm += f",FromPort={rule.get('from_port')},ToPort={rule.get('to_port')}"
    ranges = f"Ipv6Ranges=[{{CidrIpv6={source}}}]" if ":" in source else f"IpRanges=[{{CidrIp={source}}}]"
    return f"aws ec2 revoke-security-group-ingress --group-id {group['group_id']} --ip-permissions {perm},{ranges}"


def check_security_groups(groups: list[dict], alb_group_ids: set[str]) -> list[dict]:
    out = []
    for group in groups:
        for rule in group.get("ip_permissions") or []:
            world = _world_sources(rule)
            if not world:
                continue
            for source in world:
                if _covers_ssh(rule):
                    out.append(_violation(
                        "ssh_open_to_world", group, group["group_id"],
                        f"security group {label(group)} allows {_ports_text(rule)} (SSH included) from {source}: "
                        f"anyone on the internet can try to log in",
                        f"Restrict SSH to your office/VPN ranges (admin_cidrs) and remove the {source} rule "
                        f"({_revoke(group, rule, source)})."))
                ssh_only = str(rule.get("ip_protocol")) in ("tcp", "6") and rule.get("from_port") == 22 \
                    and rule.get("to_port") == 22
                if group["group_id"] not in alb_group_ids and not ssh_only:
                    out.append(_violation(
                        "open_to_internet", group, group["group_id"],
                        f"security group {label(group)} is not a load balancer's, yet allows {_ports_text(rule)} "
                        f"from {source}: only the ALB should face the internet",
                        f"Remove the {source} rule and admit that traffic from the ALB's security group "
                        f"(or your admin_cidrs) instead ({_revoke(group, rule, source)})."))
    return out


def check_instances(instances: list[dict], route_tables: list[dict], groups: dict[str, dict],
                    alb_group_ids: set[str], vpc_cidrs: dict[str, list[str]]) -> list[dict]:
    out = []
    for inst in instances:
        iid = inst["instance_id"]
        role = tags_dict(inst).get("Role")
        public_ip = inst.get("public_ip_address")
        if public_ip and inst.get("subnet_id") and not subnet_is_public(inst["subnet_id"], inst.get("vpc_id"),
                                                                        route_tables):
            out.append(_violation(
                "private_instance_public_ip", inst, iid,
                f"instance {label(inst)} is in a private subnet ({inst['subnet_id']}) but has public IP {public_ip}",
                "Private hosts must have no public address: release/disassociate it (launch with "
                "AssociatePublicIpAddress=false and turn off the subnet's map_public_ip_on_launch)."))
        metadata = inst.get("metadata_options") or {}
        if metadata.get("http_endpoint", "enabled") != "disabled" and metadata.get("http_tokens") != "required":
            out.append(_violation(
                "imdsv1_allowed", inst, iid,
                f"instance {label(inst)} allows IMDSv1 (http_tokens={metadata.get('http_tokens', 'unset')}): "
                f"a server-side request forgery can read its credentials",
                f"Require tokens (aws ec2 modify-instance-metadata-options --instance-id {iid} "
                f"--http-tokens required --http-endpoint enabled; amazon.aws.ec2_instance: "
                f"metadata_options.http_tokens=required)."))
        inst_groups = [groups.get(gid, {"group_id": gid}) for gid in _instance_group_ids(inst)]
        if role == "nat":
            out += _check_nat(inst, inst_groups, vpc_cidrs.get(inst.get("vpc_id"), []))
        if role == "web":
            out += _check_web(inst, inst_groups, alb_group_ids)
    return out


def _check_nat(inst: dict, inst_groups: list[dict], vpc_cidrs: list[str]) -> list[dict]:
    out = []
    iid = inst["instance_id"]
    if inst.get("source_dest_check", True):
        out.append(_violation(
            "nat_source_dest_check", inst, iid,
            f"NAT instance {label(inst)} has its source/destination check on: AWS drops the packets it forwards, "
            f"so the private subnets behind it have no egress",
            f"Disable it (aws ec2 modify-instance-attribute --instance-id {iid} --no-source-dest-check)."))
    vpc_nets = [ipaddress.ip_network(c) for c in vpc_cidrs]
    for group in inst_groups:
        for rule in group.get("ip_permissions") or []:
            if not _covers_ssh(rule):
                continue
            cidrs = [r.get("cidr_ip") for r in rule.get("ip_ranges") or []]
            cidrs += [r.get("cidr_ipv6") for r in rule.get("ipv6_ranges") or []]
            outside = [c for c in cidrs if c and not any(
                ipaddress.ip_network(c, strict=False).version == n.version
                and ipaddress.ip_network(c, strict=False).subnet_of(n) for n in vpc_nets)]
            for cidr in outside:
                out.append(_violation(
                    "nat_ssh_from_outside", inst, iid,
                    f"NAT instance {label(inst)} accepts SSH from {cidr} (outside the VPC) through security group "
                    f"{label(group)}",
                    f"Allow SSH to the NAT instance only from the bastion's security group; remove the {cidr} "
                    f"rule from {group['group_id']}."))
    return out


def _check_web(inst: dict, inst_groups: list[dict], alb_group_ids: set[str]) -> list[dict]:
    out = []
    iid = inst["instance_id"]
    any_net = ipaddress.ip_network("0.0.0.0/0")
    for group in inst_groups:
        for rule in group.get("ip_permissions") or []:
            if sg_rule_matches({**rule, "ip_ranges": [{"cidr_ip": "0.0.0.0/0"}], "user_id_group_pairs": []},
                               80, any_net) is None:
                continue
            sources = [r.get("cidr_ip") for r in rule.get("ip_ranges") or []]
            sources += [r.get("cidr_ipv6") for r in rule.get("ipv6_ranges") or []]
            sources += [p.get("prefix_list_id") for p in rule.get("prefix_list_ids") or []]
            sources += [p.get("group_id") for p in rule.get("user_id_group_pairs") or []
                        if p.get("group_id") not in alb_group_ids]
            for source in filter(None, sources):
                out.append(_violation(
                    "web_http_not_only_alb", inst, iid,
                    f"web server {label(inst)} accepts port 80 from {source} ({_ports_text(rule)} in security "
                    f"group {label(group)}), not only from the ALB",
                    f"Admit HTTP only from the ALB's security group; remove the {source} rule from "
                    f"{group['group_id']}."))
    return out


def check_volumes(volumes: list[dict], instances: list[dict]) -> list[dict]:
    out = []
    names = {i["instance_id"]: i for i in instances}
    for volume in volumes:
        if volume.get("encrypted"):
            continue
        vid = volume.get("id") or volume.get("volume_id")
        attached = [a.get("instance_id") for a in volume.get("attachment_set") or volume.get("attachments") or []]
        where = ", ".join(label(names.get(a), a) for a in attached if a) or "no instance"
        out.append(_violation(
            "unencrypted_volume", volume, vid,
            f"EBS volume {label(volume, vid)} (attached to {where}) is not encrypted",
            "Encrypt it: snapshot it, copy the snapshot with --encrypted, create a volume from the copy and swap "
            "it in; turn on EBS encryption by default (aws ec2 enable-ebs-encryption-by-default)."))
    return out


def audit(facts: dict) -> dict:
    vpcs = facts.get("vpcs") or []
    vpc_ids = {v["vpc_id"] for v in vpcs}
    vpc_cidrs = {v["vpc_id"]: [a["cidr_block"] for a in v.get("cidr_block_association_set") or []
                                if a.get("cidr_block")] or [v.get("cidr_block")] for v in vpcs}
    instances = [i for i in facts.get("instances") or [] if i.get("vpc_id") in vpc_ids
                 and (i.get("state") or {}).get("name") not in ("terminated", "shutting-down")]
    groups = {g["group_id"]: g for g in facts.get("security_groups") or [] if g.get("vpc_id") in vpc_ids}
    route_tables = facts.get("route_tables") or []
    albs = [lb for lb in facts.get("load_balancers") or [] if lb.get("vpc_id") in vpc_ids]
    alb_group_ids = {g for lb in albs for g in lb.get("security_groups") or []}
    instance_ids = {i["instance_id"] for i in instances}
    project = facts.get("project_tag") or {}
    volumes = [v for v in facts.get("volumes") or []
               if any(a.get("instance_id") in instance_ids for a in v.get("attachment_set") or [])
               or (project and tags_dict(v).get(project.get("key")) == project.get("value"))]

    violations = check_security_groups(list(groups.values()), alb_group_ids)
    violations += check_instances(instances, route_tables, groups, alb_group_ids, vpc_cidrs)
    violations += check_volumes(volumes, instances)
    audited = ", ".join(label(v) for v in vpcs)
    counts = f"{len(groups)} security groups, {len(instances)} instances, {len(volumes)} volumes"
    if violations:
        summary = f"{len(violations)} violation(s) in {audited} ({counts} checked)"
    else:
        summary = f"clean: no violation in {audited} ({counts} checked)"
    lines = [f"[VIOLATION] {v['title']}: {v['message']}\n      fix: {v['fix']}" for v in violations]
    return {"violations": violations, "failed": bool(violations), "summary": summary, "lines": lines + [summary],
            "checks": CHECKS}
