"""Network ACLs as stateless iptables and ip6tables rule specs, from the model's reading of the entries (vpc_rules).

A network ACL guards a subnet's edge: AWS evaluates it for traffic entering or leaving the subnet, in rule-number
order, first match decides, and - unlike a security group - it remembers nothing, so replies need rules of their
own (the classic trap: an ACL that allows 80 out but no ephemeral ports in breaks every download). The lab puts
the subnet's ACL on each of its nodes: a packet from outside the subnet (in) or to outside it (out) runs the
entries; traffic within the subnet and on the loopback never crosses the ACL.
"""

from __future__ import annotations

import ipaddress
import re

from ansible_collections.fumidai.vpc.plugins.module_utils import vpc_rules

from lab.proc import LabError
from lab.render.security_groups import protocol_match

NACL_FAMILIES = (
    {"version": 4, "tool": "iptables", "chain": "chain", "jump": "jump_first",
     "title": "Network ACL of the subnet: stateless, rule-number order, first match decides, default deny."},
    {"version": 6, "tool": "ip6tables", "chain": "chain6", "jump": "jump6_first",
     "title": "The same for IPv6 entries (the lab's networks are IPv4 only)."},
)
# A protocol as AWS returns it in an ACL entry: -1 (all) or a number; names only as vpc_rules spells them.
_PROTOCOL = re.compile(r"-1|[0-9]{1,3}|all|tcp|udp|icmp|icmpv6")


def _network(cidr: object, version: int) -> str | None:
    """The range in this family, normalised; None for the other family. A malformed range is refused: skipping
    a deny entry would let through what AWS stops."""
    try:
        net = ipaddress.ip_network(str(cidr), strict=False)
    except ValueError:
        raise LabError(f"network ACL range {str(cidr)[:60]!r} is not a CIDR block") from None
    return str(net) if net.version == version else None


def nacl_rules(nacl: dict, egress: bool, version: int = 4) -> list[str]:
    """Rule specs (what follows ``-A CHAIN``) for one direction and family: allow returns to the next check
    (the security group), deny drops; the chain ends in DROP, AWS's rule ``*``."""
    peer = "-d" if egress else "-s"
    specs = []
    for entry in vpc_rules.nacl_entries(nacl, egress):
        action = str(entry["action"]).lower()
        if action not in ("allow", "deny"):
            raise LabError(f"network ACL entry {entry['rule']}: action {entry['action']!r} is neither allow nor deny")
        if not _PROTOCOL.fullmatch(str(entry["protocol"])):
            raise LabError(f"network ACL entry {entry['rule']}: protocol {entry['protocol']!r} is not a form AWS "
                           "returns")
        network = _network(entry["cidr"], version)
        match = protocol_match(vpc_rules.protocol_name(entry["protocol"]), entry["ports"], entry["icmp"], version,
                               f"network ACL entry {entry['rule']}:")
        if network is None or match is None:
            continue
        spec = [] if network in ("0.0.0.0/0", "::/0") else [peer, network]
        specs.append(" ".join([*spec, *match, "-m comment --comment", f"rule-{entry['rule']}",
                               "-j", "RETURN" if action == "allow" else "DROP"]))
    return specs


def network_acl_rules(plan: dict, node: dict) -> list[dict]:
    """Per address family: the tool, chain helpers, the node's subnet range(s) and its ACL's rule specs; empty
    when the node is in no subnet (gateways outside the VPC's subnets, the office, the internet)."""
    nacl_id = node.get("network_acl")
    if not nacl_id:
        return []
    nacl = plan["network_acls"].get(nacl_id)
    if nacl is None:
        raise LabError(f"{node['name']}: network ACL {nacl_id} is associated but not described by moto")
    families = []
    for family in NACL_FAMILIES:
        subnet = [net for net in (_network(c, family["version"]) for c in node.get("subnet_cidrs") or []) if net]
        families.append({**family, "subnet": subnet, "ingress": nacl_rules(nacl, False, family["version"]),
                         "egress": nacl_rules(nacl, True, family["version"])})
    return families
