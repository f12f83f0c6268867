"""The security audit's checks: what must never be true in a fumidai VPC.

Pure Python, no AWS calls. ``audit(facts)`` takes the audited VPCs' state as
the amazon.aws ``*_info`` modules return it (vpcs, instances, subnets,
route_tables, security_groups, load_balancers, volumes), the project's
known_hosts file (``known_hosts``: its path and text) and the design's
policy (``policy``: allow_ssh_from_anywhere, update_ports, and forward_ports
in nat_instance_forward_ports's shape), and returns one violation per
problem, each with the resource, the reason and the fix in plain words. Rule matching is fumidai_paths's; "is
this subnet public?" is fumidai_topology's; "is this SSH source too broad?" is
fumidai_access's (the same validator preflight and the bastion role use);
"which instances have a pinned host key?" is fumidai_host_keys's. Every name
read from AWS is printed through fumidai_paths.label (escaped).

Imported as ``ansible_collections.fumidai.vpc.plugins.module_utils.fumidai_checks``.
"""

from __future__ import annotations

import ipaddress

from ansible_collections.fumidai.vpc.plugins.module_utils.fumidai_access import (
    DEFAULT_FORWARD,
    PREFIX_LIMIT,
    breadth_problems,
    forward_sets,
    truthy,
)
from ansible_collections.fumidai.vpc.plugins.module_utils.fumidai_host_keys import HostKeyError, parse_known_hosts
from ansible_collections.fumidai.vpc.plugins.module_utils.fumidai_paths import label, role_label, sg_rule_matches
from ansible_collections.fumidai.vpc.plugins.module_utils.fumidai_text import text as shown_text
from ansible_collections.fumidai.vpc.plugins.module_utils.fumidai_topology import (
    default_route,
    route_table_for_subnet,
    route_target,
    subnet_is_public,
    tags_dict,
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
    if str(rule.get("ip_protocol")).lower() in ("icmp", "1", "icmpv6", "58") and low in (None, -1):
        return f"{str(rule.get('ip_protocol')).upper()} (all types)"
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


def _revoke(group: dict, rule: dict, source: str, egress: bool = False) -> str:
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


def _peers(rule: dict) -> list[str]:
    """Every source (ingress) or destination (egress) of a rule: CIDRs, prefix lists, security groups."""
    peers = [r.get("cidr_ip") for r in rule.get("ip_ranges") or []]
    peers += [r.get("cidr_ipv6") for r in rule.get("ipv6_ranges") or []]
    peers += [p.get("prefix_list_id") for p in rule.get("prefix_list_ids") or []]
    peers += [p.get("group_id") for p in rule.get("user_id_group_pairs") or []]
    return [p for p in peers if p]


def _ports(rule: dict) -> tuple[str, int | None, int | None]:
    """(protocol, low, high) with protocol numbers named; (all, None, None) for every protocol."""
    proto = str(rule.get("ip_protocol")).lower()
    proto = {"6": "tcp", "17": "udp", "1": "icmp", "58": "icmpv6"}.get(proto, proto)
    if proto in ("-1", "all"):
        return "all", None, None
    low, high = rule.get("from_port"), rule.get("to_port")
    if proto == "tcp" and low in (None, -1):
        return "tcp", 0, 65535
    return proto, low, high


def _tcp_within(rule: dict, allowed) -> bool:
    """A TCP rule whose every port is in ``allowed``."""
    return _within(rule, {"tcp": set(allowed), "udp": set(), "icmp": False})


def _in_networks(peer: str, networks: list) -> bool:
    try:
        net = ipaddress.ip_network(peer, strict=False)
    except ValueError:  # a prefix list or a group id
        return False
    return any(net.version == n.version and net.subnet_of(n) for n in networks)


def check_security_groups(groups: list[dict], alb_group_ids: set[str],
                          accepted_ssh_group_ids: frozenset = frozenset()) -> list[dict]:
    """SSH from the world and exposure to the internet. ``accepted_ssh_group_ids``: the bastion's groups
    when allow_ssh_from_anywhere is set (SSH from anywhere there is the design's stated choice)."""
    out = []
    for group in groups:
        for rule in group.get("ip_permissions") or []:
            world = _world_sources(rule)
            if not world:
                continue
            for source in world:
                if _covers_ssh(rule) and group["group_id"] not in accepted_ssh_group_ids:
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


def _groups_of(inst: dict, groups: dict[str, dict]) -> list[dict]:
    return [groups.get(gid, {"group_id": gid}) for gid in _instance_group_ids(inst)]


def check_admin_ranges(bastions: list[dict], groups: dict[str, dict], allow_anywhere: bool,
                       notes: list[str]) -> list[dict]:
    """The bastion's SSH sources, judged by the same validator as admin_cidrs (fumidai_access). With
    allow_anywhere, what would have been reported is appended to ``notes`` instead."""
    out = []
    for inst in bastions:
        entries, where, holders = [], {}, []
        for group in _groups_of(inst, groups):
            for rule in group.get("ip_permissions") or []:
                if not _covers_ssh(rule):
                    continue
                for cidr in [r.get("cidr_ip") for r in rule.get("ip_ranges") or []] + \
                        [r.get("cidr_ipv6") for r in rule.get("ipv6_ranges") or []]:
                    # The whole internet is ssh_open_to_world's finding; this check is about the rest.
                    if not cidr or cidr in WORLD:
                        continue
                    net = ipaddress.ip_network(cidr, strict=False)
                    entries.append((label(group), net))
                    where.setdefault(str(net), _revoke(group, rule, cidr))
                    holders += [label(group)] if label(group) not in holders else []
        problems = breadth_problems(entries, "its SSH sources")
        # The ranges to remove: the ones too broad alone, else (too broad together) all of them.
        alone = [str(net) for _g, net in entries if net.prefixlen < PREFIX_LIMIT[net.version]]
        where = {net: command for net, command in where.items() if net in alone} if alone else where
        if problems and allow_anywhere:
            notes.append(f"allow_ssh_from_anywhere is true: {role_label('bastion', inst)}'s SSH sources broader "
                         f"than the admin limit ({', '.join(str(net) for _g, net in entries)}) are accepted as the "
                         f"design's choice, not reported")
        elif problems:
            out.append(_violation(
                "broad_admin_cidrs", inst, inst["instance_id"],
                f"{role_label('bastion', inst)} admits SSH (security group {', '.join(holders)}) from more of the "
                f"internet than admin ranges may cover: "
                + "; ".join(problems),
                "Narrow admin_cidrs to your office/VPN ranges and re-provision, or remove the broad rules ("
                + "; ".join(where.values()) + ")."))
    return out


def check_bastion_egress(bastions: list[dict], groups: dict[str, dict], vpc_cidrs: dict[str, list[str]],
                         update_ports) -> list[dict]:
    """A bastion needs SSH into its VPC and its update ports out; anything more is a relay for an intruder."""
    out = []
    updates = ", ".join(map(str, update_ports)) or "none"
    for inst in bastions:
        vpc_nets = [ipaddress.ip_network(c) for c in vpc_cidrs.get(inst.get("vpc_id"), []) if c]
        vpc_group_ids = {gid for gid, g in groups.items() if g.get("vpc_id") == inst.get("vpc_id")}
        for group in _groups_of(inst, groups):
            for rule in group.get("ip_permissions_egress") or []:
                for peer in _peers(rule):
                    if _tcp_within(rule, update_ports):
                        continue
                    ssh_only = _tcp_within(rule, [22])
                    if ssh_only and (_in_networks(peer, vpc_nets) or peer in vpc_group_ids):
                        continue
                    out.append(_violation(
                        "bastion_egress_open", inst, inst["instance_id"],
                        f"{role_label('bastion', inst)} may open {_ports_text(rule)} to {peer} (outbound rule of "
                        f"{label(group)}): it needs only SSH into its VPC "
                        f"({', '.join(str(n) for n in vpc_nets) or '?'}) and TCP {updates} for updates; anything "
                        f"more lets whoever takes the bastion reach the internet or the VPC freely",
                        f"Remove that outbound rule ({_revoke(group, rule, peer, egress=True)}); fumidai's "
                        f"aws_security_groups role builds the bastion's egress from the VPC CIDR and "
                        f"aws_security_groups_update_ports."))
    return out


def _routed_subnets(nat: dict, subnets: list[dict], route_tables: list[dict]) -> list:
    """The CIDRs of the subnets whose default route goes to this NAT instance (by id or by its ENI)."""
    enis = {e.get("network_interface_id") for e in nat.get("network_interfaces") or []}
    nets = []
    for subnet in subnets:
        if subnet.get("vpc_id") != nat.get("vpc_id"):
            continue
        target = route_target(default_route(route_table_for_subnet(subnet["subnet_id"], subnet.get("vpc_id"),
                                                                   route_tables)))
        if target and ((target[0] == "instance" and target[1] == nat["instance_id"])
                       or (target[0] == "network_interface" and target[1] in enis)):
            nets.append(ipaddress.ip_network(subnet["cidr_block"]))
    return nets


def _within(rule: dict, allowed: dict) -> bool:
    """A rule that covers nothing beyond ``allowed`` ({"tcp": ports, "udp": ports, "icmp": bool})."""
    proto, low, high = _ports(rule)
    if proto == "icmp":
        return bool(allowed["icmp"])
    if proto not in ("tcp", "udp") or low is None or high is None:
        return False
    return all(port in allowed[proto] for port in range(int(low), int(high) + 1))


def _allowed_text(allowed: dict) -> str:
    parts = [f"{proto.upper()} {', '.join(map(str, sorted(allowed[proto])))}" for proto in ("tcp", "udp")
             if allowed[proto]]
    return " and ".join(parts + (["ICMP"] if allowed["icmp"] else [])) or "nothing"


def check_nat_groups(nats: list[dict], groups: dict[str, dict], subnets: list[dict], route_tables: list[dict],
                     bastion_group_ids: set[str], policy: dict) -> list[dict]:
    """The NAT instance admits the forward list from the subnets routed through it, SSH from the bastion's
    group only, and sends out only what it forwards and its own updates."""
    out = []
    forward = forward_sets(policy["forward_ports"])
    sends = {**forward, "tcp": forward["tcp"] | {int(p) for p in policy["update_ports"]}}
    ssh = {"tcp": {22}, "udp": set(), "icmp": False}
    for inst in nats:
        routed = _routed_subnets(inst, subnets, route_tables)
        routed_text = ", ".join(str(n) for n in routed) or "no subnet routes through it"
        need = (f"the private hosts need {_allowed_text(forward)} from the subnets routed through it "
                f"({routed_text}), SSH from the bastion's security group, and {_allowed_text(sends)} out")
        for group in _groups_of(inst, groups):
            for egress in (False, True):
                key = "ip_permissions_egress" if egress else "ip_permissions"
                for rule in group.get(key) or []:
                    for peer in _peers(rule):
                        if egress:
                            fine = _within(rule, sends)
                        elif _within(rule, ssh):
                            fine = peer in bastion_group_ids
                        else:
                            from_routed = _in_networks(peer, routed) or peer.startswith("sg-")
                            fine = from_routed and _within(rule, forward)
                        if fine:
                            continue
                        way = f"to {peer}" if egress else f"from {peer}"
                        out.append(_violation(
                            "nat_sg_too_wide", inst, inst["instance_id"],
                            f"NAT instance {label(inst)}'s security group {label(group)} allows "
                            f"{_ports_text(rule)} {way} ({'outbound' if egress else 'inbound'}): wider than "
                            f"needed ({need})",
                            f"Remove that rule ({_revoke(group, rule, peer, egress=egress)}); fumidai's "
                            f"aws_security_groups role builds it from aws_security_groups_forward_ports "
                            f"(nat_instance_forward_ports)."))
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
        out.append(_violation(
            "no_pinned_host_key", inst, inst["instance_id"],
            f"instance {label(inst)} has no pinned SSH host key ({why}): a connection to it cannot tell the "
            f"instance from a man in the middle",
            "Pin its host key from its EC2 console output (playbooks/host_keys.yml; provisioning does it for the "
            "instances it launches), never by accepting whatever key answers first."))
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
    subnets = [s for s in facts.get("subnets") or [] if s.get("vpc_id") in vpc_ids]
    route_tables = facts.get("route_tables") or []
    albs = [lb for lb in facts.get("load_balancers") or [] if lb.get("vpc_id") in vpc_ids]
    alb_group_ids = {g for lb in albs for g in lb.get("security_groups") or []}
    instance_ids = {i["instance_id"] for i in instances}
    project = facts.get("project_tag") or {}
    volumes = [v for v in facts.get("volumes") or []
               if any(a.get("instance_id") in instance_ids for a in v.get("attachment_set") or [])
               or (project and tags_dict(v).get(project.get("key")) == project.get("value"))]
    policy = {**DEFAULT_POLICY, **{k: v for k, v in (facts.get("policy") or {}).items() if v is not None}}
    allow_anywhere = truthy(policy["allow_ssh_from_anywhere"])
    bastions = [i for i in instances if tags_dict(i).get("Role") == "bastion"]
    nats = [i for i in instances if tags_dict(i).get("Role") == "nat"]
    bastion_group_ids = {gid for i in bastions for gid in _instance_group_ids(i)}

    notes = []
    accepted = frozenset(bastion_group_ids) if allow_anywhere else frozenset()
    for gid in sorted(accepted):
        if any(_world_sources(r) and _covers_ssh(r) for r in groups.get(gid, {}).get("ip_permissions") or []):
            notes.append(f"allow_ssh_from_anywhere is true: SSH from anywhere to the bastion's security group "
                         f"{label(groups[gid])} is accepted as the design's choice, not reported")
    violations = check_security_groups(list(groups.values()), alb_group_ids, accepted)
    violations += check_admin_ranges(bastions, groups, allow_anywhere, notes)
    violations += check_bastion_egress(bastions, groups, vpc_cidrs, [int(p) for p in policy["update_ports"]])
    violations += check_instances(instances, route_tables, groups, alb_group_ids, vpc_cidrs)
    violations += check_nat_groups(nats, groups, subnets, route_tables, bastion_group_ids, policy)
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
