"""Security groups as iptables and ip6tables rule specs, from the model's normalised rules (vpc_rules).

Each spec is what follows ``-A CHAIN``; SG references are resolved to the member nodes' addresses. The
lab's networks are IPv4 only (every container runs with IPv6 disabled, see lab.podman.COMMON_RUN): the
IPv6 ranges of a group are still rendered, into ip6tables chains that end in DROP like the IPv4 ones, so
a v6 rule is never widened or silently dropped, and a lab that gains IPv6 enforces it as AWS would.
``protocol_match`` (protocol, ports, ICMP type/code) is shared with the network ACLs' rendering.
"""

from __future__ import annotations

import ipaddress
import re
import shlex

from ansible_collections.fumidai.vpc.plugins.module_utils import vpc_rules

from lab.proc import LabError

# An IP protocol as iptables names it: a name vpc_rules gives (tcp, udp, icmp, icmpv6) or a number.
_PROTOCOL = re.compile(r"[a-z][a-z0-9]*|[0-9]{1,3}")


def _networks(cidrs, version: int) -> list[str]:
    """The valid ranges of one family, normalised (a malformed range admits nothing, as in vpc_rules)."""
    found = []
    for cidr in cidrs:
        try:
            net = ipaddress.ip_network(str(cidr), strict=False)
        except ValueError:
            continue
        if net.version == version:
            found.append(str(net))
    return found


def protocol_match(protocol: str, ports: tuple[int, int] | None, icmp: tuple[int | None, int | None] | None,
                   version: int, what: str) -> list[str] | None:
    """The protocol/port part of an iptables rule for one family, from vpc_rules' reading (a protocol name,
    tcp/udp ports, ICMP (type, code) with None for any); None when it cannot match in that family. Security
    groups and network ACLs (network_acls.py) share it; ``what`` names the rule in the error."""
    if protocol == "all":
        return []
    if not _PROTOCOL.fullmatch(protocol):
        raise LabError(f"{what} protocol {protocol!r} is not a form AWS returns")
    if protocol in ("tcp", "udp"):
        low, high = ports or vpc_rules.ALL_PORTS
        if (low, high) == vpc_rules.ALL_PORTS:
            return ["-p", protocol]
        return ["-p", protocol, "--dport", f"{low}:{high}" if high != low else str(low)]
    if protocol in vpc_rules.ICMP_PROTOCOLS:
        if (protocol == "icmp") != (version == 4):
            return None  # ICMP is IPv4's, ICMPv6 IPv6's: the rule admits nothing in the other family
        kind, code = icmp or (None, None)
        name, option = ("icmp", "--icmp-type") if version == 4 else ("ipv6-icmp", "--icmpv6-type")
        if kind is None:
            return ["-p", name]
        return ["-p", name, option, f"{kind}/{code}" if code is not None else str(kind)]
    return ["-p", protocol]


def sg_rules(plan: dict, group_ids: list[str], direction: str, version: int = 4) -> list[str]:
    """iptables (version 4) or ip6tables (6) rule specs for the ingress ("in") or egress ("out") rules."""
    peer = "-s" if direction == "in" else "-d"
    specs = []
    for group_id in group_ids:
        group = plan["security_groups"].get(group_id)
        if not group:
            raise LabError(f"security group {group_id} is attached but not described by moto")
        # The group's name is free text from the API: only a safe, short form goes into the comment.
        name = re.sub(r"[^A-Za-z0-9._-]", "_", str(group.get("group_name") or ""))[:48]
        label = shlex.quote(f"{group_id} {name}".strip())
        for rule in vpc_rules.sg_rules(group, egress=direction == "out"):
            match = protocol_match(rule.protocol, rule.ports, rule.icmp, version, "security group rule")
            if match is None:
                continue
            peers = list(rule.cidrs_v4 if version == 4 else rule.cidrs_v6)
            for member_group in rule.group_ids:
                peers += plan["sg_members"].get(member_group, [])
            # Prefix lists are not resolved by the lab: they admit nothing here (never more than AWS would).
            for address in _networks(peers, version):
                address = address.removesuffix("/32") if version == 4 else address.removesuffix("/128")
                specs.append(" ".join([peer, address, *match, "-m comment --comment", label, "-j RETURN"]))
    return specs
