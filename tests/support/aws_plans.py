"""What the seeder builds (tests/support/aws_seed.py): VPC plans made from the project's own design.

``project_plan`` is provision.yml's topology read from the settings role's defaults (CIDRs, subnets and their
NAT, web servers); ``lab_plan`` puts a bastion and web servers at private IPs a caller chose (its containers');
``fleet_plans`` is the inventory benchmark's account. A plan is plain data: tests may change it before building.
``permission`` and ``forward`` spell security group rules as amazon.aws.ec2_security_group writes them.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent.parent
REGION = "ap-northeast-1"
PROJECT = "fumidai"
ADMIN_CIDR = "192.0.2.0/24"  # TEST-NET-1: a documentation range, never contacted
ADMIN_CIDR_V6 = "2001:db8:fd::/48"  # IPv6 documentation range (RFC 3849), never contacted
BATCH = 50  # instances per RunInstances call when hosts share subnet, role and image
WORLD = "0.0.0.0/0"


@cache
def login():
    """plugins/module_utils/login.py (image OS -> owner, name pattern, user): read from the file, stdlib only."""
    spec = importlib.util.spec_from_file_location("fumidai_seed_login", ROOT / "plugins" / "module_utils" / "login.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@cache
def design() -> dict:
    """The settings role's plain-data defaults (network and instances), as provisioning reads them."""
    folder = ROOT / "roles" / "settings" / "defaults" / "main"
    return {**yaml.safe_load((folder / "network.yml").read_text()),
            **yaml.safe_load((folder / "instances.yml").read_text())}


# --------------------------------------------------------------------------- plans
@dataclass(frozen=True)
class SubnetPlan:
    name: str
    cidr: str
    zone: str = "a"            # availability zone letter after the region
    tier: str = "private"      # public: routed to the internet gateway
    nat: str | None = None     # a private subnet's default route: nat_gateway, nat_instance, or None (main table)


@dataclass(frozen=True)
class HostPlan:
    name: str
    role: str                  # bastion (Elastic IP), nat (public IP, no source/dest check), web, ...
    subnet: str
    private_ip: str | None = None
    public_ip: bool | None = None  # None: as provisioning does for the role
    ami_os: str | None = None      # None: the plan's
    stopped: bool = False


@dataclass
class VpcPlan:
    name: str
    cidr: str
    subnets: list[SubnetPlan]
    hosts: list[HostPlan]
    ami_os: str = "debian12"
    admin_cidrs: tuple[str, ...] = (ADMIN_CIDR,)
    alb: bool = True           # an ALB over the public subnets with every web host registered (needs elbv2)
    suffix: str = ""           # after the ALB's and target group's names, unique per region


def web_instances(count: int, subnets: list[str]) -> list[tuple[str, str]]:
    """web01..webNN dealt round-robin over the private subnets, as the lab's --web-count does."""
    width = max(2, len(str(count)))
    return [(f"web{n:0{width}d}", subnets[(n - 1) % len(subnets)]) for n in range(1, count + 1)]


def project_plan(vpc_name: str = "fumidai-vpc", cidr_prefix: str = "10.0", suffix: str = "", *,
                 web_count: int | None = None, ami_os: str = "debian12",
                 admin_cidrs: tuple[str, ...] = (ADMIN_CIDR,), bastion_per_az: bool = False) -> VpcPlan:
    """provision.yml's topology from the settings defaults: 2 public + 2 private subnets, the bastion, the NAT
    instance, web01/web02 (or ``web_count`` web servers), host names ending in ``suffix``; with ``bastion_per_az``
    (the setting of that name) also bastion-2 in the second public subnet."""
    settings = design()

    def cidr(value: str) -> str:
        return cidr_prefix + value[len("10.0"):]

    subnets = [SubnetPlan(s["name"], cidr(s["cidr"]), s["az"].replace("{{ aws_region }}", ""), s["tier"],
                          s.get("nat")) for s in settings["subnets"]]
    public = [s.name for s in subnets if s.tier == "public"]
    webs = ([(w["name"], w["subnet"]) for w in settings["web_instances"]] if web_count is None else
            web_instances(web_count, [s.name for s in subnets if s.tier == "private"]))
    hosts = [HostPlan("bastion" + suffix, "bastion", public[0]),
             HostPlan("nat-instance" + suffix, "nat", settings["nat_instance_subnet"])]
    if bastion_per_az:
        hosts.insert(1, HostPlan("bastion-2" + suffix, "bastion", public[1]))
    hosts += [HostPlan(name + suffix, "web", subnet) for name, subnet in webs]
    return VpcPlan(vpc_name, cidr(settings["vpc_cidr"]), subnets, hosts, ami_os, admin_cidrs, suffix=suffix)


def lab_plan(bastion_ip: str, target_ips: list[str], *, vpc_cidr: str, public_cidr: str, private_cidr: str,
             vpc_name: str = "bench-vpc", ami_os: str = "debian12") -> VpcPlan:
    """A bastion and web01..webNN at private IPs the caller chose (its containers' addresses): public-subnet-1
    routed to the internet gateway, private-subnet-1 on the main table (local route only), no NAT, no ALB."""
    subnets = [SubnetPlan("public-subnet-1", public_cidr, tier="public"), SubnetPlan("private-subnet-1", private_cidr)]
    hosts = [HostPlan("bastion", "bastion", "public-subnet-1", private_ip=bastion_ip)]
    hosts += [HostPlan(name, "web", "private-subnet-1", private_ip=ip)
              for (name, _), ip in zip(web_instances(len(target_ips), ["private-subnet-1"]), target_ips, strict=True)]
    return VpcPlan(vpc_name, vpc_cidr, subnets, hosts, ami_os, alb=False)


def fleet_plans(total: int, vpcs: int = 2, subnets_per_vpc: int = 20, public_per_vpc: int = 4,
                stopped_share: float = 0.05) -> list[VpcPlan]:
    """The inventory benchmark's account: ``vpcs`` VPCs bench-vpc-N with a bastion each and ``subnets_per_vpc``
    /21 subnets (the first ``public_per_vpc`` public), ``total`` running instances (bastions included) dealt 50 at a
    time round-robin over every subnet, plus ``stopped_share`` of that stopped. No NAT, no ALB."""
    plans = [VpcPlan(f"bench-vpc-{v}", f"10.{v}.0.0/16", [
        SubnetPlan(f"{'public' if s < public_per_vpc else 'private'}-subnet-{v}-{s}", f"10.{v}.{s * 8}.0/21",
                   tier="public" if s < public_per_vpc else "private") for s in range(subnets_per_vpc)], [], alb=False)
             for v in range(vpcs)]
    every = [(plan, subnet) for plan in plans for subnet in plan.subnets]
    for number, plan in enumerate(plans):
        plan.hosts.append(HostPlan(f"bastion-{number}", "bastion", plan.subnets[0].name))
    remaining, index, number = total - vpcs, 0, vpcs
    while remaining > 0:
        plan, subnet = every[index % len(every)]
        for _ in range(min(BATCH, remaining)):
            plan.hosts.append(HostPlan(f"web{number:05d}", "web", subnet.name, public_ip=subnet.tier == "public"))
            number += 1
        remaining -= min(BATCH, remaining)
        index += 1
    plan, subnet = every[min(5, len(every) - 1)]
    plan.hosts += [HostPlan(f"stopped{n:05d}", "web", subnet.name, stopped=True)
                   for n in range(max(1, int(total * stopped_share)))]
    return plans


# --------------------------------------------------------------------------- security group rules
def permission(proto: str, port: int | None = None, *, cidr: str | None = None, group: str | None = None,
                desc: str = "") -> dict:
    """One IpPermission as amazon.aws.ec2_security_group writes a rule (port -1 for ICMP: every type)."""
    port = -1 if port is None else port
    perm: dict = {"IpProtocol": proto, "FromPort": port, "ToPort": port}
    if cidr and ":" in cidr:
        perm["Ipv6Ranges"] = [{"CidrIpv6": cidr, **({"Description": desc} if desc else {})}]
    elif cidr:
        perm["IpRanges"] = [{"CidrIp": cidr, **({"Description": desc} if desc else {})}]
    if group:
        # No description on a group reference: moto's revoke compares it (AWS's does not), so a test revoking
        # the rule the way a person would (group and ports) would find nothing to revoke.
        perm["UserIdGroupPairs"] = [{"GroupId": group}]
    return perm


def forward(peer: str, desc: str, extra_tcp: tuple[int, ...] = ()) -> list[dict]:
    """The NAT forward list (settings' nat_instance_forward_ports) to or from ``peer``, as fumidai.vpc.forward_rules."""
    ports = design()["nat_instance_forward_ports"]
    sets = {proto: sorted({int(p["port"]) for p in ports if p["proto"] == proto}) for proto in ("tcp", "udp")}
    sets["tcp"] = sorted(set(sets["tcp"]) | set(extra_tcp))
    rules = [permission(proto, port, cidr=peer, desc=desc) for proto in ("tcp", "udp") for port in sets[proto]]
    if any(p["proto"] == "icmp" for p in ports):
        rules.append(permission("icmp", cidr=peer, desc=desc))
    return rules
