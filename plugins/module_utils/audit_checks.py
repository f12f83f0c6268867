"""The audit's table of checks, the wording of its findings, and its checks of instances and volumes.

Pure Python, no AWS calls. The checks of security groups are audit_group_checks's; audit_report runs them all
on the facts vpc_reader read. Rule matching is vpc_rules's; "is this subnet public?" and "which groups guard
this instance?" are vpc_model's; "which instances have a pinned host key?" is fumidai_host_keys's. Every
name read from AWS is printed through vpc_model.label (escaped).
"""

from __future__ import annotations

import ipaddress

from ansible_collections.fumidai.vpc.plugins.module_utils.fumidai_access import DEFAULT_FORWARD
from ansible_collections.fumidai.vpc.plugins.module_utils.fumidai_host_keys import HostKeyError, parse_known_hosts
from ansible_collections.fumidai.vpc.plugins.module_utils.fumidai_text import text as shown_text
from ansible_collections.fumidai.vpc.plugins.module_utils.vpc_model import (
    instance_group_ids,
    label,
    subnet_is_public,
    tags_dict,
)
from ansible_collections.fumidai.vpc.plugins.module_utils.vpc_rules import (
    normalize_sg_rule,
    protocol_matches,
    rule_ports,
)

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
    "broad_admin_cidrs": "bastion: SSH from a range broader than the admin limit",
    "bastion_egress_open": "bastion: outbound rules wider than SSH into the VPC and updates",
    "nat_sg_too_wide": "NAT instance: security group wider than the private hosts need",
    "no_pinned_host_key": "instance without a pinned SSH host key",
}

# What the roles (aws_security_groups) build by default; audit.yml passes the design's own values.
DEFAULT_POLICY = {"allow_ssh_from_anywhere": False, "update_ports": [80, 443], "forward_ports": DEFAULT_FORWARD}


def violation(check: str, resource: dict | None, resource_id: str, message: str, fix: str) -> dict:
    return {"check": check, "title": CHECKS[check], "resource_id": resource_id,
            "resource": label(resource, resource_id), "message": message, "fix": fix}


def groups_of(inst: dict, groups: dict[str, dict]) -> list[dict]:
    """Every group guarding the instance, secondary interfaces' included: an exposure check counts them all."""
    return [groups.get(gid, {"group_id": gid}) for gid in instance_group_ids(inst, all_interfaces=True)]


def world_sources(rule: dict) -> list[str]:
    sg_rule = normalize_sg_rule(rule)
    return [c for c in sg_rule.cidrs_v4 + sg_rule.cidrs_v6 if c in WORLD]


def ports_text(rule: dict) -> str:
    if str(rule.get("ip_protocol")) in ("-1", "all"):
        return "all traffic"
    low, high = rule.get("from_port"), rule.get("to_port")
    if str(rule.get("ip_protocol")).lower() in ("icmp", "1", "icmpv6", "58") and low in (None, -1):
        return f"{str(rule.get('ip_protocol')).upper()} (all types)"
    ports = str(low) if low == high else f"{low}-{high}"
    return f"{str(rule.get('ip_protocol')).upper()} {ports}"


def admits_tcp_port(rule: dict, port: int) -> bool:
    """The rule's protocol and ports cover TCP ``port`` (from whichever peers it names)."""
    low, high = rule_ports(rule)
    return protocol_matches(rule.get("ip_protocol")) and low <= port <= high


def revoke_command(group: dict, rule: dict, source: str, egress: bool = False) -> str:
    proto = str(rule.get("ip_protocol"))
    perm = f"IpProtocol={proto}"
    if proto not in ("-1", "all"):
        perm += f",FromPort={rule.get('from_port')},ToPort={rule.get('to_port')}"
    if source.startswith("sg-"):
        ranges = f"UserIdGroupPairs=[{{GroupId={source}}}]"
    elif source.startswith("pl-"):
        ranges = f"PrefixListIds=[{{PrefixListId={source}}}]"
    elif ":" in source:
        ranges = f"Ipv6Ranges=[{{CidrIpv6={source}}}]"
    else:
        ranges = f"IpRanges=[{{CidrIp={source}}}]"
    command = "revoke-security-group-egress" if egress else "revoke-security-group-ingress"
    return f"aws ec2 {command} --group-id {group['group_id']} --ip-permissions {perm},{ranges}"


def rule_peers(rule: dict) -> list[str]:
    """Every source (ingress) or destination (egress) of a rule: CIDRs, prefix lists, security groups."""
    return list(normalize_sg_rule(rule).peers)


def within(rule: dict, allowed: dict) -> bool:
    """A rule that covers nothing beyond ``allowed`` ({"tcp": ports, "udp": ports, "icmp": bool})."""
    sg_rule = normalize_sg_rule(rule)
    if sg_rule.protocol == "icmp":
        return bool(allowed["icmp"])
    if sg_rule.protocol not in ("tcp", "udp"):
        return False
    low, high = sg_rule.ports
    return all(port in allowed[sg_rule.protocol] for port in range(low, high + 1))


def tcp_within(rule: dict, allowed) -> bool:
    """A TCP rule whose every port is in ``allowed``."""
    return within(rule, {"tcp": set(allowed), "udp": set(), "icmp": False})


def in_networks(peer: str, networks: list) -> bool:
    try:
        net = ipaddress.ip_network(peer, strict=False)
    except ValueError:  # a prefix list or a group id
        return False
    return any(net.version == n.version and net.subnet_of(n) for n in networks)


def allowed_text(allowed: dict) -> str:
    parts = [f"{proto.upper()} {', '.join(map(str, sorted(allowed[proto])))}" for proto in ("tcp", "udp")
             if allowed[proto]]
    return " and ".join(parts + (["ICMP"] if allowed["icmp"] else [])) or "nothing"


def check_instances(instances: list[dict], route_tables: list[dict], groups: dict[str, dict],
                    alb_group_ids: set[str], vpc_cidrs: dict[str, list[str]]) -> list[dict]:
    out = []
    for inst in instances:
        iid = inst["instance_id"]
        role = tags_dict(inst).get("Role")
        public_ip = inst.get("public_ip_address")
        if public_ip and inst.get("subnet_id") and not subnet_is_public(inst["subnet_id"], inst.get("vpc_id"),
                                                                        route_tables):
            out.append(violation(
                "private_instance_public_ip", inst, iid,
                f"instance {label(inst)} is in a private subnet ({inst['subnet_id']}) but has public IP {public_ip}",
                "Private hosts must have no public address: release/disassociate it (launch with "
                "AssociatePublicIpAddress=false and turn off the subnet's map_public_ip_on_launch)."))
        metadata = inst.get("metadata_options") or {}
        if metadata.get("http_endpoint", "enabled") != "disabled" and metadata.get("http_tokens") != "required":
            out.append(violation(
                "imdsv1_allowed", inst, iid,
                f"instance {label(inst)} allows IMDSv1 (http_tokens={metadata.get('http_tokens', 'unset')}): "
                f"a server-side request forgery can read its credentials",
                f"Require tokens (aws ec2 modify-instance-metadata-options --instance-id {iid} "
                f"--http-tokens required --http-endpoint enabled; amazon.aws.ec2_instance: "
                f"metadata_options.http_tokens=required)."))
        inst_groups = groups_of(inst, groups)
        if role == "nat":
            out += _check_nat(inst, inst_groups, vpc_cidrs.get(inst.get("vpc_id"), []))
        if role == "web":
            out += _check_web(inst, inst_groups, alb_group_ids)
    return out


def _check_nat(inst: dict, inst_groups: list[dict], vpc_cidrs: list[str]) -> list[dict]:
    out = []
    iid = inst["instance_id"]
    if inst.get("source_dest_check", True):
        out.append(violation(
            "nat_source_dest_check", inst, iid,
            f"NAT instance {label(inst)} has its source/destination check on: AWS drops the packets it forwards, "
            f"so the private subnets behind it have no egress",
            f"Disable it (aws ec2 modify-instance-attribute --instance-id {iid} --no-source-dest-check)."))
    vpc_nets = [ipaddress.ip_network(c) for c in vpc_cidrs]
    for group in inst_groups:
        for rule in group.get("ip_permissions") or []:
            if not admits_tcp_port(rule, 22):
                continue
            sg_rule = normalize_sg_rule(rule)
            outside = [c for c in sg_rule.cidrs_v4 + sg_rule.cidrs_v6 if not in_networks(c, vpc_nets)]
            for cidr in outside:
                out.append(violation(
                    "nat_ssh_from_outside", inst, iid,
                    f"NAT instance {label(inst)} accepts SSH from {cidr} (outside the VPC) through security group "
                    f"{label(group)}",
                    f"Allow SSH to the NAT instance only from the bastion's security group; remove the {cidr} "
                    f"rule from {group['group_id']}."))
    return out


def _check_web(inst: dict, inst_groups: list[dict], alb_group_ids: set[str]) -> list[dict]:
    out = []
    iid = inst["instance_id"]
    for group in inst_groups:
        for rule in group.get("ip_permissions") or []:
            if not admits_tcp_port(rule, 80):
                continue
            sg_rule = normalize_sg_rule(rule)
            sources = sg_rule.cidrs_v4 + sg_rule.cidrs_v6 + sg_rule.prefix_list_ids
            sources += tuple(g for g in sg_rule.group_ids if g not in alb_group_ids)
            for source in sources:
                out.append(violation(
                    "web_http_not_only_alb", inst, iid,
                    f"web server {label(inst)} accepts port 80 from {source} ({ports_text(rule)} in security "
                    f"group {label(group)}), not only from the ALB",
                    f"Admit HTTP only from the ALB's security group; remove the {source} rule from "
                    f"{group['group_id']}."))
    return out


def known_host_ids(known_hosts: dict | None) -> tuple[set[str], str]:
    """(instance ids with a pinned key, why the others are not pinned) from {path, text} (text None: no file)."""
    if not known_hosts:
        return set(), "no known_hosts file was given to the audit"
    path = shown_text(known_hosts.get("path") or "?")
    if known_hosts.get("text") is None:
        return set(), f"{path} does not exist"
    try:
        return set(parse_known_hosts(known_hosts["text"])), f"there is no line for it in {path}"
    except HostKeyError as exc:
        return set(), f"{path} cannot be used ({shown_text(exc)})"


def check_host_keys(instances: list[dict], known_hosts: dict | None) -> list[dict]:
    pinned, why = known_host_ids(known_hosts)
    out = []
    for inst in instances:
        if inst["instance_id"] in pinned:
            continue
        out.append(violation(
            "no_pinned_host_key", inst, inst["instance_id"],
            f"instance {label(inst)} has no pinned SSH host key ({why}): a connection to it cannot tell the "
            f"instance from a man in the middle",
            "Pin its host key from its EC2 console output (playbooks/host_keys.yml; provisioning does it for the "
            "instances it launches), never by accepting whatever key answers first."))
    return out


def attached_instance_ids(volume: dict) -> list[str]:
    """The instances a volume is attached to (ec2_vol_info's attachment_set or boto3's attachments)."""
    return [a.get("instance_id") for a in volume.get("attachment_set") or volume.get("attachments") or []]


def check_volumes(volumes: list[dict], instances: list[dict]) -> list[dict]:
    out = []
    names = {i["instance_id"]: i for i in instances}
    for volume in volumes:
        if volume.get("encrypted"):
            continue
        vid = volume.get("id") or volume.get("volume_id")
        attached = attached_instance_ids(volume)
        where = ", ".join(label(names.get(a), a) for a in attached if a) or "no instance"
        out.append(violation(
            "unencrypted_volume", volume, vid,
            f"EBS volume {label(volume, vid)} (attached to {where}) is not encrypted",
            "Encrypt it: snapshot it, copy the snapshot with --encrypted, create a volume from the copy and swap "
            "it in; turn on EBS encryption by default (aws ec2 enable-ebs-encryption-by-default)."))
    return out
