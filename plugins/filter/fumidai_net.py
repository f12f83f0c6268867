"""Filters that check fumidai's topology variables before anything is created, and one that turns a
checked forward list into security group rules.

Each *_problems filter returns a list of plain-English problems, each naming the
variable at fault; an empty list means the input is sound. The aws_preflight
role asserts that every list is empty, so a bad value stops the run before
any AWS call.

One file holds several filters, so each is documented in its own sidecar beside
this file (network_problems.yml, admin_cidr_problems.yml, web_instance_problems.yml,
port_problems.yml, forward_problems.yml, forward_rules.yml), which ansible-doc reads:
``ansible-doc -t filter fumidai.vpc.network_problems``.
"""

from __future__ import annotations

import ipaddress
import re

from ansible_collections.fumidai.vpc.plugins.module_utils import fumidai_access as access

SUBNET_TIERS = ("public", "private")
NAT_KINDS = ("nat_gateway", "nat_instance")
RESERVED_INSTANCE_NAMES = ("bastion", "nat-instance")
INSTANCE_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


def _parse_network(value):
    """An IPv4 network from a CIDR string, or None when it is not one."""
    if not isinstance(value, str) or "/" not in value:
        return None
    try:
        return ipaddress.IPv4Network(value.strip(), strict=True)
    except ValueError:
        return None


def _cidr_problem(variable, value):
    if not isinstance(value, str) or "/" not in value:
        return f"{variable}: {value!r} is not a CIDR (expected a.b.c.d/n, e.g. 10.0.0.0/16)"
    try:
        ipaddress.IPv4Network(value.strip(), strict=True)
    except ValueError as exc:
        return f"{variable}: {value!r} is not a valid IPv4 CIDR ({exc})"
    return None


def fumidai_network_problems(vpc_cidr, subnets, nat_gateway_subnet=None, nat_instance_subnet=None, region=None):
    """Problems with the VPC CIDR and the subnet list."""
    problems = []
    vpc = _parse_network(vpc_cidr)
    problem = _cidr_problem("vpc_cidr", vpc_cidr)
    if problem:
        problems.append(problem)
    elif not 16 <= vpc.prefixlen <= 28:
        problems.append(f"vpc_cidr: {vpc_cidr} has a /{vpc.prefixlen} prefix; AWS VPCs must be between /16 and /28")

    if not isinstance(subnets, list) or not subnets:
        return problems + ["subnets: must be a non-empty list of {name, cidr, az, tier[, nat]}"]

    by_name = {}
    parsed = []
    for index, subnet in enumerate(subnets):
        if not isinstance(subnet, dict):
            problems.append(f"subnets[{index}]: must be a mapping with name, cidr, az and tier")
            continue
        name = subnet.get("name")
        label = f"subnets[{index}] ({name})" if name else f"subnets[{index}]"
        if not name:
            problems.append(f"{label}: name is missing")
        elif name in by_name:
            problems.append(f"{label}: name {name!r} is used by more than one subnet")
        else:
            by_name[name] = subnet

        tier = subnet.get("tier")
        if tier not in SUBNET_TIERS:
            problems.append(f"{label}: tier {tier!r} must be one of {', '.join(SUBNET_TIERS)}")
        nat = subnet.get("nat")
        if tier == "private" and nat not in NAT_KINDS:
            problems.append(f"{label}: nat {nat!r} must be one of {', '.join(NAT_KINDS)} for a private subnet")
        if tier == "public" and nat:
            problems.append(f"{label}: nat is only meaningful for private subnets (public ones route to the IGW)")

        az = subnet.get("az")
        if not az or not isinstance(az, str):
            problems.append(f"{label}: az (availability zone) is missing")
        elif region and not (az.startswith(region) and len(az) > len(region)):
            problems.append(f"{label}: az {az!r} is not an availability zone of aws_region {region!r}")

        cidr = subnet.get("cidr")
        problem = _cidr_problem(f"{label} cidr", cidr)
        if problem:
            problems.append(problem)
            continue
        network = _parse_network(cidr)
        if vpc is not None and not network.subnet_of(vpc):
            problems.append(f"{label}: cidr {cidr} is outside vpc_cidr {vpc_cidr}")
        elif not 16 <= network.prefixlen <= 28:
            problems.append(f"{label}: cidr {cidr} has a /{network.prefixlen} prefix; AWS subnets must be /16 to /28")
        parsed.append((label, network))

    for i, (label_a, net_a) in enumerate(parsed):
        for label_b, net_b in parsed[i + 1:]:
            if net_a.overlaps(net_b):
                problems.append(f"subnets: {label_a} cidr {net_a} overlaps {label_b} cidr {net_b}")

    public = [s for s in by_name.values() if s.get("tier") == "public"]
    public_azs = sorted({s.get("az") for s in public if s.get("az")})
    if len(public_azs) < 2:
        where = f"only in {', '.join(public_azs)}" if public_azs else "in no availability zone"
        problems.append(
            f"subnets: the public subnets are {where}; the ALB needs public subnets in at least two availability zones"
        )

    uses = {s.get("nat") for s in by_name.values() if s.get("tier") == "private"}
    for variable, value, kind in (
        ("nat_gateway_subnet", nat_gateway_subnet, "nat_gateway"),
        ("nat_instance_subnet", nat_instance_subnet, "nat_instance"),
    ):
        if not value:
            if kind in uses:
                problems.append(f"{variable}: is empty but a private subnet routes through the {kind}")
            continue
        if value not in by_name:
            problems.append(f"{variable}: {value!r} is not the name of a subnet in subnets")
        elif by_name[value].get("tier") != "public":
            problems.append(f"{variable}: {value!r} is a {by_name[value].get('tier')} subnet; the NAT must be public")
    return problems


def fumidai_admin_cidr_problems(admin_cidrs, allow_ssh_from_anywhere=False, variable="admin_cidrs"):
    """Problems with the sources allowed to SSH to the bastion (too broad unless allow_ssh_from_anywhere);
    ``variable`` names the list in the messages (the bastion role passes bastion_admin_cidrs)."""
    return access.admin_cidr_problems(admin_cidrs, allow_ssh_from_anywhere, variable)


def fumidai_web_instance_problems(web_instances, subnets):
    """Problems with the web instance list (names, subnets)."""
    if not isinstance(web_instances, list) or not web_instances:
        return ["web_instances: must be a non-empty list of {name, subnet}"]
    by_name = {s.get("name"): s for s in subnets or [] if isinstance(s, dict)}
    problems = []
    seen = set()
    for index, web in enumerate(web_instances):
        if not isinstance(web, dict):
            problems.append(f"web_instances[{index}]: must be a mapping with name and subnet")
            continue
        name = web.get("name")
        label = f"web_instances[{index}] ({name})" if name else f"web_instances[{index}]"
        if not name or not INSTANCE_NAME.match(str(name)):
            problems.append(f"{label}: name {name!r} must be lowercase letters, digits and hyphens")
        elif name in RESERVED_INSTANCE_NAMES:
            problems.append(f"{label}: name {name!r} is reserved for the {name} instance")
        elif name in seen:
            problems.append(f"{label}: name {name!r} is used by more than one web instance")
        seen.add(name)
        subnet = web.get("subnet")
        if subnet not in by_name:
            known = ", ".join(sorted(str(n) for n in by_name)) or "none"
            problems.append(f"{label}: subnet {subnet!r} is not a subnet in subnets (known: {known})")
        elif by_name[subnet].get("tier") != "private":
            problems.append(f"{label}: subnet {subnet!r} is public; web servers live in private subnets behind the ALB")
    return problems


def fumidai_port_problems(ports, variable="ports"):
    """Problems with a list of TCP ports (1-65535); [] when it is one (an empty list is one)."""
    return access.port_problems(ports, variable)


def fumidai_forward_problems(entries, variable="nat_instance_forward_ports"):
    """Problems with a forward list ({proto: tcp|udp, port: N} or {proto: icmp} entries)."""
    return access.forward_problems(entries, variable)


def fumidai_forward_rules(entries, peers, peer_key="cidr_ip", rule_desc="", extra_tcp_ports=()):
    """amazon.aws.ec2_security_group rules admitting (or, in rules_egress, sending) a forward list to or from
    each peer; ``extra_tcp_ports`` adds TCP ports (the NAT instance's own updates). Duplicates are dropped."""
    sets = access.forward_sets(entries)
    sets["tcp"] |= {int(p) for p in extra_tcp_ports}
    described = {"rule_desc": rule_desc} if rule_desc else {}
    rules = []
    for peer in peers:
        for proto in ("tcp", "udp"):
            rules += [{"proto": proto, "from_port": port, "to_port": port, peer_key: peer, **described}
                      for port in sorted(sets[proto])]
        if sets["icmp"]:
            rules.append({"proto": "icmp", "from_port": -1, "to_port": -1, peer_key: peer, **described})
    return rules


class FilterModule:
    def filters(self):
        return {
            "network_problems": fumidai_network_problems,
            "admin_cidr_problems": fumidai_admin_cidr_problems,
            "web_instance_problems": fumidai_web_instance_problems,
            "port_problems": fumidai_port_problems,
            "forward_problems": fumidai_forward_problems,
            "forward_rules": fumidai_forward_rules,
        }
