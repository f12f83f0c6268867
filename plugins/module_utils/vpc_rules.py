"""Security-group and network-ACL rules: normalised once, evaluated for IPv4 and IPv6 (doctor, audit, lab).

Pure Python, no AWS calls. Rules come in amazon.aws's snake_case shapes (``ip_permissions`` entries of
``ec2_security_group_info``, boto3 responses through ``camel_dict_to_snake_dict``; network ACLs in either
``ec2_vpc_nacl_info``'s list form or boto3's ``entries``). ``normalize_sg_rule`` gives the one reading of a
rule that the evaluators here and the lab's iptables/ip6tables rendering share.

Imported as ``ansible_collections.fumidai.vpc.plugins.module_utils.vpc_rules``.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

ALL_PORTS = (0, 65535)
# Protocol numbers AWS returns alongside names; everything else stays as given (e.g. "50" for ESP).
PROTOCOL_NAMES = {"-1": "all", "all": "all", "6": "tcp", "17": "udp", "1": "icmp", "58": "icmpv6"}
PROTOCOL_NUMBERS = {"tcp": "6", "udp": "17", "icmp": "1", "icmpv6": "58"}
ICMP_PROTOCOLS = ("icmp", "icmpv6")


def protocol_name(protocol) -> str:
    """'tcp', 'udp', 'icmp', 'icmpv6', 'all', or the protocol number as text; None (unset) means all."""
    text = "-1" if protocol is None else str(protocol).lower()
    return PROTOCOL_NAMES.get(text, text)


def protocol_matches(protocol, wanted: str = "tcp") -> bool:
    """Does a rule's protocol cover ``wanted`` (a name or a number)?"""
    name = protocol_name(protocol)
    return name == "all" or name == protocol_name(wanted)


def rule_ports(rule: dict) -> tuple[int, int]:
    """The port range of an SG rule; every port for 'all' protocols and for rules without ports."""
    if protocol_name(rule.get("ip_protocol")) == "all" or rule.get("from_port") in (None, -1):
        return ALL_PORTS
    return int(rule["from_port"]), int(rule.get("to_port", rule["from_port"]))


def _net(cidr: str | None):
    if not cidr:
        return None
    try:
        return ipaddress.ip_network(cidr, strict=False)
    except ValueError:  # untrusted input: a malformed range admits nothing rather than crashing a report
        return None


# --------------------------------------------------------------------------- security groups
@dataclass(frozen=True)
class SgRule:
    """One SG permission, read once. ``ports`` is set for tcp/udp only; ``icmp`` is (type, code) for
    icmp/icmpv6, None meaning every type/code; peers are split by kind (both address families)."""

    protocol: str
    ports: tuple[int, int] | None
    icmp: tuple[int | None, int | None] | None
    cidrs_v4: tuple[str, ...]
    cidrs_v6: tuple[str, ...]
    group_ids: tuple[str, ...]
    prefix_list_ids: tuple[str, ...]

    @property
    def peers(self) -> tuple[str, ...]:
        """Every source (ingress) or destination (egress): CIDRs, prefix lists, security groups."""
        return self.cidrs_v4 + self.cidrs_v6 + self.prefix_list_ids + self.group_ids


def normalize_sg_rule(rule: dict) -> SgRule:
    protocol = protocol_name(rule.get("ip_protocol"))
    ports = icmp = None
    if protocol in ("tcp", "udp"):
        ports = rule_ports(rule)
    elif protocol in ICMP_PROTOCOLS:
        # For ICMP, AWS puts the type in from_port and the code in to_port; -1 is "any".
        low, high = rule.get("from_port"), rule.get("to_port")
        icmp = (None if low in (None, -1) else int(low), None if high in (None, -1) else int(high))
    return SgRule(
        protocol=protocol, ports=ports, icmp=icmp,
        cidrs_v4=tuple(r["cidr_ip"] for r in rule.get("ip_ranges") or [] if r.get("cidr_ip")),
        cidrs_v6=tuple(r["cidr_ipv6"] for r in rule.get("ipv6_ranges") or [] if r.get("cidr_ipv6")),
        group_ids=tuple(p["group_id"] for p in rule.get("user_id_group_pairs") or [] if p.get("group_id")),
        prefix_list_ids=tuple(p["prefix_list_id"] for p in rule.get("prefix_list_ids") or []
                              if p.get("prefix_list_id")),
    )


def sg_rules(group: dict, egress: bool = False) -> list[SgRule]:
    """A group's ingress (or egress) rules, normalised."""
    return [normalize_sg_rule(r) for r in group.get("ip_permissions_egress" if egress else "ip_permissions") or []]


def sg_rule_matches(rule: dict, port: int, peer_net, peer_sg_ids=(), protocol: str = "tcp",
                    prefix_lists: dict | None = None) -> str | None:
    """How one rule admits ``protocol``/``port`` from (or to) ``peer_net`` (IPv4 or IPv6) or a peer SG:
    ``"group sg-..."``, ``"prefix list pl-..."`` or the matching CIDR; None when it does not.

    ``prefix_lists`` maps a prefix list id to its CIDRs; without it prefix lists admit nothing (unknown).
    """
    if not protocol_matches(rule.get("ip_protocol"), protocol):
        return None
    low, high = rule_ports(rule)
    if not low <= port <= high:
        return None
    for pair in rule.get("user_id_group_pairs") or []:
        if pair.get("group_id") in peer_sg_ids:
            return f"group {pair['group_id']}"
    if peer_net is None:
        return None
    ranges = [r.get("cidr_ip") for r in rule.get("ip_ranges") or []] if peer_net.version == 4 else \
        [r.get("cidr_ipv6") for r in rule.get("ipv6_ranges") or []]
    for cidr in ranges:
        net = _net(cidr)
        if net is not None and net.version == peer_net.version and peer_net.subnet_of(net):
            return cidr
    for entry in rule.get("prefix_list_ids") or []:
        for cidr in (prefix_lists or {}).get(entry.get("prefix_list_id")) or []:
            net = _net(cidr)
            if net is not None and net.version == peer_net.version and peer_net.subnet_of(net):
                return f"prefix list {entry['prefix_list_id']}"
    return None


def sg_match(groups: list[dict], port: int, peer_net=None, peer_sg_ids=(), egress: bool = False,
             protocol: str = "tcp", prefix_lists: dict | None = None) -> tuple[dict, str] | None:
    """The first group that admits the traffic and how (see sg_rule_matches); SGs are stateful, so only
    the direction that opens the connection counts."""
    key = "ip_permissions_egress" if egress else "ip_permissions"
    for group in groups:
        for rule in group.get(key) or []:
            how = sg_rule_matches(rule, port, peer_net, peer_sg_ids, protocol, prefix_lists)
            if how:
                return group, how
    return None


def sg_allows(groups: list[dict], port: int, peer_net=None, peer_sg_ids=(), egress: bool = False,
              names: dict | None = None, label=None, protocol: str = "tcp") -> str | None:
    """How ``groups`` admit ``protocol``/``port`` from (egress: to) the peer, in words; None when they don't.

    ``label(resource, resource_id)`` names resources (default: vpc_model.label); ``names`` maps group ids
    to groups, to name a peer group.
    """
    if label is None:
        from ansible_collections.fumidai.vpc.plugins.module_utils.vpc_model import label
    found = sg_match(groups, port, peer_net, peer_sg_ids, egress, protocol)
    if not found:
        return None
    group, how = found
    if how.startswith("group "):
        gid = how.split(" ", 1)[1]
        how = f"security group {label((names or {}).get(gid), gid)}"
    return f"{label(group)} allows {protocol.upper()} {port} {'to' if egress else 'from'} {how}"


# --------------------------------------------------------------------------- network ACLs
def _icmp(kind, code) -> tuple[int | None, int | None]:
    """An ICMP type and code as AWS gives them (-1 or nothing: any), in SgRule's form (None: any)."""
    return tuple(None if value in (None, -1, "-1") else int(value) for value in (kind, code))


def nacl_entries(nacl: dict, egress: bool) -> list[dict]:
    """Entries of one direction, lowest rule number first, as dicts: rule, protocol, action, cidr (IPv4 or
    IPv6), ports (low, high), icmp ((type, code) as in SgRule: None meaning any; None when not given). Reads
    ec2_vpc_nacl_info's lists or boto3-style ``entries``."""
    out = []
    if "entries" in nacl:  # boto3 shape through camel_dict_to_snake_dict
        for entry in nacl["entries"]:
            if bool(entry.get("egress")) != egress:
                continue
            ports = entry.get("port_range") or {}
            icmp = entry.get("icmp_type_code")
            out.append({"rule": int(entry["rule_number"]), "protocol": str(entry.get("protocol")),
                        "action": entry.get("rule_action"),
                        "cidr": entry.get("cidr_block") or entry.get("ipv6_cidr_block"),
                        "ports": (int(ports.get("from", 0)), int(ports.get("to", 65535))) if ports else ALL_PORTS,
                        "icmp": _icmp(icmp.get("type"), icmp.get("code")) if icmp else None})
    else:  # [rule no, protocol, action, cidr, icmp type, icmp code, port from, port to]
        for entry in nacl.get("egress" if egress else "ingress") or []:
            low = entry[6] if len(entry) > 6 and entry[6] is not None else 0
            high = entry[7] if len(entry) > 7 and entry[7] is not None else 65535
            icmp = _icmp(entry[4], entry[5]) if len(entry) > 5 and entry[4] is not None else None
            out.append({"rule": int(entry[0]), "protocol": str(entry[1]), "action": entry[2], "cidr": entry[3],
                        "ports": (int(low), int(high)), "icmp": icmp})
    return sorted(out, key=lambda e: e["rule"])


def nacl_verdict(nacl: dict, egress: bool, ports: tuple[int, int], peer_net,
                 protocol: str = "tcp") -> tuple[bool, dict | None]:
    """Does the NACL let ``protocol`` ``ports`` out to / in from ``peer_net``? (allowed, deciding rule).

    Rules are read in number order and only those of the peer's address family count; allows that
    cover the peer whittle the port range down. A deny that overlaps the remaining ports blocks, except
    a deny for part of "the internet" (it blocks some addresses, not the path).
    """
    remaining = [ports]
    for entry in nacl_entries(nacl, egress):
        if not entry["cidr"] or not protocol_matches(entry["protocol"], protocol):
            continue
        net = _net(entry["cidr"])
        if net is None or net.version != peer_net.version or not net.overlaps(peer_net):
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
