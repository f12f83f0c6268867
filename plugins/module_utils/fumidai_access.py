"""Who may SSH to the bastion, and what the private hosts may send out: the checks shared by preflight, the
roles and the audit.

admin_cidrs
-----------

The aws_preflight role and the bastion role call it through the
``fumidai.vpc.admin_cidr_problems`` filter
(plugins/filter/fumidai_net.py); the audit (audit_group_checks) calls it on the SSH
sources the bastion's security groups really admit.

"Too broad", unless ``allow_ssh_from_anywhere`` is true:

* any single range shorter than /8 (IPv4) or /32 (IPv6), and
* any set whose ranges together (overlaps counted once) cover more addresses
  than one range at that limit: 2**24 IPv4 addresses (16,777,216) or 2**96
  IPv6 addresses. So 0.0.0.0/1 + 128.0.0.0/1 and ::/1 are refused one by one,
  and 256 /8s (each allowed alone) are refused together.

Why these limits: a /8 is the largest block any single organisation ever held
in IPv4 (a legacy class A); a /32 is the standard allocation of a whole ISP
(LIR) in IPv6, the largest block one organisation normally holds, while a site
gets a /48. Anything broader spans many organisations, so it cannot be "your
office or VPN". The limit is a floor against "the internet or a large part
of it", not a recommendation: list the smallest ranges you really use.

IPv4-mapped IPv6 ranges (::ffff:0:0/96) are refused outright: such addresses
never appear as IPv6 packet sources, so the rule would match nothing while
looking like an allow-list for the IPv4 internet.

Forwarded traffic
-----------------
What the private hosts may send to the internet (the NAT instance forwards
it, the security groups admit it) is a list of ``{proto: tcp|udp, port: N}``
and ``{proto: icmp}`` entries, the shape of the nat_instance role's
``nat_instance_forward_ports``; ``forward_problems`` checks one and
``forward_sets`` reduces it to what a rule may cover.

Pure Python. Imported as ``ansible_collections.fumidai.vpc.plugins.module_utils.fumidai_access``.
"""

from __future__ import annotations

import ipaddress
import re

PREFIX_LIMIT = {4: 8, 6: 32}
ADDRESS_LIMIT = {4: 2 ** (32 - PREFIX_LIMIT[4]), 6: 2 ** (128 - PREFIX_LIMIT[6])}
IPV4_MAPPED = ipaddress.ip_network("::ffff:0:0/96")
OPT_IN = "set allow_ssh_from_anywhere: true if you really mean it"
LIMIT_TEXT = "the limit for SSH sources is a /8 for IPv4 and a /32 for IPv6"


def truthy(value: object) -> bool:
    """Ansible's idea of a boolean, for values that may arrive as strings ("false" is false)."""
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on", "y", "t")
    return bool(value)


def parse_admin_cidrs(admin_cidrs: object, variable: str = "admin_cidrs"):
    """([(label, network), ...], problems) for a list of CIDR strings; labels are "variable[index]"."""
    if isinstance(admin_cidrs, str):
        return [], [f"{variable}: must be a list of CIDRs (got the string {admin_cidrs!r}; write [{admin_cidrs!r}])"]
    if not isinstance(admin_cidrs, list) or not admin_cidrs:
        return [], [
            f"{variable}: is empty; set it to your office/VPN ranges"
            " (e.g. -e '{\"admin_cidrs\": [\"203.0.113.0/24\"]}'),"
            " the only sources allowed to SSH to the bastion"
        ]
    entries, problems = [], []
    for index, cidr in enumerate(admin_cidrs):
        where = f"{variable}[{index}]"
        text = str(cidr).strip()
        try:
            network = ipaddress.ip_network(text, strict=True)
        except ValueError as exc:
            problems.append(f"{where}: {cidr!r} is not a valid CIDR ({exc})")
            continue
        if "/" not in text:
            problems.append(f"{where}: {cidr!r} is not a CIDR (write {network})")
        elif network.version == 6 and network.subnet_of(IPV4_MAPPED):
            problems.append(f"{where}: {network} is an IPv4-mapped IPv6 range, which never appears as a source "
                            f"address; write the IPv4 range instead")
        else:
            entries.append((where, network))
    return entries, problems


def breadth_problems(entries: list, variable: str = "admin_cidrs") -> list[str]:
    """Problems with ranges that are too broad, one by one and together (see the module docstring)."""
    problems = []
    for version in (4, 6):
        limit = PREFIX_LIMIT[version]
        family = [(where, net) for where, net in entries if net.version == version]
        single = [(where, net) for where, net in family if net.prefixlen < limit]
        for where, net in single:
            if net.prefixlen == 0:
                problems.append(f"{where}: {net} opens SSH to the whole internet; {OPT_IN}")
            else:
                problems.append(f"{where}: {net} is broader than a /{limit} ({LIMIT_TEXT}): it covers "
                                f"{_count(net.num_addresses)} addresses; list your office/VPN ranges, or {OPT_IN}")
        if single:
            continue  # each of them is already reported; the total would only repeat it
        total = sum(net.num_addresses for net in ipaddress.collapse_addresses(net for _w, net in family))
        if total > ADDRESS_LIMIT[version]:
            ranges = ", ".join(str(net) for _w, net in family)
            problems.append(f"{variable}: together the IPv{version} ranges ({ranges}) cover {_count(total)} "
                            f"addresses, more than one /{limit} ({_count(ADDRESS_LIMIT[version])}; {LIMIT_TEXT}); "
                            f"list fewer, narrower ranges, or {OPT_IN}")
    return problems


def _count(number: int) -> str:
    """An address count a person can read: 16,777,216 for IPv4 sizes, 2^97 for IPv6 ones."""
    if number < 2 ** 40:
        return f"{number:,}"
    exponent = number.bit_length() - 1
    return f"2^{exponent}" if number == 2 ** exponent else f"more than 2^{exponent}"


def admin_cidr_problems(admin_cidrs: object, allow_ssh_from_anywhere: object = False,
                        variable: str = "admin_cidrs") -> list[str]:
    """Every problem with admin_cidrs, as sentences naming the entry at fault; [] when it is sound."""
    entries, problems = parse_admin_cidrs(admin_cidrs, variable)
    if not truthy(allow_ssh_from_anywhere):
        problems += breadth_problems(entries, variable)
    return problems


FORWARD_PROTOCOLS = ("tcp", "udp", "icmp")
DEFAULT_FORWARD = [{"proto": "tcp", "port": 80}, {"proto": "tcp", "port": 443}, {"proto": "icmp"}]


def _port(value: object) -> int | None:
    """A port number from an int or a numeric string; None when it is not one (booleans are not)."""
    if isinstance(value, bool) or not re.fullmatch(r"[0-9]{1,5}", str(value).strip()):
        return None
    port = int(str(value).strip())
    return port if 1 <= port <= 65535 else None


def port_problems(ports: object, variable: str = "ports") -> list[str]:
    """Problems with a list of TCP ports (1-65535); [] when it is one (an empty list is one)."""
    if isinstance(ports, (str, dict)) or not isinstance(ports, (list, tuple)):
        return [f"{variable}: must be a list of TCP ports (1-65535), e.g. [80, 443] (got {ports!r})"]
    bad = [port for port in ports if _port(port) is None]
    if bad:
        verb = "is not a TCP port" if len(bad) == 1 else "are not TCP ports"
        return [f"{variable}: {', '.join(repr(p) for p in bad)} {verb} (1-65535)"]
    return []


def forward_problems(entries: object, variable: str = "nat_instance_forward_ports") -> list[str]:
    """Problems with a forward list ({proto: tcp|udp, port: N} or {proto: icmp} entries); [] when sound."""
    if not isinstance(entries, list):
        return [f"{variable}: must be a list of {{proto: tcp|udp, port: N}} or {{proto: icmp}} entries "
                f"(got {entries!r})"]
    problems = []
    for index, entry in enumerate(entries):
        where = f"{variable}[{index}]"
        if not isinstance(entry, dict):
            problems.append(f"{where}: {entry!r} must be {{proto: tcp|udp, port: N}} or {{proto: icmp}}")
            continue
        proto = str(entry.get("proto", "")).lower()
        if proto not in FORWARD_PROTOCOLS:
            problems.append(f"{where}: proto {entry.get('proto')!r} must be one of {', '.join(FORWARD_PROTOCOLS)}")
        elif proto == "icmp" and entry.get("port") is not None:
            problems.append(f"{where}: icmp takes no port (every ICMP type is forwarded)")
        elif proto != "icmp" and _port(entry.get("port")) is None:
            problems.append(f"{where}: port {entry.get('port')!r} is not a {proto.upper()} port (1-65535)")
    return problems


def forward_sets(entries: list) -> dict:
    """{"tcp": {ports}, "udp": {ports}, "icmp": bool} of a valid forward list."""
    sets = {"tcp": set(), "udp": set(), "icmp": False}
    for entry in entries:
        proto = str(entry.get("proto")).lower()
        if proto == "icmp":
            sets["icmp"] = True
        else:
            sets[proto].add(_port(entry.get("port")))
    return sets
