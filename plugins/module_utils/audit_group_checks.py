"""The audit's checks of security groups: exposure to the internet, the bastion's SSH sources and egress,
the NAT instance's groups (wider than the private hosts routed through it need)."""

from __future__ import annotations

import ipaddress

from ansible_collections.fumidai.vpc.plugins.module_utils.audit_checks import (
    WORLD,
    admits_tcp_port,
    allowed_text,
    groups_of,
    in_networks,
    ports_text,
    revoke_command,
    rule_peers,
    tcp_within,
    violation,
    within,
    world_sources,
)
from ansible_collections.fumidai.vpc.plugins.module_utils.doctor.naming import role_label
from ansible_collections.fumidai.vpc.plugins.module_utils.fumidai_access import (
    PREFIX_LIMIT,
    breadth_problems,
    forward_sets,
)
from ansible_collections.fumidai.vpc.plugins.module_utils.vpc_model import (
    default_route,
    instance_profile_name,
    is_nat_standby,
    label,
    nat_standby_problems,
    probe_routes_to,
    route_table_for_subnet,
    route_target,
)


def check_security_groups(groups: list[dict], alb_group_ids: set[str],
                          accepted_ssh_group_ids: frozenset = frozenset()) -> list[dict]:
    """SSH from the world and exposure to the internet. ``accepted_ssh_group_ids``: the bastion's groups
    when allow_ssh_from_anywhere is set (SSH from anywhere there is the design's stated choice)."""
    out = []
    for group in groups:
        for rule in group.get("ip_permissions") or []:
            world = world_sources(rule)
            if not world:
                continue
            for source in world:
                if admits_tcp_port(rule, 22) and group["group_id"] not in accepted_ssh_group_ids:
                    out.append(violation(
                        "ssh_open_to_world", group, group["group_id"],
                        f"security group {label(group)} allows {ports_text(rule)} (SSH included) from {source}: "
                        f"anyone on the internet can try to log in",
                        f"Restrict SSH to your office/VPN ranges (admin_cidrs) and remove the {source} rule "
                        f"({revoke_command(group, rule, source)})."))
                ssh_only = str(rule.get("ip_protocol")) in ("tcp", "6") and rule.get("from_port") == 22 \
                    and rule.get("to_port") == 22
                if group["group_id"] not in alb_group_ids and not ssh_only:
                    out.append(violation(
                        "open_to_internet", group, group["group_id"],
                        f"security group {label(group)} is not a load balancer's, yet allows {ports_text(rule)} "
                        f"from {source}: only the ALB should face the internet",
                        f"Remove the {source} rule and admit that traffic from the ALB's security group "
                        f"(or your admin_cidrs) instead ({revoke_command(group, rule, source)})."))
    return out


def check_admin_ranges(bastions: list[dict], groups: dict[str, dict], allow_anywhere: bool,
                       notes: list[str]) -> list[dict]:
    """The bastion's SSH sources, judged by the same validator as admin_cidrs (fumidai_access). With
    allow_anywhere, what would have been reported is appended to ``notes`` instead."""
    out = []
    for inst in bastions:
        entries, where, holders = [], {}, []
        for group in groups_of(inst, groups):
            for rule in group.get("ip_permissions") or []:
                if not admits_tcp_port(rule, 22):
                    continue
                for cidr in [r.get("cidr_ip") for r in rule.get("ip_ranges") or []] + \
                        [r.get("cidr_ipv6") for r in rule.get("ipv6_ranges") or []]:
                    # The whole internet is ssh_open_to_world's finding; this check is about the rest.
                    if not cidr or cidr in WORLD:
                        continue
                    net = ipaddress.ip_network(cidr, strict=False)
                    entries.append((label(group), net))
                    where.setdefault(str(net), revoke_command(group, rule, cidr))
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
            out.append(violation(
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
        for group in groups_of(inst, groups):
            for rule in group.get("ip_permissions_egress") or []:
                for peer in rule_peers(rule):
                    if tcp_within(rule, update_ports):
                        continue
                    ssh_only = tcp_within(rule, [22])
                    if ssh_only and (in_networks(peer, vpc_nets) or peer in vpc_group_ids):
                        continue
                    out.append(violation(
                        "bastion_egress_open", inst, inst["instance_id"],
                        f"{role_label('bastion', inst)} may open {ports_text(rule)} to {peer} (outbound rule of "
                        f"{label(group)}): it needs only SSH into its VPC "
                        f"({', '.join(str(n) for n in vpc_nets) or '?'}) and TCP {updates} for updates; anything "
                        f"more lets whoever takes the bastion reach the internet or the VPC freely",
                        f"Remove that outbound rule ({revoke_command(group, rule, peer, egress=True)}); fumidai's "
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
        if any(is_nat_standby(n) and n.get("vpc_id") == inst.get("vpc_id") for n in nats):
            # A NAT instance and its standby share one group and take turns: what either is routed is theirs.
            routed = sorted({net for n in nats if n.get("vpc_id") == inst.get("vpc_id")
                             for net in _routed_subnets(n, subnets, route_tables)})
        routed_text = ", ".join(str(n) for n in routed) or "no subnet routes through it"
        need = (f"the private hosts need {allowed_text(forward)} from the subnets routed through it "
                f"({routed_text}), SSH from the bastion's security group, and {allowed_text(sends)} out")
        for group in groups_of(inst, groups):
            for egress in (False, True):
                key = "ip_permissions_egress" if egress else "ip_permissions"
                for rule in group.get(key) or []:
                    for peer in rule_peers(rule):
                        if egress:
                            fine = within(rule, sends)
                        elif within(rule, ssh):
                            fine = peer in bastion_group_ids
                        else:
                            from_routed = in_networks(peer, routed) or peer.startswith("sg-")
                            fine = from_routed and within(rule, forward)
                        if fine:
                            continue
                        way = f"to {peer}" if egress else f"from {peer}"
                        out.append(violation(
                            "nat_sg_too_wide", inst, inst["instance_id"],
                            f"NAT instance {label(inst)}'s security group {label(group)} allows "
                            f"{ports_text(rule)} {way} ({'outbound' if egress else 'inbound'}): wider than "
                            f"needed ({need})",
                            f"Remove that rule ({revoke_command(group, rule, peer, egress=egress)}); fumidai's "
                            f"aws_security_groups role builds it from aws_security_groups_forward_ports "
                            f"(nat_instance_forward_ports)."))
    return out


def nat_standby_notes(nats: list[dict], subnets: list[dict], route_tables: list[dict]) -> list[str]:
    """With a standby NAT instance (NatStandby=true): which NAT instance is active (the routes' target) and
    whether the standby could take over. Notes, not violations: resilience, not a security fault (a standby
    with its source/dest check on is already the nat_source_dest_check violation)."""
    notes = []
    for standby in [n for n in nats if is_nat_standby(n)]:
        peers = [n for n in nats if n.get("vpc_id") == standby.get("vpc_id")]
        active = [n for n in peers if _routed_subnets(n, subnets, route_tables)]
        who = role_label("nat-instance-standby", standby)
        routed = ", ".join(f"{label(n)} for {', '.join(str(c) for c in _routed_subnets(n, subnets, route_tables))}"
                           for n in active) or "none (no subnet routes through either)"
        state = "the active one after a failover (fail back with playbooks/nat_failback.yml)" \
            if standby in active else "standing by"
        problems = nat_standby_problems(standby)
        primaries = [n for n in peers if not is_nat_standby(n)]
        own_table = route_table_for_subnet(standby.get("subnet_id"), standby.get("vpc_id"), route_tables)
        if standby not in active and primaries and not probe_routes_to(own_table, primaries[0]):
            problems.append("it cannot probe the active NAT instance (its subnet's route table sends no /32, the "
                            "watchdog's probe address, to it: provision again)")
        ready = ("could not take over: " + "; ".join(problems)) if problems else \
            f"ready (running, source/destination check off, instance profile {instance_profile_name(standby)})"
        notes.append(f"active NAT instance: {routed}; {who} is {state}, {ready}")
    return notes
