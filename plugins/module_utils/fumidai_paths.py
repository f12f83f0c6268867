"""The doctor's analysis: walk a network path through a VPC hop by hop.

Pure Python, no AWS calls. The caller passes the VPC's state as the amazon.aws
``*_info`` modules return it (snake_case, tags as dicts): instances, subnets,
route tables, security groups, network ACLs, NAT gateways, internet gateways
and, for the ``http`` path, load balancers (with listeners) and target groups
(with ``targets_health_description``). ``walk(state, path, ...)`` returns one
verdict per hop: PASS, BLOCKED (with the reason and the fix in plain words) or
SKIPPED (an earlier hop it depends on is missing).

The security-group and network-ACL evaluation here is also what the audit
(fumidai_checks) uses, so "does this rule let that traffic in?" is decided once.

Imported as ``ansible_collections.fumidai.vpc.plugins.module_utils.fumidai_paths``.
"""

from __future__ import annotations

import ipaddress
import re

from ansible_collections.fumidai.vpc.plugins.module_utils.fumidai_text import name as shown_name
from ansible_collections.fumidai.vpc.plugins.module_utils.fumidai_text import text as shown_text
from ansible_collections.fumidai.vpc.plugins.module_utils.fumidai_topology import (
    default_route,
    route_table_for_subnet,
    route_target,
    tags_dict,
)

PASS = "PASS"
BLOCKED = "BLOCKED"
SKIPPED = "SKIPPED"
PATHS = ("ssh", "http", "egress")

INTERNET = ipaddress.ip_network("0.0.0.0/0")
# Replies go to the client's ephemeral port. Linux uses 32768-60999, Windows
# and macOS 49152-65535; ALBs and NAT gateways use 1024-65535 (AWS docs).
CLIENT_EPHEMERAL = (32768, 65535)
AWS_EPHEMERAL = (1024, 65535)
DEFAULT_EGRESS_PORTS = (80, 443)
INSTANCE_ID = re.compile(r"^i-[0-9a-f]{8,17}$")


class DoctorError(Exception):
    """Input the doctor cannot work with (unknown target, ambiguous name...)."""


# --------------------------------------------------------------------------
# Naming: every message names resources as "Name (id)". Names are tag values,
# untrusted: they go through fumidai_text.name (bare when plain, else quoted and
# escaped), so no tag can forge a report line, repaint the terminal or be templated.

def label(resource: dict | None, resource_id: str | None = None) -> str:
    if resource is None:
        return shown_name(resource_id or "?")
    rid = resource_id or resource_id_of(resource)
    name = tags_dict(resource).get("Name")
    return f"{shown_name(name)} ({shown_name(rid)})" if name and name != rid else shown_name(rid)


def resource_id_of(resource: dict) -> str:
    # Most specific first: an instance or a NAT gateway also carries subnet_id and vpc_id.
    for key in ("instance_id", "nat_gateway_id", "internet_gateway_id", "nacl_id", "network_acl_id", "group_id",
                "route_table_id", "load_balancer_name", "target_group_name", "subnet_id", "vpc_id"):
        if resource.get(key):
            return resource[key]
    return resource.get("id", "?")


def role_label(role: str, resource: dict) -> str:
    """'bastion (i-1)' for an instance named after its role, else 'bastion jump-1 (i-1)'."""
    text = label(resource)
    return text if text.split(" ")[0] == role else f"{role} {text}"


def port_text(ports: tuple[int, int]) -> str:
    return str(ports[0]) if ports[0] == ports[1] else f"{ports[0]}-{ports[1]}"


def net_text(net) -> str:
    return "the internet (0.0.0.0/0)" if net.prefixlen == 0 else str(net)


# --------------------------------------------------------------------------
# Security groups (stateful: only the direction that opens the connection).

def _protocol_matches(protocol, wanted: str = "tcp") -> bool:
    proto = str(protocol).lower()
    numbers = {"tcp": "6", "udp": "17", "icmp": "1"}
    return proto in ("-1", "all") or proto == wanted or proto == numbers.get(wanted)


def _rule_ports(rule: dict) -> tuple[int, int]:
    if str(rule.get("ip_protocol")) in ("-1", "all") or rule.get("from_port") in (None, -1):
        return 0, 65535
    return int(rule["from_port"]), int(rule.get("to_port", rule["from_port"]))


def sg_rule_matches(rule: dict, port: int, peer_net, peer_sg_ids=()) -> str | None:
    """How a rule admits ``port`` from (or to) peer_net / a peer SG, or None."""
    if not _protocol_matches(rule.get("ip_protocol")):
        return None
    low, high = _rule_ports(rule)
    if not low <= port <= high:
        return None
    for pair in rule.get("user_id_group_pairs") or []:
        if pair.get("group_id") in peer_sg_ids:
            return f"group {pair['group_id']}"
    if peer_net is not None:
        ranges = [r.get("cidr_ip") for r in rule.get("ip_ranges") or []] if peer_net.version == 4 else \
            [r.get("cidr_ipv6") for r in rule.get("ipv6_ranges") or []]
        for cidr in ranges:
            if cidr and peer_net.subnet_of(ipaddress.ip_network(cidr, strict=False)):
                return cidr
    return None


def sg_allows(groups: list[dict], port: int, peer_net=None, peer_sg_ids=(), egress: bool = False,
              names: dict | None = None) -> str | None:
    """How ``groups`` admit tcp/port from (egress: to) the peer, in words; None when they don't."""
    key = "ip_permissions_egress" if egress else "ip_permissions"
    for group in groups:
        for rule in group.get(key) or []:
            how = sg_rule_matches(rule, port, peer_net, peer_sg_ids)
            if how:
                if how.startswith("group "):
                    gid = how.split(" ", 1)[1]
                    how = f"security group {label((names or {}).get(gid), gid)}"
                return f"{label(group)} allows TCP {port} {'to' if egress else 'from'} {how}"
    return None


# --------------------------------------------------------------------------
# Network ACLs (stateless: both directions, lowest rule number wins).

def nacl_entries(nacl: dict, egress: bool) -> list[dict]:
    """Entries of one direction as dicts, from ec2_vpc_nacl_info's lists or boto3-style dicts."""
    out = []
    if "entries" in nacl:  # boto3 shape through camel_dict_to_snake_dict
        for entry in nacl["entries"]:
            if bool(entry.get("egress")) != egress:
                continue
            ports = entry.get("port_range") or {}
            out.append({"rule": int(entry["rule_number"]), "protocol": str(entry.get("protocol")),
                        "action": entry.get("rule_action"),
                        "cidr": entry.get("cidr_block") or entry.get("ipv6_cidr_block"),
                        "ports": (int(ports.get("from", 0)), int(ports.get("to", 65535))) if ports else (0, 65535)})
    else:  # [rule no, protocol, action, cidr, icmp type, icmp code, port from, port to]
        for entry in nacl.get("egress" if egress else "ingress") or []:
            low = entry[6] if len(entry) > 6 and entry[6] is not None else 0
            high = entry[7] if len(entry) > 7 and entry[7] is not None else 65535
            out.append({"rule": int(entry[0]), "protocol": str(entry[1]), "action": entry[2], "cidr": entry[3],
                        "ports": (int(low), int(high))})
    return sorted(out, key=lambda e: e["rule"])


def nacl_verdict(nacl: dict, egress: bool, ports: tuple[int, int], peer_net) -> tuple[bool, dict | None]:
    """Does the NACL let tcp ``ports`` out to / in from ``peer_net``? (allowed, deciding deny rule).

    Rules are read in number order; allows that cover the peer whittle the
    port range down. A deny that overlaps the remaining ports blocks, except
    a deny for part of "the internet" (it blocks some addresses, not the path).
    """
    remaining = [ports]
    for entry in nacl_entries(nacl, egress):
        if not entry["cidr"] or not _protocol_matches(entry["protocol"]):
            continue
        net = ipaddress.ip_network(entry["cidr"], strict=False)
        if net.version != peer_net.version or not net.overlaps(peer_net):
            continue
        covers_peer = peer_net.subnet_of(net)
        low, high = entry["ports"]
        overlap = [(max(a, low), min(b, high)) for a, b in remaining if max(a, low) <= min(b, high)]
        if not overlap:
            continue
        if entry["action"] == "deny":
            if covers_peer or peer_net.prefixlen > 0:
                return False, entry
            continue
        if not covers_peer:
            continue
        left = []
        for a, b in remaining:
            if b < low or a > high:
                left.append((a, b))
                continue
            if a < low:
                left.append((a, low - 1))
            if b > high:
                left.append((high + 1, b))
        remaining = left
        if not remaining:
            return True, entry
    return False, None


# --------------------------------------------------------------------------
# The VPC's state, indexed.

class State:
    def __init__(self, facts: dict):
        self.instances = [i for i in facts.get("instances") or []
                          if (i.get("state") or {}).get("name") not in ("terminated", "shutting-down")]
        self.subnets = {s["subnet_id"]: s for s in facts.get("subnets") or []}
        self.route_tables = facts.get("route_tables") or []
        self.groups = {g["group_id"]: g for g in facts.get("security_groups") or []}
        self.nacls = facts.get("network_acls") or []
        self.nat_gateways = {n["nat_gateway_id"]: n for n in facts.get("nat_gateways") or []}
        self.igws = {g["internet_gateway_id"]: g for g in facts.get("internet_gateways") or []}
        self.load_balancers = facts.get("load_balancers") or []
        self.target_groups = {t["target_group_arn"]: t for t in facts.get("target_groups") or []}

    # instances -----------------------------------------------------------
    def find_instances(self, spec: str) -> list[dict]:
        if INSTANCE_ID.match(spec):
            return [i for i in self.instances if i.get("instance_id") == spec]
        return [i for i in self.instances if tags_dict(i).get("Name") == spec]

    def resolve_instance(self, spec: str, what: str) -> dict:
        matches = self.find_instances(spec)
        if not matches:
            raise DoctorError(f"no {what} instance named or with id '{shown_text(spec)}' "
                              f"(terminated instances are ignored)")
        if len(matches) > 1:
            ids = ", ".join(i["instance_id"] for i in matches)
            raise DoctorError(f"{len(matches)} instances are named '{shown_text(spec)}' ({ids}): "
                              f"give the instance id instead")
        return matches[0]

    def instance_by_id(self, instance_id: str) -> dict | None:
        return next((i for i in self.instances if i.get("instance_id") == instance_id), None)

    def instance_by_eni(self, eni_id: str) -> dict | None:
        for inst in self.instances:
            for eni in inst.get("network_interfaces") or []:
                if eni.get("network_interface_id") == eni_id:
                    return inst
        return None

    def instance_groups(self, inst: dict) -> list[dict]:
        ids = [g["group_id"] for g in inst.get("security_groups") or []]
        for eni in inst.get("network_interfaces") or []:
            ids += [g["group_id"] for g in eni.get("groups") or []]
        return [self.groups.get(gid, {"group_id": gid}) for gid in dict.fromkeys(ids)]

    def instance_net(self, inst: dict):
        return ipaddress.ip_network(f"{inst.get('private_ip_address')}/32")

    # network -------------------------------------------------------------
    def subnet_label(self, subnet_id: str) -> str:
        return label(self.subnets.get(subnet_id), subnet_id)

    def subnet_net(self, subnet_id: str):
        return ipaddress.ip_network(self.subnets[subnet_id]["cidr_block"])

    def route_table(self, subnet_id: str) -> dict | None:
        vpc_id = (self.subnets.get(subnet_id) or {}).get("vpc_id")
        return route_table_for_subnet(subnet_id, vpc_id, self.route_tables)

    def attached_igw(self, vpc_id: str) -> dict | None:
        for igw in self.igws.values():
            for att in igw.get("attachments") or []:
                if att.get("vpc_id") == vpc_id and att.get("state") in ("available", "attached"):
                    return igw
        return None

    def nacl_for_subnet(self, subnet_id: str) -> dict | None:
        vpc_id = (self.subnets.get(subnet_id) or {}).get("vpc_id")
        default = None
        for nacl in self.nacls:
            if subnet_id in (nacl.get("subnets") or []):
                return nacl
            for assoc in nacl.get("associations") or []:
                if assoc.get("subnet_id") == subnet_id:
                    return nacl
            if nacl.get("vpc_id") == vpc_id and nacl.get("is_default"):
                default = nacl
        return default


# --------------------------------------------------------------------------
# Hops.

class Walk:
    """Collects hop verdicts for one path."""

    def __init__(self, state: State, path: str, target: dict):
        self.state = state
        self.path = path
        self.target = target
        self.hops: list[dict] = []

    def hop(self, name: str, status: str, detail: str, fix: str = "") -> bool:
        self.hops.append({"hop": name, "status": status, "detail": detail, "fix": fix})
        return status == PASS

    def passed(self, name: str, detail: str) -> bool:
        return self.hop(name, PASS, detail)

    def blocked(self, name: str, detail: str, fix: str) -> bool:
        return self.hop(name, BLOCKED, detail, fix)

    def skip(self, names: list[str], because: str) -> None:
        for name in names:
            self.hop(name, SKIPPED, f"not checked: {because}")

    # shared checks -------------------------------------------------------
    def instance_running(self, name: str, inst: dict, role: str) -> bool:
        state = (inst.get("state") or {}).get("name", "unknown")
        if state == "running":
            return self.passed(name, f"{role_label(role, inst)} is running")
        return self.blocked(name, f"{role_label(role, inst)} is {state}",
                            f"Start it (EC2 console: Instance state > Start, or "
                            f"aws ec2 start-instances --instance-ids {inst['instance_id']}).")

    def internet_gateway(self, vpc_id: str, via_route: dict | None = None) -> bool:
        """The VPC has an attached IGW, and the route (if given) points at it."""
        name = "internet gateway"
        igw = self.state.attached_igw(vpc_id)
        target = route_target(via_route) if via_route else None
        if igw and (not target or target[1] == igw["internet_gateway_id"]):
            return self.passed(name, f"{label(igw)} is attached to {vpc_id}")
        if target and target[0] == "internet_gateway":
            routed = self.state.igws.get(target[1])
            if igw:
                return self.blocked(name, f"the route sends 0.0.0.0/0 to {label(routed, target[1])}, "
                                          f"but the gateway attached to {vpc_id} is {label(igw)}",
                                    f"Point the route at {igw['internet_gateway_id']}.")
            return self.blocked(name, f"{label(routed, target[1])} is not attached to {vpc_id}: "
                                      f"routes to it go nowhere (blackhole)",
                                f"Attach it (VPC console: Internet gateways > Actions > Attach to VPC, or "
                                f"aws ec2 attach-internet-gateway --internet-gateway-id {target[1]} "
                                f"--vpc-id {vpc_id}).")
        return self.blocked(name, f"no internet gateway is attached to {vpc_id}",
                            f"Create one and attach it to {vpc_id}, then route 0.0.0.0/0 of the public "
                            f"subnets to it.")

    def public_subnet(self, name: str, subnet_id: str, who: str) -> tuple[bool, dict | None]:
        """The subnet's route table sends 0.0.0.0/0 to an internet gateway."""
        table = self.state.route_table(subnet_id)
        route = default_route(table)
        target = route_target(route)
        subnet = self.state.subnet_label(subnet_id)
        table_text = label(table, (table or {}).get("route_table_id") or (table or {}).get("id")) if table else "?"
        if route and route.get("state") == "blackhole":
            return self.blocked(name, f"{subnet}'s route table {table_text} has a blackhole 0.0.0.0/0 route "
                                      f"(its target {target[1] if target else '?'} is gone)",
                                "Replace the route with 0.0.0.0/0 -> the VPC's internet gateway."), route
        if target and target[0] == "internet_gateway":
            return self.passed(name, f"{who} is in public subnet {subnet}: {table_text} sends "
                                     f"0.0.0.0/0 to {target[1]}"), route
        where = f"sends 0.0.0.0/0 to {target[1]}" if target else "has no 0.0.0.0/0 route"
        return self.blocked(name, f"{who} is in {subnet}, which is not public: its route table {table_text} {where}",
                            f"Add the route 0.0.0.0/0 -> the VPC's internet gateway to {table_text}, or move "
                            f"the {who.split()[0]} to a public subnet."), route

    def sg_in(self, name: str, inst_or_groups, port: int, peer_net, peer_sg_ids, peer_text: str,
              owner_text: str) -> bool:
        groups = inst_or_groups if isinstance(inst_or_groups, list) else self.state.instance_groups(inst_or_groups)
        how = sg_allows(groups, port, peer_net, peer_sg_ids, names=self.state.groups)
        if how:
            return self.passed(name, how)
        names = ", ".join(label(g) for g in groups) or "no security group"
        group_id = groups[0]["group_id"] if groups else "<sg-id>"
        return self.blocked(name, f"{owner_text}'s security group {names} does not allow TCP {port} from {peer_text}",
                            f"Add an inbound rule to {names}: TCP {port} from {peer_text} (e.g. "
                            f"aws ec2 authorize-security-group-ingress --group-id {group_id} --protocol tcp "
                            f"--port {port} {_source_arg(peer_net, peer_sg_ids)}).")

    def sg_out(self, name: str, groups: list[dict], port: int, peer_net, peer_sg_ids, peer_text: str,
               owner_text: str) -> bool:
        how = sg_allows(groups, port, peer_net, peer_sg_ids, egress=True, names=self.state.groups)
        if how:
            return self.passed(name, how)
        names = ", ".join(label(g) for g in groups) or "no security group"
        return self.blocked(name, f"{owner_text}'s security group {names} does not allow TCP {port} out to {peer_text}",
                            f"Add an outbound rule to {names}: TCP {port} to {peer_text} only (fumidai's groups "
                            "allow just what each tier needs out: see aws_security_groups_forward_ports and "
                            "aws_security_groups_update_ports).")

    def nacl_problems(self, subnet_id: str, egress: bool, ports: tuple[int, int], peer_net) -> list[tuple[str, str]]:
        nacl = self.state.nacl_for_subnet(subnet_id)
        if nacl is None:
            return []
        allowed, rule = nacl_verdict(nacl, egress, ports, peer_net)
        if allowed:
            return []
        direction, prep = ("outbound", "to") if egress else ("inbound", "from")
        subnet = self.state.subnet_label(subnet_id)
        nacl_name = label(nacl, nacl.get("nacl_id") or nacl.get("network_acl_id"))
        by = f"rule {rule['rule']} denies it" if rule else "no rule allows it (the final * rule denies)"
        what = f"TCP {port_text(ports)} {direction} {prep} {net_text(peer_net)}"
        before = f" numbered below {rule['rule']}" if rule else ""
        return [(f"network ACL {nacl_name} of {subnet} blocks {what}: {by}",
                 f"Add an {direction} allow rule to {nacl_name}{before}: {what}"
                 f"{' (or remove that deny rule)' if rule else ''}. NACLs are stateless: both directions need a rule.")]

    def nacl_flow(self, name: str, client_subnet: str | None, client_net, server_subnet: str | None, server_net,
                  port: int, ephemeral: tuple[int, int]) -> bool:
        """A TCP connection client -> server:port, replies back: every NACL it crosses."""
        problems = []
        if client_subnet and client_subnet != server_subnet:
            problems += self.nacl_problems(client_subnet, True, (port, port), server_net)
            problems += self.nacl_problems(client_subnet, False, ephemeral, server_net)
        if server_subnet and server_subnet != client_subnet:
            problems += self.nacl_problems(server_subnet, False, (port, port), client_net)
            problems += self.nacl_problems(server_subnet, True, ephemeral, client_net)
        if problems:
            return self.blocked(name, "; ".join(p[0] for p in problems), " ".join(p[1] for p in problems))
        if client_subnet == server_subnet:
            return self.passed(name, "same subnet: traffic does not cross a network ACL")
        return self.passed(name, f"network ACLs allow TCP {port} and the replies")


def _source_arg(peer_net, peer_sg_ids) -> str:
    if peer_sg_ids:
        return f"--source-group {sorted(peer_sg_ids)[0]}"
    return f"--cidr {peer_net}"


# --------------------------------------------------------------------------
# The three paths.

def _find_bastion(state: State, target: dict, bastion: str | None) -> tuple[dict | None, str]:
    if bastion:
        return state.resolve_instance(bastion, "bastion"), "given with -e bastion"
    vpc_id = target.get("vpc_id")
    found = [i for i in state.instances if i.get("vpc_id") == vpc_id and tags_dict(i).get("Role") == "bastion"]
    found.sort(key=lambda i: (i.get("state") or {}).get("name") != "running")
    return (found[0] if found else None), "tagged Role=bastion"


def walk_ssh(state: State, target: dict, source_cidr: str, bastion: str | None = None) -> Walk:
    walk = Walk(state, "ssh", target)
    source = ipaddress.ip_network(source_cidr, strict=False)
    vpc_id = target.get("vpc_id")
    jump, how = _find_bastion(state, target, bastion)
    later = ["bastion instance", "bastion public address", "bastion subnet routing", "internet gateway",
             "bastion security group", "bastion network ACL", "target instance", "bastion to target routing",
             "bastion outbound rule", "target security group", "network ACLs bastion to target"]
    if jump is None:
        walk.blocked("bastion", f"no instance tagged Role=bastion in {vpc_id}",
                     "Launch a bastion in a public subnet with tag Role=bastion, "
                     "or name one with -e bastion=<name|id>.")
        walk.skip(later, "there is no bastion")
        return walk
    walk.passed("bastion", f"{role_label('bastion', jump)} ({how})")
    walk.instance_running("bastion instance", jump, "bastion")
    public_ip = jump.get("public_ip_address")
    if public_ip:
        walk.passed("bastion public address", f"{role_label('bastion', jump)} has public IP {public_ip}")
    else:
        walk.blocked("bastion public address", f"{role_label('bastion', jump)} has no public IP address",
                     f"Associate an Elastic IP with it (aws ec2 associate-address --instance-id {jump['instance_id']} "
                     f"--allocation-id <eipalloc-...>).")
    _ok, route = walk.public_subnet("bastion subnet routing", jump["subnet_id"], f"{role_label('bastion', jump)}")
    walk.internet_gateway(jump.get("vpc_id"), route)
    walk.sg_in("bastion security group", jump, 22, source, (), source_cidr, f"{role_label('bastion', jump)}")
    walk.nacl_flow("bastion network ACL", None, source, jump["subnet_id"], state.instance_net(jump), 22,
                   CLIENT_EPHEMERAL)
    if jump["instance_id"] == target["instance_id"]:
        return walk
    walk.instance_running("target instance", target, "target")
    if jump.get("vpc_id") != vpc_id:
        walk.blocked("bastion to target routing", f"{role_label('bastion', jump)} is in {jump.get('vpc_id')}, "
                                                  f"{role_label('target', target)} in {vpc_id}",
                     "Use a bastion in the target's VPC (or peer the VPCs and route between them).")
        walk.skip(later[-3:], "bastion and target are in different VPCs")
        return walk
    walk.passed("bastion to target routing", f"same VPC {vpc_id}: the local route carries it")
    jump_groups = state.instance_groups(jump)
    target_net = state.instance_net(target)
    walk.sg_out("bastion outbound rule", jump_groups, 22, target_net, {g["group_id"] for g in
                state.instance_groups(target)}, f"{label(target)} {target_net}", f"{role_label('bastion', jump)}")
    walk.sg_in("target security group", target, 22, state.instance_net(jump), {g["group_id"] for g in jump_groups},
               f"the bastion (its security group {', '.join(label(g) for g in jump_groups)} "
               f"or its address {jump.get('private_ip_address')})", f"{role_label('target', target)}")
    walk.nacl_flow("network ACLs bastion to target", jump["subnet_id"], state.instance_net(jump),
                   target["subnet_id"], target_net, 22, CLIENT_EPHEMERAL)
    return walk


def _listener_target_groups(listener: dict) -> list[str]:
    """Target groups a listener forwards to: its default action first, then its rules' actions."""
    arns = []
    actions = list(listener.get("default_actions") or [])
    for rule in listener.get("rules") or []:
        actions += rule.get("actions") or []
    for action in actions:
        if action.get("type") != "forward":
            continue
        if action.get("target_group_arn"):
            arns.append(action["target_group_arn"])
        for tg in (action.get("forward_config") or {}).get("target_groups") or []:
            arns.append(tg["target_group_arn"])
    return list(dict.fromkeys(arns))


def _registration(target_group: dict, target: dict) -> dict | None:
    for desc in target_group.get("targets_health_description") or []:
        tid = (desc.get("target") or {}).get("id")
        if tid in (target["instance_id"], target.get("private_ip_address")):
            return desc
    return None


def _alb_for(state: State, target: dict) -> tuple[dict | None, list[dict]]:
    """The target's ALB: one forwarding to a target group holding it, else the VPC's only ALB."""
    albs = [lb for lb in state.load_balancers
            if lb.get("vpc_id") == target.get("vpc_id") and lb.get("type", "application") == "application"]
    for lb in albs:
        for listener in lb.get("listeners") or []:
            for arn in _listener_target_groups(listener):
                tg = state.target_groups.get(arn)
                if tg and _registration(tg, target):
                    return lb, albs
    return (albs[0] if len(albs) == 1 else None), albs


def walk_http(state: State, target: dict, port: int = 80) -> Walk:
    walk = Walk(state, "http", target)
    vpc_id = target.get("vpc_id")
    walk.instance_running("target instance", target, "target")
    walk.internet_gateway(vpc_id)
    alb, albs = _alb_for(state, target)
    later = ["load balancer subnets", "load balancer security group", "listener", "target registration",
             "load balancer outbound rule", "target security group", "network ACLs", "target health"]
    if alb is None:
        if albs:
            names = ", ".join(shown_name(lb["load_balancer_name"]) for lb in albs)
            walk.blocked("load balancer", f"none of the load balancers in {vpc_id} ({names}) forwards to "
                                          f"{label(target)}", f"Register {target['instance_id']} in the target "
                                          f"group of the ALB that should serve it.")
        else:
            walk.blocked("load balancer", f"there is no application load balancer in {vpc_id}",
                         "Create an internet-facing ALB in two public subnets with a listener on port 80.")
        walk.skip(later, "no load balancer serves the target")
        return walk
    name = shown_name(alb["load_balancer_name"])
    lb_state = (alb.get("state") or {}).get("code", "unknown")
    if alb.get("scheme") != "internet-facing":
        walk.blocked("load balancer", f"ALB {name} is {alb.get('scheme')}: it has no address on the internet",
                     "Recreate it with scheme internet-facing (the scheme cannot be changed in place).")
    elif lb_state != "active":
        walk.blocked("load balancer", f"ALB {name} is {lb_state}", "Wait for it to become active, or fix "
                                                                   "what the console reports.")
    else:
        walk.passed("load balancer", f"ALB {name} is internet-facing and active")

    zones = alb.get("availability_zones") or []
    subnet_ids = [z["subnet_id"] for z in zones]
    distinct = {z.get("zone_name") for z in zones}
    private = [s for s in subnet_ids if not _is_public(state, s)]
    if len(subnet_ids) < 2 or len(distinct) < 2:
        walk.blocked("load balancer subnets", f"ALB {name} is in {len(subnet_ids)} subnet(s) in "
                                              f"{len(distinct)} availability zone(s): AWS requires two AZs",
                     f"Add a public subnet in another availability zone (aws elbv2 set-subnets "
                     f"--load-balancer-arn {alb.get('load_balancer_arn')} --subnets {' '.join(subnet_ids)} "
                     f"<public subnet in another AZ>).")
    elif private:
        walk.blocked("load balancer subnets", f"ALB {name} has nodes in private subnet(s) "
                                              f"{', '.join(state.subnet_label(s) for s in private)}: "
                                              f"the internet cannot reach them",
                     "Move the ALB to public subnets (set-subnets), or route those subnets to the internet gateway.")
    else:
        walk.passed("load balancer subnets", f"ALB {name} is in public subnets "
                                             f"{', '.join(state.subnet_label(s) for s in subnet_ids)} "
                                             f"({len(distinct)} AZs)")

    alb_groups = [state.groups.get(g, {"group_id": g}) for g in alb.get("security_groups") or []]
    alb_sg_ids = {g["group_id"] for g in alb_groups}

    listeners = {int(lst.get("port", 0)): lst for lst in alb.get("listeners") or []}
    listener = listeners.get(port)
    front_port = port
    if listener:
        redirect = next((a for a in listener.get("default_actions") or [] if a.get("type") == "redirect"), None)
        if redirect and not _listener_target_groups(listener):
            front_port = int((redirect.get("redirect_config") or {}).get("port") or 443)
            listener = listeners.get(front_port)
    walk.sg_in("load balancer security group", alb_groups, port, INTERNET, (), "0.0.0.0/0 (the internet)",
               f"ALB {name}")
    if front_port != port:
        walk.sg_in("load balancer security group", alb_groups, front_port, INTERNET, (), "0.0.0.0/0 (the internet)",
                   f"ALB {name} (port {port} redirects to {front_port})")
    if not listener:
        walk.blocked("listener", f"ALB {name} has no listener on port {front_port}",
                     f"Add a listener on port {front_port} forwarding to the web target group.")
        walk.skip(later[3:], "there is no listener")
        return walk
    tg_arns = _listener_target_groups(listener)
    if not tg_arns:
        kinds = ", ".join(a.get("type", "?") for a in listener.get("default_actions") or [])
        walk.blocked("listener", f"ALB {name}'s listener on {front_port} does not forward ({kinds})",
                     "Make its default action forward to the web target group.")
        walk.skip(later[3:], "the listener forwards nowhere")
        return walk
    walk.passed("listener", f"ALB {name} listens on {front_port} and forwards to "
                            f"{', '.join(_tg_name(state, a) for a in tg_arns)}")

    registered = [(state.target_groups.get(a), _registration(state.target_groups.get(a) or {}, target))
                  for a in tg_arns]
    registered = [(tg, reg) for tg, reg in registered if reg]
    if not registered:
        tg_name = _tg_name(state, tg_arns[0])
        walk.blocked("target registration", f"{label(target)} is not registered in target group {tg_name}",
                     f"Register it (aws elbv2 register-targets --target-group-arn {tg_arns[0]} "
                     f"--targets Id={target['instance_id']}).")
        walk.skip(later[4:], "the target is not registered")
        return walk
    tg, reg = registered[0]
    tg_port = int((reg.get("target") or {}).get("port") or tg.get("port") or 80)
    walk.passed("target registration", f"{label(target)} is registered in {shown_name(tg['target_group_name'])} "
                                       f"on port {tg_port}")

    target_net = state.instance_net(target)
    target_sg_ids = {g["group_id"] for g in state.instance_groups(target)}
    walk.sg_out("load balancer outbound rule", alb_groups, tg_port, target_net, target_sg_ids,
                f"{label(target)} {target_net}", f"ALB {name}")
    alb_nets = [state.subnet_net(s) for s in subnet_ids if s in state.subnets]
    target_groups = state.instance_groups(target)
    via_group = sg_allows(target_groups, tg_port, None, alb_sg_ids, names=state.groups)
    via_cidr = alb_nets and all(sg_allows(target_groups, tg_port, n, ()) for n in alb_nets)
    if via_group or via_cidr:
        walk.passed("target security group", via_group or f"{', '.join(label(g) for g in target_groups)} allows "
                                                          f"{tg_port} from every ALB subnet")
    else:
        walk.sg_in("target security group", target, tg_port, None, alb_sg_ids,
                   f"the ALB's security group {', '.join(label(g) for g in alb_groups)}",
                   role_label("target", target))

    problems_hop = "network ACLs"
    before = len(walk.hops)
    for subnet_id in subnet_ids:
        if subnet_id not in state.subnets:
            continue
        walk.nacl_flow(problems_hop, None, INTERNET, subnet_id, state.subnet_net(subnet_id), front_port, AWS_EPHEMERAL)
        walk.nacl_flow(problems_hop, subnet_id, state.subnet_net(subnet_id), target["subnet_id"], target_net,
                       tg_port, AWS_EPHEMERAL)
    _merge_hops(walk, before, problems_hop, "network ACLs allow internet -> ALB and ALB -> target, with replies")
    _target_health(walk, tg, reg, target, tg_port)
    return walk


def _target_health(walk: Walk, tg: dict, reg: dict, target: dict, tg_port: int) -> None:
    """The ALB's own verdict, last: a configuration fault found above explains it, so that one is blocked first."""
    health = reg.get("target_health") or {}
    if health.get("state") == "healthy":
        walk.passed("target health", f"{label(target)} is healthy in {shown_name(tg['target_group_name'])}")
        return
    reason = shown_text(health.get("description") or health.get("reason") or "no reason given")
    walk.blocked("target health", f"{label(target)} is {health.get('state', 'unknown')} in target group "
                                  f"{shown_name(tg['target_group_name'])} ({reason})",
                 f"Make the health check pass: {tg.get('health_check_protocol', 'HTTP')} "
                 f"{shown_text(tg.get('health_check_path', '/'))} on port {tg_port} must answer "
                 f"{shown_text((tg.get('matcher') or {}).get('http_code', '200'))} (is the web server running and "
                 f"listening? does its security group admit the ALB?).")


def _tg_name(state: State, arn: str) -> str:
    tg = state.target_groups.get(arn)
    return shown_name(tg["target_group_name"] if tg else arn.rsplit("/", 2)[-2] if "/" in arn else arn)


def _is_public(state: State, subnet_id: str) -> bool:
    target = route_target(default_route(state.route_table(subnet_id)))
    return bool(target and target[0] == "internet_gateway")


def _merge_hops(walk: Walk, start: int, name: str, pass_text: str) -> None:
    """Fold several checks recorded under one hop name into one verdict."""
    parts = walk.hops[start:]
    del walk.hops[start:]
    blocked = [h for h in parts if h["status"] == BLOCKED]
    if blocked:
        walk.blocked(name, "; ".join(dict.fromkeys(h["detail"] for h in blocked)),
                     " ".join(dict.fromkeys(h["fix"] for h in blocked)))
    else:
        walk.passed(name, pass_text)


def _route_target_label(state: State, kind: str, target_id: str) -> str:
    resource = {"instance": state.instance_by_id, "network_interface": state.instance_by_eni,
                "nat_gateway": state.nat_gateways.get, "internet_gateway": state.igws.get}.get(kind, lambda _i: None)
    found = resource(target_id)
    text = label(found, target_id) if found else target_id
    return f"{text} via {target_id}" if kind == "network_interface" and found else text


def walk_egress(state: State, target: dict, ports=DEFAULT_EGRESS_PORTS) -> Walk:
    walk = Walk(state, "egress", target)
    vpc_id = target.get("vpc_id")
    subnet_id = target["subnet_id"]
    subnet = state.subnet_label(subnet_id)
    target_net = state.instance_net(target)
    walk.instance_running("target instance", target, "target")
    table = state.route_table(subnet_id)
    table_text = label(table, (table or {}).get("route_table_id") or (table or {}).get("id")) if table else "none"
    route = default_route(table)
    hop_target = route_target(route)
    later = ["NAT", "internet gateway", "target outbound rules", "network ACLs"]
    if not route or not hop_target:
        walk.blocked("default route", f"{subnet}'s route table {table_text} has no 0.0.0.0/0 route: "
                                      f"traffic to the internet has nowhere to go",
                     f"Add 0.0.0.0/0 -> a NAT gateway (or NAT instance) in a public subnet to {table_text}.")
        walk.skip(later, "there is no default route")
        return walk
    if route.get("state") == "blackhole":
        walk.blocked("default route", f"{subnet}'s route table {table_text} sends 0.0.0.0/0 to {hop_target[1]}, "
                                      f"which no longer exists (blackhole)",
                     f"Replace the route in {table_text} with 0.0.0.0/0 -> a working NAT gateway or NAT instance.")
        walk.skip(later, "the default route is a blackhole")
        return walk
    kind, hop_id = hop_target
    walk.passed("default route", f"{subnet}'s route table {table_text} sends 0.0.0.0/0 to "
                                 f"{_route_target_label(state, kind, hop_id)}")
    nat_subnet = None
    nat_net = None
    ephemeral = CLIENT_EPHEMERAL
    if kind == "internet_gateway":
        if target.get("public_ip_address"):
            walk.passed("NAT", f"{subnet} is public and {label(target)} has public IP "
                               f"{target['public_ip_address']}: no NAT needed")
        else:
            walk.blocked("NAT", f"{subnet} routes straight to the internet gateway, but {label(target)} has no "
                                f"public IP, so its packets cannot come back",
                         f"Give it a public IP (Elastic IP), or route {subnet} through a NAT gateway instead.")
    elif kind == "nat_gateway":
        nat = state.nat_gateways.get(hop_id)
        if not nat:
            walk.blocked("NAT", f"{subnet}'s route table sends 0.0.0.0/0 to NAT gateway {hop_id}, which does not "
                                f"exist", "Point the route at an existing NAT gateway in a public subnet.")
        else:
            nat_subnet = nat.get("subnet_id")
            problems = []
            if nat.get("state") != "available":
                problems.append(f"it is {nat.get('state')}")
            if nat.get("connectivity_type", "public") != "public":
                problems.append("it is a private NAT gateway (no internet access)")
            if nat_subnet and not _is_public(state, nat_subnet):
                problems.append(f"its subnet {state.subnet_label(nat_subnet)} does not route 0.0.0.0/0 to an "
                                f"internet gateway")
            if problems:
                walk.blocked("NAT", f"{subnet}'s route table sends 0.0.0.0/0 to NAT gateway {label(nat)}, but "
                                    + "; ".join(problems),
                             "Use an available public NAT gateway placed in a public subnet (route 0.0.0.0/0 -> IGW).")
            else:
                walk.passed("NAT", f"NAT gateway {label(nat)} is available in public subnet "
                                   f"{state.subnet_label(nat_subnet)}")
            ephemeral = AWS_EPHEMERAL
    elif kind in ("instance", "network_interface"):
        nat = state.instance_by_id(hop_id) if kind == "instance" else state.instance_by_eni(hop_id)
        if not nat:
            walk.blocked("NAT", f"{subnet}'s route table sends 0.0.0.0/0 to {hop_id}, which is no running instance",
                         "Point the route at the NAT instance (or a NAT gateway).")
        else:
            nat_subnet = nat.get("subnet_id")
            nat_net = state.instance_net(nat)
            _nat_instance_hops(walk, state, nat, subnet, subnet_id, target, ports)
    else:
        walk.blocked("NAT", f"{subnet}'s route table sends 0.0.0.0/0 to {hop_id}, which the doctor cannot follow",
                     "Check that target by hand (transit gateway, peering or VPN).")
    walk.internet_gateway(vpc_id)

    groups = state.instance_groups(target)
    before = len(walk.hops)
    for port in ports:
        walk.sg_out("target outbound rules", groups, port, INTERNET, (), "0.0.0.0/0", f"{role_label('target', target)}")
    _merge_hops(walk, before, "target outbound rules",
                f"{', '.join(label(g) for g in groups)} allows TCP {', '.join(map(str, ports))} out to the internet")

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
    _merge_hops(walk, before, "network ACLs", "network ACLs on the way out allow it, and the replies")
    return walk


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
    if not _is_public(state, nat.get("subnet_id")):
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
    _merge_hops(walk, before, "NAT instance security group",
                f"{', '.join(label(g) for g in nat_groups)} lets {subnet} in and out to the internet")


def walk(facts: dict, path: str, target: str, source_cidr: str | None = None, bastion: str | None = None,
         egress_ports=DEFAULT_EGRESS_PORTS) -> dict:
    """Walk ``path`` to ``target`` (Name or id). Returns the report as a dict."""
    if path not in PATHS:
        raise DoctorError(f"path must be one of {', '.join(PATHS)}, not '{path}'")
    state = State(facts)
    inst = state.resolve_instance(target, "target")
    if path == "ssh":
        if not source_cidr:
            raise DoctorError("the ssh path needs the admin's address: -e source_cidr=<your IP>/32 "
                              "(default: the first of admin_cidrs)")
        try:
            ipaddress.ip_network(source_cidr, strict=False)
        except ValueError as exc:
            raise DoctorError(f"source_cidr '{source_cidr}' is not an address or CIDR: {exc}") from exc
        result = walk_ssh(state, inst, source_cidr, bastion)
    elif path == "http":
        result = walk_http(state, inst)
    else:
        result = walk_egress(state, inst, tuple(int(p) for p in egress_ports))
    return report(result, source_cidr)


def report(result: Walk, source_cidr: str | None) -> dict:
    blocked = [h for h in result.hops if h["status"] == BLOCKED]
    who = label(result.target)
    origin = {"ssh": f"{source_cidr} via the bastion", "http": "the internet via the ALB",
              "egress": "the instance to the internet"}[result.path]
    if blocked:
        first = blocked[0]
        summary = f"{result.path} path to {who} ({origin}) is BLOCKED at '{first['hop']}': {first['detail']}"
    else:
        summary = f"{result.path} path to {who} ({origin}): every hop passes"
    return {"path": result.path, "target": result.target["instance_id"], "target_name": tags_dict(result.target)
            .get("Name"), "vpc_id": result.target.get("vpc_id"), "blocked": bool(blocked), "summary": summary,
            "hops": result.hops, "lines": [f"{result.path} path to {who}, from {origin}, hop by hop:"]
            + render(result.hops, summary)}


def render(hops: list[dict], summary: str) -> list[str]:
    lines = []
    for number, hop in enumerate(hops, 1):
        lines.append(f"{number:>2}. [{hop['status']}] {hop['hop']}: {hop['detail']}")
        if hop["fix"]:
            lines.append(f"      fix: {hop['fix']}")
    lines.append(summary)
    return lines
