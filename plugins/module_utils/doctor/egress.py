"""The doctor's egress path: from the target out to the internet, through its default route's NAT."""

from __future__ import annotations

from ansible_collections.fumidai.vpc.plugins.module_utils.doctor.hops import PASS, Walk, merge_hops
from ansible_collections.fumidai.vpc.plugins.module_utils.doctor.naming import groups_text, role_label
from ansible_collections.fumidai.vpc.plugins.module_utils.doctor.state import (
    AWS_EPHEMERAL,
    CLIENT_EPHEMERAL,
    INTERNET,
    State,
)
from ansible_collections.fumidai.vpc.plugins.module_utils.vpc_model import (
    default_route,
    instance_profile_name,
    is_nat_standby,
    label,
    nat_standby_problems,
    probe_routes_to,
    route_target,
)
from ansible_collections.fumidai.vpc.plugins.module_utils.vpc_rules import sg_allows

DEFAULT_EGRESS_PORTS = (80, 443)
HOPS_AFTER_ROUTE = ["NAT", "internet gateway", "target outbound rules", "network ACLs"]


def walk(state: State, target: dict, arguments: dict) -> Walk:
    """The registry's entry point: egress_ports are the TCP ports that must get out."""
    ports = arguments.get("egress_ports") or DEFAULT_EGRESS_PORTS
    return walk_egress(state, target, tuple(int(p) for p in ports))


def walk_egress(state: State, target: dict, ports=DEFAULT_EGRESS_PORTS) -> Walk:
    walk = Walk(state, "egress", target)
    walk.instance_running("target instance", target, "target")
    route = _default_route(walk, target)
    if route is None:
        return walk
    nat_subnet, nat_net, ephemeral = _nat(walk, target, route_target(route), ports)
    _nat_standby(walk, target, route_target(route))
    walk.internet_gateway(target.get("vpc_id"), _route_to_the_gateway(state, route, nat_subnet))
    groups = state.instance_groups(target)
    before = len(walk.hops)
    for port in ports:
        walk.sg_out("target outbound rules", groups, port, INTERNET, (), "0.0.0.0/0", f"{role_label('target', target)}")
    merge_hops(walk, before, "target outbound rules",
               f"{groups_text(groups)} allows TCP {', '.join(map(str, ports))} out to the internet")
    _network_acls(walk, target, nat_subnet, nat_net, ephemeral, ports)
    return walk


def _default_route(walk: Walk, target: dict) -> dict | None:
    """The target subnet's 0.0.0.0/0 route, live; None (and the rest skipped) when there is none."""
    state = walk.state
    subnet_id = target["subnet_id"]
    subnet = state.subnet_label(subnet_id)
    table = state.route_table(subnet_id)
    table_text = state.route_table_text(table, "none")
    route = default_route(table)
    hop_target = route_target(route)
    if not route or not hop_target:
        walk.blocked("default route", f"{subnet}'s route table {table_text} has no 0.0.0.0/0 route: "
                                      f"traffic to the internet has nowhere to go",
                     f"Add 0.0.0.0/0 -> a NAT gateway (or NAT instance) in a public subnet to {table_text}.")
        walk.skip(HOPS_AFTER_ROUTE, "there is no default route")
        return None
    blackhole = route.get("state") == "blackhole"
    if blackhole and not walk.target_still_there(target.get("vpc_id"), hop_target):
        walk.blocked("default route", f"{subnet}'s route table {table_text} sends 0.0.0.0/0 to {hop_target[1]}, "
                                      f"which no longer exists (blackhole)",
                     f"Replace the route in {table_text} with 0.0.0.0/0 -> a working NAT gateway or NAT instance.")
        walk.skip(HOPS_AFTER_ROUTE, "the default route is a blackhole")
        return None
    kind, hop_id = hop_target
    # A blackhole whose target is only stopped or detached: the NAT or gateway hop names the fix.
    why = " (a blackhole until it runs again)" if kind != "internet_gateway" else \
        " (a blackhole while the gateway is not attached)"
    walk.passed("default route", f"{subnet}'s route table {table_text} sends 0.0.0.0/0 to "
                                 f"{_route_target_label(state, kind, hop_id)}{why if blackhole else ''}")
    return route


def _route_to_the_gateway(state: State, route: dict, nat_subnet: str | None) -> dict | None:
    """The route that takes the traffic on to an internet gateway: the target subnet's own, else the NAT's
    subnet's (None when neither does: the gateway hop then checks that the VPC has one attached)."""
    for candidate in (route, default_route(state.route_table(nat_subnet)) if nat_subnet else None):
        found = route_target(candidate)
        if found and found[0] == "internet_gateway":
            return candidate
    return None


def _nat(walk: Walk, target: dict, hop_target: tuple[str, str], ports) -> tuple[str | None, object, tuple]:
    """The hop the default route leads to. Returns (the NAT's subnet, the NAT instance's address, the
    ephemeral ports its replies come back to)."""
    state = walk.state
    kind, hop_id = hop_target
    subnet_id = target["subnet_id"]
    subnet = state.subnet_label(subnet_id)
    if kind == "internet_gateway":
        if target.get("public_ip_address"):
            walk.passed("NAT", f"{subnet} is public and {label(target)} has public IP "
                               f"{target['public_ip_address']}: no NAT needed")
        else:
            walk.blocked("NAT", f"{subnet} routes straight to the internet gateway, but {label(target)} has no "
                                f"public IP, so its packets cannot come back",
                         f"Give it a public IP (Elastic IP), or route {subnet} through a NAT gateway instead.")
    elif kind == "nat_gateway":
        return _nat_gateway(walk, subnet, hop_id)
    elif kind in ("instance", "network_interface"):
        nat = state.instance_by_id(hop_id) if kind == "instance" else state.instance_by_eni(hop_id)
        if not nat:
            walk.blocked("NAT", f"{subnet}'s route table sends 0.0.0.0/0 to {hop_id}, which is no running instance",
                         "Point the route at the NAT instance (or a NAT gateway).")
        else:
            _nat_instance_hops(walk, state, nat, subnet, subnet_id, target, ports)
            return nat.get("subnet_id"), state.instance_net(nat), CLIENT_EPHEMERAL
    else:
        walk.blocked("NAT", f"{subnet}'s route table sends 0.0.0.0/0 to {hop_id}, which the doctor cannot follow",
                     "Check that target by hand (transit gateway, peering or VPN).")
    return None, None, CLIENT_EPHEMERAL


def _nat_standby(walk: Walk, target: dict, hop_target: tuple[str, str]) -> None:
    """With a standby NAT instance in the VPC (tagged NatStandby=true) and the route on a NAT instance: which one
    is active (the route's target; the standby is a valid one after a failover) and whether the standby could take
    over. Informational: egress itself was judged by the NAT hop."""
    state = walk.state
    kind, hop_id = hop_target
    active = state.instance_by_id(hop_id) if kind == "instance" else \
        state.instance_by_eni(hop_id) if kind == "network_interface" else None
    standbys = [i for i in state.instances if i.get("vpc_id") == target.get("vpc_id") and is_nat_standby(i)]
    if active is None or not standbys:
        return
    for standby in standbys:
        who = role_label("nat-instance-standby", standby)
        if standby is active:
            walk.passed("standby NAT instance", f"{who} is the active NAT instance: its watchdog moved the route "
                                                f"to it. Fail back deliberately (playbooks/nat_failback.yml) once "
                                                f"the NAT instance forwards again")
            continue
        problems = nat_standby_problems(standby)
        table = state.route_table(standby["subnet_id"])
        probes = probe_routes_to(table, active)
        if problems:
            walk.hop("standby NAT instance", PASS, f"{role_label('nat-instance', active)} is active; {who} could "
                                                   f"not take over: {'; '.join(problems)}",
                     "Start the standby, provision again with nat_instance_standby: true (source/destination check "
                     "off, instance profile), then run playbooks/configure.yml (its watchdog).")
        elif not probes:
            # On AWS the watchdog's probe reaches the active NAT instance only by its subnet's route table.
            walk.hop("standby NAT instance", PASS, f"the standby cannot probe the active NAT instance: {who}'s "
                                                   f"subnet's route table {state.route_table_text(table, 'none')} "
                                                   f"sends no /32 (the watchdog's probe address) to "
                                                   f"{role_label('nat-instance', active)}, so its watchdog cannot "
                                                   f"tell whether the active one forwards",
                     "Provision again with nat_instance_standby: true: the standby's subnet gets its own route table "
                     "with nat_instance_watchdog_probe_address/32 -> the NAT instance (docs/nat_failover.md).")
        else:
            walk.passed("standby NAT instance", f"{role_label('nat-instance', active)} is active; {who} is ready to "
                                                f"take over: running, source/destination check off, public IP "
                                                f"{standby['public_ip_address']}, instance profile "
                                                f"{instance_profile_name(standby)}, probing the active one through "
                                                f"{state.route_table_text(table, 'none')}'s route "
                                                f"{', '.join(probes)}")


def _nat_gateway(walk: Walk, subnet: str, nat_id: str) -> tuple[str | None, object, tuple]:
    state = walk.state
    nat = state.nat_gateways.get(nat_id)
    if not nat:
        walk.blocked("NAT", f"{subnet}'s route table sends 0.0.0.0/0 to NAT gateway {nat_id}, which does not "
                            f"exist", "Point the route at an existing NAT gateway in a public subnet.")
        return None, None, CLIENT_EPHEMERAL
    nat_subnet = nat.get("subnet_id")
    problems = []
    if nat.get("state") != "available":
        problems.append(f"it is {nat.get('state')}")
    if nat.get("connectivity_type", "public") != "public":
        problems.append("it is a private NAT gateway (no internet access)")
    if nat_subnet and not state.is_public(nat_subnet):
        problems.append(f"its subnet {state.subnet_label(nat_subnet)} does not route 0.0.0.0/0 to an "
                        f"internet gateway")
    if problems:
        walk.blocked("NAT", f"{subnet}'s route table sends 0.0.0.0/0 to NAT gateway {label(nat)}, but "
                            + "; ".join(problems),
                     "Use an available public NAT gateway placed in a public subnet (route 0.0.0.0/0 -> IGW).")
    else:
        walk.passed("NAT", f"NAT gateway {label(nat)} is available in public subnet "
                           f"{state.subnet_label(nat_subnet)}")
    return nat_subnet, None, AWS_EPHEMERAL


def _nat_instance_hops(walk: Walk, state: State, nat: dict, subnet: str, subnet_id: str, target: dict,
                       ports) -> None:
    nat_text = role_label("nat-instance", nat)
    lead = f"{subnet}'s route table sends 0.0.0.0/0 to {nat_text}"
    state_name = (nat.get("state") or {}).get("name")
    problems, fixes = [], []
    if state_name != "running":
        problems.append(f"it is {state_name}")
        fixes.append(f"Start it (aws ec2 start-instances --instance-ids {nat['instance_id']}).")
    if nat.get("source_dest_check", True):
        problems.append("its source/destination check is on: AWS drops forwarded packets")
        fixes.append(f"Disable it (EC2 console: Actions > Networking > Change source/destination check, or "
                     f"aws ec2 modify-instance-attribute --instance-id {nat['instance_id']} --no-source-dest-check).")
    if not state.is_public(nat.get("subnet_id")):
        problems.append(f"its subnet {state.subnet_label(nat.get('subnet_id'))} does not route 0.0.0.0/0 to an "
                        f"internet gateway")
        fixes.append("Move the NAT instance to a public subnet.")
    if not nat.get("public_ip_address"):
        problems.append("it has no public IP")
        fixes.append(f"Associate an Elastic IP with {nat['instance_id']}.")
    if problems:
        walk.blocked("NAT", f"{lead}, but " + "; ".join(problems), " ".join(fixes))
    else:
        walk.passed("NAT", f"{lead}: running, source/destination check off, public IP {nat['public_ip_address']} "
                           f"in a public subnet")
    target_sg_ids = {g["group_id"] for g in state.instance_groups(target)}
    subnet_net = state.subnet_net(subnet_id)
    nat_groups = state.instance_groups(nat)
    before = len(walk.hops)
    for port in ports:
        how = sg_allows(nat_groups, port, subnet_net, ()) or \
            sg_allows(nat_groups, port, state.instance_net(target), target_sg_ids, names=state.groups)
        if how:
            walk.passed("NAT instance security group", how)
        else:
            walk.sg_in("NAT instance security group", nat_groups, port, subnet_net, (), f"{subnet} ({subnet_net})",
                       nat_text)
        walk.sg_out("NAT instance security group", nat_groups, port, INTERNET, (), "0.0.0.0/0", nat_text)
    merge_hops(walk, before, "NAT instance security group",
               f"{groups_text(nat_groups)} lets {subnet} in and out to the internet")


def _network_acls(walk: Walk, target: dict, nat_subnet: str | None, nat_net, ephemeral, ports) -> None:
    """The NACLs on the way out, the NAT's subnet included, and the replies."""
    state = walk.state
    subnet_id = target["subnet_id"]
    target_net = state.instance_net(target)
    before = len(walk.hops)
    for port in ports:
        if nat_subnet and nat_subnet != subnet_id:
            # Target subnet out to the internet; the NAT's subnet lets the target's packets in...
            walk.nacl_flow("network ACLs", subnet_id, target_net, nat_subnet, INTERNET, port, CLIENT_EPHEMERAL)
            # ...and sends them on to the internet, replies coming back to the NAT's ephemeral ports.
            walk.nacl_flow("network ACLs", nat_subnet, nat_net or state.subnet_net(nat_subnet), None, INTERNET,
                           port, ephemeral)
        else:
            walk.nacl_flow("network ACLs", subnet_id, target_net, None, INTERNET, port, ephemeral)
    merge_hops(walk, before, "network ACLs", "network ACLs on the way out allow it, and the replies")


def _route_target_label(state: State, kind: str, target_id: str) -> str:
    resource = {"instance": state.instance_by_id, "network_interface": state.instance_by_eni,
                "nat_gateway": state.nat_gateways.get, "internet_gateway": state.igws.get}.get(kind, lambda _i: None)
    found = resource(target_id)
    text = label(found, target_id) if found else target_id
    return f"{text} via {target_id}" if kind == "network_interface" and found else text
