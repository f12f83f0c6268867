#!/usr/bin/env python3
"""fumidai's local lab: what moto "launched", built as real Linux hosts.

    fumidai_lab.py up [--until STEP] [--web-count N]
                                       provision on moto, build the hosts, run site.yml
    fumidai_lab.py step STEP           one step (keys, moto, provision, hosts, configure, ssh-config)
    fumidai_lab.py step net            re-apply moto's routes and security groups to the running hosts
    fumidai_lab.py step consoles       publish the hosts' consoles to the local AWS API again
    fumidai_lab.py down                remove everything the lab created (safe to repeat)
    fumidai_lab.py show                print the lab's addresses (.cache/lab/lab.json)

Nothing here is a copy of the topology. The ``hosts`` step describes the VPC
moto holds (boto3, honouring AWS_ENDPOINT_URL) and turns it into podman
containers on an isolated layer-2 network for the VPC CIDR:

* every instance: a systemd container with the private IP (and MAC) moto
  assigned, the key pair authorised for the image's user (as cloud-init does),
  and a boot unit applying what AWS enforces outside the instance: the
  default route its subnet's route table names, the route back to the office
  (a VGW route), its security groups as stateful iptables rules (chains
  AWS-SG-IN / AWS-SG-OUT, SG references resolved to member addresses, default
  deny) and the source/destination check (chain AWS-SRC-DST-CHECK);
* the internet gateway, the NAT gateway (at the NAT gateway's private IP), the
  VPN router and the ALB (HAProxy configured from moto's listeners, target
  groups, health checks and registered targets) as small service containers;
* a lab "internet" (198.18.0.0/24) behind the internet gateway with an HTTP
  server that answers and logs each request's source address.

The control node reaches the VPC as an admin would: from the office range
(lab/vars.yml admin_cidrs) through the VPN router. Before any lab network
exists, ``prohibit`` routes for every lab CIDR guarantee that a missing lab
route never sends a packet off the machine; they are removed last.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import ipaddress
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tarfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml
from ansible_collections.fumidai.vpc.plugins.module_utils import fumidai_host_keys as host_keys
from ansible_collections.fumidai.vpc.plugins.module_utils import fumidai_ssh
from ansible_collections.fumidai.vpc.plugins.module_utils import fumidai_topology as topology

from lab import moto_local

ROOT = Path(__file__).resolve().parent.parent

CACHE = ROOT / ".cache" / "lab"
STATE_FILE = CACHE / "lab.json"
LAB_VARS = ROOT / "lab" / "vars.yml"
KEY_FILE = CACHE / "id_ed25519"
# The lab's pinned host keys (FUMIDAI_KNOWN_HOSTS in the lab's environment): provisioning pins each lab
# host's key from the console output the lab publishes; a rebuilt host's pin is dropped with it.
KNOWN_HOSTS = CACHE / "known_hosts"
# What the lab publishes to its local AWS API (lab/moto_server.py --lab-dir): each instance's console
# and the ALB's HAProxy stats socket (live target health).
AWS_DIR = CACHE / "aws"
CONSOLE_DIR = AWS_DIR / "console"
ALB_STATS_DIR = "/run/fumidai-lab-alb"  # in the ALB container; AWS_DIR/alb/<load balancer name> on this machine
CONSOLE_TIMEOUT = 120  # seconds for a new host to print its host keys on its console
# web_instances generated from lab_web_count; passed to every playbook after lab/vars.yml.
WEB_INSTANCES_FILE = CACHE / "web_instances.yml"
WEB_COUNT_ENV = "FUMIDAI_LAB_WEB_COUNT"
MAX_WEB_COUNT = 100  # each is a systemd container; a private /24 would hold more
IMAGE = os.environ.get("FUMIDAI_IMAGE", "localhost/fumidai-debian12") + ":latest"
# The image's default login user (what an EC2 Debian AMI calls "admin").
IMAGE_USER = "admin"

PREFIX = "fumidai-lab"
LABEL = "io.fumidai.lab"
NET_VPC = f"{PREFIX}-vpc"
NET_INTERNET = f"{PREFIX}-internet"
NET_OFFICE = f"{PREFIX}-office"
# Unaddressed veth pairs: macvlan parents, so the host itself is not on the
# VPC or the lab internet (only on the office range, like the admin's laptop).
VETH_VPC = ("fl-vpc", "fl-vpc-peer")
VETH_INTERNET = ("fl-inet", "fl-inet-peer")
INTERNET_CIDR = ipaddress.ip_network("198.18.0.0/24")  # RFC 2544 benchmarking range
INTERNET_GW_IP = INTERNET_CIDR[1]
INTERNET_SERVER_IP = INTERNET_CIDR[10]
PROHIBIT_METRIC = 4000
ROUTE_METRIC = 100

STEPS = ("keys", "moto", "provision", "hosts", "configure", "ssh-config")
STEP_TITLES = {
    "keys": "generate the lab key pair",
    "moto": "start the local AWS API (moto)",
    "provision": "provision the VPC on moto (playbooks/provision.yml)",
    "hosts": "build the hosts from moto's state (podman)",
    "configure": "configure through the bastion (site.yml)",
    "ssh-config": "write the SSH config a person uses (playbooks/ssh_config.yml)",
    "net": "re-apply moto's routes, security groups and source/dest checks to the running hosts",
    "consoles": "publish the hosts' consoles to the local AWS API (as EC2 posts console output)",
}


class LabError(Exception):
    """A failure with a sentence a person can act on."""


def log(message: str) -> None:
    print(f"    {message}", flush=True)


def run(cmd: list[str], *, check: bool = True, capture: bool = True, input_bytes: bytes | None = None,
        env: dict | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, input=input_bytes, capture_output=capture, env=env, cwd=cwd)
    if check and proc.returncode != 0:
        detail = (proc.stderr or b"").decode(errors="replace").strip() if capture else ""
        raise LabError(f"command failed ({proc.returncode}): {shlex.join(cmd)}\n{detail}")
    return proc


def out(cmd: list[str], **kwargs) -> str:
    return run(cmd, **kwargs).stdout.decode().strip()


def lab_vars() -> dict:
    return yaml.safe_load(LAB_VARS.read_text()) or {}


def web_instances(count: int, subnets: list[str]) -> list[dict]:
    """web01..webNN, dealt round-robin over ``subnets`` (web01 in the first, web02 in the second...)."""
    width = max(2, len(str(count)))
    return [{"name": f"web{number:0{width}d}", "subnet": subnets[(number - 1) % len(subnets)]}
            for number in range(1, count + 1)]


def parse_web_count(value: object, source: str) -> int:
    try:
        count = int(str(value))
    except ValueError:
        raise LabError(f"{source}: the web server count must be a whole number, not {value!r}") from None
    if not 1 <= count <= MAX_WEB_COUNT:
        raise LabError(f"{source}: the web server count must be between 1 and {MAX_WEB_COUNT}, not {count}")
    return count


def resolve_web_count(requested: int | None) -> int:
    """--web-count, else FUMIDAI_LAB_WEB_COUNT, else what the lab was provisioned with, else lab_web_count."""
    if requested is not None:
        return parse_web_count(requested, "--web-count")
    if os.environ.get(WEB_COUNT_ENV):
        return parse_web_count(os.environ[WEB_COUNT_ENV], WEB_COUNT_ENV)
    try:
        current = yaml.safe_load(WEB_INSTANCES_FILE.read_text())["web_instances"]
        return len(current)
    except (OSError, TypeError, KeyError, yaml.YAMLError):
        pass
    return parse_web_count(lab_vars().get("lab_web_count", 2), f"{LAB_VARS.name}: lab_web_count")


def write_web_instances(count: int) -> None:
    subnets = lab_vars().get("lab_web_subnets") or ["private-subnet-1", "private-subnet-2"]
    hosts = web_instances(count, subnets)
    CACHE.mkdir(parents=True, exist_ok=True)
    header = (f"# Generated by lab/fumidai_lab.py from the lab's web server count ({count}); "
              "passed after lab/vars.yml.\n")
    WEB_INSTANCES_FILE.write_text(header + yaml.safe_dump({"web_instances": hosts}, sort_keys=False))


def office_network() -> ipaddress.IPv4Network:
    cidrs = lab_vars().get("admin_cidrs") or []
    if not cidrs:
        raise LabError(f"{LAB_VARS}: admin_cidrs is empty; the lab needs an office range to reach the bastion from")
    return ipaddress.ip_network(cidrs[0])


# --------------------------------------------------------------------------- moto's state


def aws_env() -> dict[str, str]:
    state = moto_local.read_state()
    if not state:
        raise LabError("the moto server is not running (python -m lab.moto_local start, or `fumidai_lab.py step moto`)")
    return moto_local.environment(state["endpoint"], state["region"])


def describe(project_name: str = "fumidai", tag_key: str = "Project") -> dict:
    """Everything the lab needs from moto, as amazon.aws-style snake_case dicts."""
    import boto3
    from ansible.module_utils.common.dict_transformations import camel_dict_to_snake_dict

    env = aws_env()
    session = boto3.session.Session(aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                                    aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"], region_name=env["AWS_REGION"])
    ec2 = session.client("ec2", endpoint_url=env["AWS_ENDPOINT_URL"])
    elbv2 = session.client("elbv2", endpoint_url=env["AWS_ENDPOINT_URL"])

    def snake(items):
        return [camel_dict_to_snake_dict(i, ignore_list=["Tags"]) for i in items]

    project = [{"Name": f"tag:{tag_key}", "Values": [project_name]}]
    vpcs = snake(ec2.describe_vpcs(Filters=project)["Vpcs"])
    if len(vpcs) != 1:
        raise LabError(f"expected one VPC tagged {tag_key}={project_name} on moto, found {len(vpcs)}: "
                       "has playbooks/provision.yml run?")
    vpc = vpcs[0]
    in_vpc = [{"Name": "vpc-id", "Values": [vpc["vpc_id"]]}]
    instances = [i for r in ec2.describe_instances(Filters=in_vpc + project + [
        {"Name": "instance-state-name", "Values": ["pending", "running"]}])["Reservations"] for i in r["Instances"]]
    load_balancers = [lb for lb in elbv2.describe_load_balancers()["LoadBalancers"] if lb.get("VpcId") == vpc["vpc_id"]]
    albs = []
    for lb in load_balancers:
        listeners = elbv2.describe_listeners(LoadBalancerArn=lb["LoadBalancerArn"])["Listeners"]
        groups = elbv2.describe_target_groups(LoadBalancerArn=lb["LoadBalancerArn"])["TargetGroups"]
        for group in groups:
            group["Targets"] = [t["Target"] for t in elbv2.describe_target_health(
                TargetGroupArn=group["TargetGroupArn"])["TargetHealthDescriptions"]]
        albs.append({**lb, "Listeners": listeners, "TargetGroups": groups})
    keys = ec2.describe_key_pairs(IncludePublicKey=True)["KeyPairs"]
    return {
        "vpc": vpc,
        "subnets": snake(ec2.describe_subnets(Filters=in_vpc)["Subnets"]),
        "route_tables": snake(ec2.describe_route_tables(Filters=in_vpc)["RouteTables"]),
        "security_groups": snake(ec2.describe_security_groups(Filters=in_vpc)["SecurityGroups"]),
        "nat_gateways": snake([n for n in ec2.describe_nat_gateways(Filter=in_vpc)["NatGateways"]
                               if n.get("State") in ("pending", "available")]),
        "internet_gateways": snake(ec2.describe_internet_gateways(
            Filters=[{"Name": "attachment.vpc-id", "Values": [vpc["vpc_id"]]}])["InternetGateways"]),
        "instances": snake(instances),
        "albs": snake(albs),
        "key_pairs": {k["KeyName"]: k for k in keys},
    }


# --------------------------------------------------------------------------- the plan


@dataclass
class Node:
    """One lab container standing in for something in the VPC."""

    name: str            # Name tag (instances) or the service's name
    kind: str            # instance | alb | nat_gateway | internet_gateway | vpn_gateway | internet
    ip: str
    container: str = ""
    subnet: str = ""     # subnet Name tag
    role: str = ""
    resource_id: str = ""
    mac: str = ""
    default_via: str | None = None
    public: bool = False  # reachable from / to the internet through the IGW
    security_groups: list[str] = field(default_factory=list)
    source_dest_check: bool = True
    key_name: str = ""   # the EC2 key pair the instance was launched with
    notes: list[str] = field(default_factory=list)


def _name(resource: dict, default: str) -> str:
    """A node's name: its Name tag when that is a safe host name, else its ID (tags are untrusted: the name
    becomes a container name, a hostname and a comment in generated scripts)."""
    name = topology.tag_value(resource, "Name", default) or default
    return name if fumidai_ssh.safe_host_name(name) else default


def _reserved(subnet: ipaddress.IPv4Network) -> set:
    """AWS keeps the first four and the last address of every subnet."""
    return {subnet[i] for i in range(4)} | {subnet.broadcast_address}


def _free_address(network: ipaddress.IPv4Network, taken: set, exclude_subnets=()) -> ipaddress.IPv4Address:
    """The highest address of network that nothing uses (AWS hands out from the bottom)."""
    for offset in range(network.num_addresses - 2, 0, -1):
        candidate = network[offset]
        if candidate in taken or any(candidate in s for s in exclude_subnets):
            continue
        return candidate
    raise LabError(f"no free address left in {network}")


def build_plan(topo: dict, office: ipaddress.IPv4Network) -> dict:
    vpc = topo["vpc"]
    vpc_cidr = ipaddress.ip_network(vpc["cidr_block"])
    subnets = {s["subnet_id"]: s for s in topo["subnets"]}
    subnet_nets = [ipaddress.ip_network(s["cidr_block"]) for s in subnets.values()]
    taken = {ipaddress.ip_address(i["private_ip_address"]) for i in topo["instances"]}

    igws = topo["internet_gateways"]
    # The IGW and the VPN router are not in any subnet: they get the top
    # addresses of the VPC CIDR that no subnet covers.
    igw_ip = _free_address(vpc_cidr, taken, subnet_nets)
    taken.add(igw_ip)
    vgw_ip = _free_address(vpc_cidr, taken, subnet_nets)
    taken.add(vgw_ip)

    nodes: list[Node] = []
    if igws:
        nodes.append(Node(name="internet-gateway", kind="internet_gateway", ip=str(igw_ip),
                          resource_id=igws[0]["internet_gateway_id"]))
    nodes.append(Node(name="vpn-gateway", kind="vpn_gateway", ip=str(vgw_ip)))

    nat_nodes = {}
    for nat in topo["nat_gateways"]:
        subnet = subnets[nat["subnet_id"]]
        subnet_net = ipaddress.ip_network(subnet["cidr_block"])
        addresses = nat.get("nat_gateway_addresses") or [{}]
        moto_ip = addresses[0].get("private_ip")
        node = Node(name=_name(nat, nat["nat_gateway_id"]), kind="nat_gateway", ip="",
                    subnet=_name(subnet, subnet["subnet_id"]), resource_id=nat["nat_gateway_id"],
                    public=bool(addresses[0].get("public_ip")))
        if moto_ip and ipaddress.ip_address(moto_ip) in subnet_net:
            node.ip = moto_ip
        else:
            # Plain moto 5.2 gives a NAT gateway a random 10.x address outside
            # its subnet (lab/moto_server.py fixes that); AWS takes one
            # from the subnet. Use a free one there.
            node.ip = str(_free_address(subnet_net, taken | _reserved(subnet_net)))
            node.notes.append(f"moto reported private IP {moto_ip}, outside {subnet_net}; the lab uses {node.ip}")
        taken.add(ipaddress.ip_address(node.ip))
        nat_nodes[nat["nat_gateway_id"]] = node
        nodes.append(node)

    instance_nodes = {}
    for inst in sorted(topo["instances"], key=lambda i: _name(i, i["instance_id"])):
        eni = (inst.get("network_interfaces") or [{}])[0]
        groups = [g["group_id"] for g in (eni.get("groups") or inst.get("security_groups") or [])]
        node = Node(name=_name(inst, inst["instance_id"]), kind="instance", ip=inst["private_ip_address"],
                    subnet=_name(subnets[inst["subnet_id"]], inst["subnet_id"]),
                    role=topology.tag_value(inst, "Role", "") or "", resource_id=inst["instance_id"],
                    mac=eni.get("mac_address", ""), public=bool(inst.get("public_ip_address")),
                    security_groups=groups, source_dest_check=inst.get("source_dest_check", True) is not False,
                    key_name=inst.get("key_name") or "")
        instance_nodes[inst["instance_id"]] = node
        nodes.append(node)

    albs = []
    for alb in topo["albs"]:
        alb_subnets = sorted((subnets[z["subnet_id"]] for z in alb.get("availability_zones") or []),
                             key=lambda s: s["availability_zone"])
        if not alb_subnets:
            raise LabError(f"load balancer {alb['load_balancer_name']} has no subnets")
        # moto's ALB has no address: the lab puts its HAProxy at the top free
        # address of the ALB's first subnet (sorted by AZ).
        first = ipaddress.ip_network(alb_subnets[0]["cidr_block"])
        alb_ip = _free_address(first, taken | _reserved(first))
        taken.add(alb_ip)
        node = Node(name=alb["load_balancer_name"], kind="alb", ip=str(alb_ip),
                    subnet=_name(alb_subnets[0], alb_subnets[0]["subnet_id"]),
                    resource_id=alb["load_balancer_arn"], public=alb.get("scheme") == "internet-facing",
                    security_groups=list(alb.get("security_groups") or []))
        nodes.append(node)
        albs.append((alb, node))

    # Default routes: what each subnet's route table in moto says.
    def route_via(subnet_id: str) -> str | None:
        target = topology.route_target(topology.default_route(
            topology.route_table_for_subnet(subnet_id, vpc["vpc_id"], topo["route_tables"])))
        if not target:
            return None
        kind, ident = target
        if kind == "internet_gateway":
            return str(igw_ip)
        if kind == "nat_gateway" and ident in nat_nodes:
            return nat_nodes[ident].ip
        if kind == "instance" and ident in instance_nodes:
            return instance_nodes[ident].ip
        if kind == "network_interface":
            for inst in topo["instances"]:
                if any(e.get("network_interface_id") == ident for e in inst.get("network_interfaces") or []):
                    return instance_nodes[inst["instance_id"]].ip
        return None

    subnet_by_name = {_name(s, s["subnet_id"]): s["subnet_id"] for s in subnets.values()}
    for node in nodes:
        if node.subnet:
            node.default_via = route_via(subnet_by_name[node.subnet])
    seen: set[str] = set()
    for node in nodes:
        if node.name in seen and node.resource_id:
            node.notes.append(f"another node is already named {node.name}: this one is {node.resource_id}")
            node.name = node.resource_id.split("/")[-1]
        seen.add(node.name)
        node.container = f"{PREFIX}-{node.name}"

    members: dict[str, list[str]] = {}
    for node in nodes:
        for group in node.security_groups:
            members.setdefault(group, []).append(node.ip)

    office_ips = list(office.hosts())
    return {
        "vpc_id": vpc["vpc_id"],
        "vpc_cidr": str(vpc_cidr),
        "office_cidr": str(office),
        "office_host_ip": str(office_ips[0]),
        "office_router_ip": str(office_ips[-1]),
        "internet_cidr": str(INTERNET_CIDR),
        "internet_gateway_ip": str(INTERNET_GW_IP),
        "internet_server_ip": str(INTERNET_SERVER_IP),
        "igw_ip": str(igw_ip),
        "vgw_ip": str(vgw_ip),
        "nodes": [asdict(n) for n in nodes],
        "sg_members": members,
        "security_groups": {g["group_id"]: g for g in topo["security_groups"]},
        "albs": [{"node": node.name, "dns_name": alb["dns_name"], "ip": node.ip,
                  "listeners": alb.get("listeners") or [], "target_groups": alb.get("target_groups") or []}
                 for alb, node in albs],
        "key_pairs": topo["key_pairs"],
    }


# --------------------------------------------------------------------------- rendering


def _sg_rules(plan: dict, group_ids: list[str], direction: str) -> list[str]:
    """iptables rule specs (without -A CHAIN) for the ingress or egress rules of the groups."""
    key = "ip_permissions" if direction == "in" else "ip_permissions_egress"
    peer = "-s" if direction == "in" else "-d"
    rules = []
    for group_id in group_ids:
        group = plan["security_groups"].get(group_id)
        if not group:
            raise LabError(f"security group {group_id} is attached but not described by moto")
        for perm in group.get(key) or []:
            proto = str(perm.get("ip_protocol", "-1")).lower()
            proto = {"6": "tcp", "17": "udp", "1": "icmp"}.get(proto, proto)
            match = []
            if proto not in ("-1", "all"):
                match = ["-p", proto]
                low, high = perm.get("from_port"), perm.get("to_port")
                if proto in ("tcp", "udp") and low is not None and low != -1:
                    match += ["--dport", f"{low}:{high}" if high != low else str(low)]
                elif proto == "icmp" and low not in (None, -1):
                    match += ["--icmp-type", f"{low}/{high}" if high not in (None, -1) else str(low)]
            peers = [r["cidr_ip"] for r in perm.get("ip_ranges") or []]
            for pair in perm.get("user_id_group_pairs") or []:
                peers += plan["sg_members"].get(pair["group_id"], [])
            # The group's name is free text from the API: only a safe, short form goes into the comment.
            name = re.sub(r"[^A-Za-z0-9._-]", "_", str(group.get("group_name") or ""))[:48]
            label = f"{group_id} {name}".strip()
            for address in peers:
                rules.append(" ".join([peer, address, *match, "-m comment --comment", shlex.quote(label), "-j RETURN"]))
    return rules


NET_SCRIPT_HEAD = """#!/bin/sh
# Generated by lab/fumidai_lab.py from moto's state. What AWS does outside an
# instance: VPC routes, security groups, source/destination check. Re-run at
# every boot (fumidai-lab-net.service), after netfilter-persistent.
set -eu
for key in all.accept_redirects default.accept_redirects all.send_redirects default.send_redirects; do
  # The VPC router sends no ICMP redirects; a Linux router would, and its
  # clients would then bypass it.
  sysctl -qw "net.ipv4.conf.${key}=0"
done
chain() { iptables -w -N "$1" 2>/dev/null || iptables -w -F "$1"; }
jump_first() { while iptables -w -D "$1" -j "$2" 2>/dev/null; do :; done; iptables -w -I "$1" "$3" -j "$2"; }
"""


def render_net_script(plan: dict, node: dict) -> str:
    lines = [NET_SCRIPT_HEAD]
    if node["default_via"]:
        lines.append(f"ip route replace default via {node['default_via']} dev eth0")
    else:
        lines.append("ip route del default 2>/dev/null || true  # no route to the internet in this subnet")
    lines.append(f"ip route replace {plan['office_cidr']} via {plan['vgw_ip']} dev eth0  # VGW route to the office")
    if node["kind"] in ("instance", "alb"):
        lines += ["", "# Security groups: stateful, allow-lists, default deny.",
                  "chain AWS-SG-IN", "chain AWS-SG-OUT", "chain AWS-SRC-DST-CHECK"]
        for chain_name, direction, iface in (("AWS-SG-IN", "in", "-i lo"), ("AWS-SG-OUT", "out", "-o lo")):
            lines.append(f"iptables -w -A {chain_name} -m conntrack --ctstate ESTABLISHED,RELATED -j RETURN")
            lines.append(f"iptables -w -A {chain_name} {iface} -j RETURN")
            lines += [f"iptables -w -A {chain_name} {rule}" for rule in
                      _sg_rules(plan, node["security_groups"], direction)]
            lines.append(f"iptables -w -A {chain_name} -j DROP")
        if node["source_dest_check"]:
            lines.append("iptables -w -A AWS-SRC-DST-CHECK -j DROP  # source/dest check on: nothing is forwarded")
        lines += ["jump_first INPUT AWS-SG-IN 1", "jump_first OUTPUT AWS-SG-OUT 1",
                  "jump_first FORWARD AWS-SRC-DST-CHECK 1", "jump_first FORWARD AWS-SG-IN 2",
                  "jump_first FORWARD AWS-SG-OUT 3"]
    if node["kind"] == "nat_gateway":
        vpc = plan["vpc_cidr"]
        lines += ["", "# The managed NAT gateway: translate the VPC's traffic to its own address.",
                  "chain LAB-NAT-GW", "jump_first FORWARD LAB-NAT-GW 1",
                  "iptables -w -A LAB-NAT-GW -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
                  f"iptables -w -A LAB-NAT-GW -s {vpc} ! -d {vpc} -j ACCEPT",
                  "iptables -w -A LAB-NAT-GW -j DROP",
                  f"iptables -w -t nat -C POSTROUTING -s {vpc} ! -d {vpc} -j MASQUERADE 2>/dev/null ||"
                  f" iptables -w -t nat -A POSTROUTING -s {vpc} ! -d {vpc} -j MASQUERADE"]
    if node["kind"] == "instance":
        key = _authorized_key(plan, node)
        lines += ["", "# The EC2 key pair, authorised for the image's user (what cloud-init does).",
                  f"home=$(getent passwd {IMAGE_USER} | cut -d: -f6)",
                  f'install -d -m 0700 -o {IMAGE_USER} -g {IMAGE_USER} "$home/.ssh"',
                  f'grep -qxF {shlex.quote(key)} "$home/.ssh/authorized_keys" 2>/dev/null ||'
                  f' echo {shlex.quote(key)} >> "$home/.ssh/authorized_keys"',
                  f'chown {IMAGE_USER}:{IMAGE_USER} "$home/.ssh/authorized_keys"',
                  'chmod 0600 "$home/.ssh/authorized_keys"']
    return "\n".join(lines) + "\n"


def render_router_script(plan: dict, node: dict) -> str:
    """The internet gateway and the VPN router (no security groups: they are not instances)."""
    lines = [NET_SCRIPT_HEAD, "ip route del default 2>/dev/null || true", "chain LAB-ROUTER",
             "jump_first FORWARD LAB-ROUTER 1",
             "iptables -w -A LAB-ROUTER -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT"]
    if node["kind"] == "internet_gateway":
        # Only what has a public IP (or EIP) talks to the internet; a private
        # instance that routed here directly would get nowhere, as on AWS.
        for other in plan["nodes"]:
            if other["public"] and other["kind"] != "internet_gateway":
                lines.append(f"iptables -w -A LAB-ROUTER -s {other['ip']} -d {plan['internet_cidr']} -j ACCEPT"
                             f"  # {other['name']}")
                lines.append(f"iptables -w -A LAB-ROUTER -s {plan['internet_cidr']} -d {other['ip']} -j ACCEPT")
    else:
        lines.append(f"iptables -w -A LAB-ROUTER -s {plan['office_cidr']} -d {plan['vpc_cidr']} -j ACCEPT")
    lines.append("iptables -w -A LAB-ROUTER -j DROP")
    return "\n".join(lines) + "\n"


def _authorized_key(plan: dict, node: dict) -> str:
    """The public key of the key pair the instance was launched with (what cloud-init installs)."""
    if not node["key_name"]:
        raise LabError(f"instance {node['name']} was launched without a key pair: nobody could log in")
    pair = plan["key_pairs"].get(node["key_name"])
    if pair is None:
        raise LabError(f"instance {node['name']} names key pair {node['key_name']!r}, which moto does not know")
    key = (pair.get("PublicKey") or "").strip()
    if not key:
        # moto returns an imported key with IncludePublicKey (AWS does too); older servers may not.
        key = KEY_FILE.with_suffix(".pub").read_text().strip()
    return key


def _check_haproxy_inputs(group: dict) -> None:
    """Strings from the API become HAProxy words: only the forms AWS itself accepts get through."""
    def refuse(what: str, value: object) -> None:
        raise LabError(f"target group {fumidai_ssh.shown(group.get('target_group_name'))}: {what} "
                       f"{fumidai_ssh.shown(value)} is not a form AWS accepts")
    if not re.fullmatch(r"[A-Za-z0-9-]{1,32}", str(group.get("target_group_name"))):
        refuse("name", group.get("target_group_name"))
    if not re.fullmatch(r"/[A-Za-z0-9._~/%?=&:@+$'-]{0,1023}", str(group.get("health_check_path") or "/")):
        refuse("health check path", group.get("health_check_path"))
    if not re.fullmatch(r"[0-9]{3}(-[0-9]{3})?(,[0-9]{3})*", str((group.get("matcher") or {}).get("http_code", "200"))):
        refuse("success codes", (group.get("matcher") or {}).get("http_code"))
    for target in group.get("targets") or []:
        if not (host_keys.valid_instance_id(target["id"]) or _is_ipv4(target["id"])):
            refuse("target", target["id"])


def _is_ipv4(value: object) -> bool:
    try:
        return isinstance(ipaddress.ip_address(str(value)), ipaddress.IPv4Address)
    except ValueError:
        return False


def render_haproxy(plan: dict, alb: dict) -> str:
    """HAProxy from the ALB's listeners and target groups, with real health checks."""
    addresses = {n["resource_id"]: n["ip"] for n in plan["nodes"] if n["kind"] == "instance"}
    lines = ["# Generated by lab/fumidai_lab.py from moto's load balancer, listeners and target groups.",
             "global", "    log stdout format raw local0 info",
             # The lab's local AWS API reads target health here (DescribeTargetHealth = what HAProxy sees).
             f"    stats socket {ALB_STATS_DIR}/stats.sock mode 600 level user",
             "defaults", "    mode http", "    log global", "    option httplog", "    timeout connect 3s",
             "    timeout client 60s", "    timeout server 60s",
             "    # A target that refuses a connection is retried on another (an ALB stops sending to it",
             "    # within its health check; retrying keeps the lab's answers continuous meanwhile).",
             "    retries 2", "    option redispatch 1", "",
             "listen stats", "    bind 127.0.0.1:8404", "    stats enable", "    stats uri /stats", ""]
    groups = {g["target_group_arn"]: g for g in alb["target_groups"]}
    for group in groups.values():
        _check_haproxy_inputs(group)
    for listener in alb["listeners"]:
        if listener.get("protocol") != "HTTP":
            lines.append(f"# listener {listener.get('protocol')}:{listener.get('port')} skipped:"
                         " the lab has no certificates")
            continue
        forward = next((a for a in listener.get("default_actions") or [] if a.get("type") == "forward"), None)
        lines += [f"frontend listener_{listener['port']}", f"    bind {alb['ip']}:{listener['port']}"]
        if forward and forward.get("target_group_arn") in groups:
            lines.append(f"    default_backend {groups[forward['target_group_arn']]['target_group_name']}")
        else:
            lines.append("    http-request return status 503")
        lines.append("")
    for group in groups.values():
        path = group.get("health_check_path") or "/"
        matcher = (group.get("matcher") or {}).get("http_code", "200")
        lines += [f"backend {group['target_group_name']}", "    balance roundrobin",
                  f"    option httpchk GET {path}"]
        if "-" in matcher:
            low, high = matcher.split("-", 1)
            codes = "|".join(str(c) for c in range(int(low), int(high) + 1))
            lines.append(f"    http-check expect rstatus ^({codes})$")
        else:
            lines.append(f"    http-check expect rstatus ^({'|'.join(c.strip() for c in matcher.split(','))})$")
        lines.append(f"    timeout check {group.get('health_check_timeout_seconds', 5)}s")
        lines.append(f"    default-server inter {group.get('health_check_interval_seconds', 30)}s"
                     f" rise {group.get('healthy_threshold_count', 5)}"
                     f" fall {group.get('unhealthy_threshold_count', 2)}")
        check_port = group.get("health_check_port", "traffic-port")
        for target in group.get("targets") or []:
            address = addresses.get(target["id"], target["id"])
            port = target.get("port") or group.get("port")
            extra = "" if check_port in ("traffic-port", None) else f" port {check_port}"
            lines.append(f"    server {target['id']} {address}:{port} check{extra}")
        lines.append("")
    return "\n".join(lines)


INTERNET_SERVER = '''#!/usr/bin/env python3
"""The lab internet's test server: answers and logs every request's source address."""
import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        source = self.client_address[0]
        with open("/lab/requests.log", "a", encoding="utf-8") as log:
            log.write(f"{datetime.datetime.now(datetime.timezone.utc).isoformat()} {source} {self.path}\\n")
        body = f"{source}\\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


ThreadingHTTPServer(("0.0.0.0", 80), Handler).serve_forever()
'''

UNIT = """[Unit]
Description=fumidai lab: VPC routes, security groups, key pair (what AWS does outside the instance)
DefaultDependencies=no
# After the roles' own firewall units too, so the SG chains are hooked first:
# AWS filters before the instance sees a packet.
After=local-fs.target systemd-sysctl.service netfilter-persistent.service
After=fumidai-nat-rules.service bastion-ssh-ratelimit.service
Before=network-pre.target ssh.service
Wants=network-pre.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/sbin/fumidai-lab-net

[Install]
WantedBy=multi-user.target
"""


def instance_payload(script: str) -> bytes:
    """A tar of the files the instance gets before it boots (its 'user data')."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        def add(path: str, data: str, mode: int) -> None:
            info = tarfile.TarInfo(path)
            info.size, info.mode = len(data.encode()), mode
            tar.addfile(info, io.BytesIO(data.encode()))
        add("usr/local/sbin/fumidai-lab-net", script, 0o755)
        add("etc/systemd/system/fumidai-lab-net.service", UNIT, 0o644)
        link = tarfile.TarInfo("etc/systemd/system/multi-user.target.wants/fumidai-lab-net.service")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/systemd/system/fumidai-lab-net.service"
        tar.addfile(link)
    return buf.getvalue()


# --------------------------------------------------------------------------- host networking


def host_route(action: str, spec: list[str]) -> None:
    run(["ip", "route", action, *spec], check=False)


def prohibit_routes(cidrs: list[str]) -> None:
    existing = out(["ip", "route", "show", "type", "prohibit"])
    for cidr in cidrs:
        if f"prohibit {cidr} metric {PROHIBIT_METRIC}" not in existing:
            run(["ip", "route", "add", "prohibit", cidr, "metric", str(PROHIBIT_METRIC)])
            log(f"prohibit route for {cidr} (nothing for it leaves the machine)")


def ensure_veth(pair: tuple[str, str]) -> None:
    if run(["ip", "link", "show", pair[0]], check=False).returncode != 0:
        run(["ip", "link", "add", pair[0], "type", "veth", "peer", "name", pair[1]])
    for name in pair:
        run(["ip", "link", "set", name, "up"])


def podman(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return run(["podman", *args], **kwargs)


def ensure_network(name: str, *args: str) -> None:
    if podman("network", "exists", name, check=False).returncode != 0:
        podman("network", "create", "--label", f"{LABEL}=1", *args, name)


def container_state(name: str) -> tuple[str | None, str | None]:
    proc = podman("inspect", "--type", "container", "--format",
                  '{{.State.Status}} {{index .Config.Labels "' + LABEL + '.hash"}}', name, check=False)
    if proc.returncode != 0:
        return None, None
    status, _, digest = proc.stdout.decode().strip().partition(" ")
    return status, digest


COMMON_RUN = ["--cap-add", "NET_ADMIN", "--security-opt", "unmask=/proc/sys", "--dns", "none",
              "--sysctl", "net.ipv6.conf.all.disable_ipv6=1", "--sysctl", "net.ipv4.conf.all.accept_redirects=0",
              "--sysctl", "net.ipv4.conf.all.send_redirects=0", "--sysctl", "net.ipv4.conf.default.send_redirects=0"]


def ensure_container(node: dict, args: list[str], payload: bytes | None = None, identity: object = None) -> bool:
    """Create and start a container unless one with the same definition runs. True when (re)created.

    ``identity``: what defines the container when not all of its arguments and payload do (an instance's
    network script changes in place, see apply_net_in_place).
    """
    defined = identity if identity is not None else [args, payload.hex() if payload else ""]
    digest = hashlib.sha256(json.dumps(defined).encode()).hexdigest()[:16]
    status, current = container_state(node["container"])
    if status == "running" and current == digest:
        return False
    if status is not None:
        podman("rm", "-f", "-t", "0", node["container"])
    podman("create", "--name", node["container"], "--label", f"{LABEL}=1", "--label", f"{LABEL}.hash={digest}",
           "--label", f"{LABEL}.kind={node['kind']}", *args)
    if payload:
        podman("cp", "-", f"{node['container']}:/", input_bytes=payload)
    podman("start", node["container"])
    return True


def network_arg(network: str, ip: str, mac: str = "") -> str:
    return f"{network}:ip={ip}" + (f",mac={mac}" if mac else "")


def write_file(path: Path, text: str, mode: int = 0o644) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)
    return path


def build_hosts(plan: dict) -> None:
    prohibit_routes([plan["vpc_cidr"], plan["office_cidr"], plan["internet_cidr"]])
    ensure_veth(VETH_VPC)
    ensure_veth(VETH_INTERNET)
    igw_ip = plan["igw_ip"]
    ensure_network(NET_VPC, "-d", "macvlan", "-o", f"parent={VETH_VPC[0]}", "--subnet", plan["vpc_cidr"],
                   "--gateway", igw_ip)
    ensure_network(NET_INTERNET, "-d", "macvlan", "-o", f"parent={VETH_INTERNET[0]}", "--subnet",
                   plan["internet_cidr"], "--gateway", plan["internet_gateway_ip"])
    # A bridge without masquerading: the host gets the office address on it.
    ensure_network(NET_OFFICE, "--internal", "--subnet", plan["office_cidr"], "--gateway", plan["office_host_ip"])

    remove_stale_instances(plan)
    previous, created = {}, set()
    for node in plan["nodes"]:
        if node["kind"] in ("instance", "alb", "nat_gateway"):
            # Each node's generated files live in .cache/lab/nodes/<name>/.
            path = CACHE / "nodes" / node["name"] / "net.sh"
            previous[node["name"]] = path.read_text() if path.exists() else None
            write_file(path, render_net_script(plan, node), 0o755)

    for node in plan["nodes"]:
        kind, ip = node["kind"], node["ip"]
        files = CACHE / "nodes" / node["name"]
        base = ["--hostname", node["name"], *COMMON_RUN]
        if kind == "internet_gateway":
            write_file(files / "net.sh", render_router_script(plan, node), 0o755)
            args = [*base, "--network", network_arg(NET_VPC, ip), "--network",
                    network_arg(NET_INTERNET, plan["internet_gateway_ip"]), "--sysctl", "net.ipv4.ip_forward=1",
                    "-v", f"{files}:/lab:ro", IMAGE, "sh", "-c", "/lab/net.sh && exec sleep infinity"]
        elif kind == "vpn_gateway":
            write_file(files / "net.sh", render_router_script(plan, node), 0o755)
            args = [*base, "--network", network_arg(NET_VPC, ip), "--network",
                    network_arg(NET_OFFICE, plan["office_router_ip"]), "--sysctl", "net.ipv4.ip_forward=1",
                    "-v", f"{files}:/lab:ro", IMAGE, "sh", "-c", "/lab/net.sh && exec sleep infinity"]
        elif kind == "nat_gateway":
            args = [*base, "--network", network_arg(NET_VPC, ip), "--sysctl", "net.ipv4.ip_forward=1",
                    "-v", f"{files}:/lab:ro", IMAGE, "sh", "-c", "/lab/net.sh && exec sleep infinity"]
        elif kind == "alb":
            alb = next(a for a in plan["albs"] if a["node"] == node["name"])
            write_file(files / "haproxy.cfg", render_haproxy(plan, alb))
            stats_dir = AWS_DIR / "alb" / node["name"]
            stats_dir.mkdir(parents=True, exist_ok=True)
            args = [*base, "--network", network_arg(NET_VPC, ip), "--sysctl", "net.ipv4.ip_forward=0",
                    "-v", f"{files}:/lab:ro", "-v", f"{stats_dir}:{ALB_STATS_DIR}", IMAGE, "sh", "-c",
                    "/lab/net.sh && haproxy -c -q -f /lab/haproxy.cfg && exec haproxy -W -db -f /lab/haproxy.cfg"]
        else:  # instance
            # -t gives the instance a console (/dev/console): what it prints there is its EC2 console output.
            args = [*base, "-t", "--network", network_arg(NET_VPC, ip, node["mac"]),
                    "--sysctl", "net.ipv4.ip_forward=0", IMAGE]
        script = (files / "net.sh").read_text() if kind in ("instance", "alb", "nat_gateway") else None
        payload = instance_payload(script) if kind == "instance" else None
        # An instance is rebuilt only when its own definition changes; a changed security group membership
        # (another instance joined its group) is applied in place, as AWS does, keeping its disk and host keys.
        changed = ensure_container(node, args, payload, identity=[args, UNIT] if kind == "instance" else None)
        if not changed and script is not None and previous.get(node["name"]) != script:
            apply_net_in_place(node, CACHE / "nodes" / node["name"] / "net.sh")
        if changed and kind == "instance":
            created.add(node["container"])
            # A rebuilt host has new host keys under the same instance ID (on EC2 a rebuilt instance has a new
            # ID): drop its pin and its old console, so provisioning pins what the new host prints.
            unpin(node["resource_id"])
            (CONSOLE_DIR / node["resource_id"]).unlink(missing_ok=True)
        log(f"{node['container']:<28} {ip:<15} {kind}{'' if changed else ' (unchanged)'}")
        for note in node["notes"]:
            log(f"  note: {note}")

    internet_dir = CACHE / "nodes" / "internet"
    write_file(internet_dir / "server.py", INTERNET_SERVER, 0o755)
    (internet_dir / "requests.log").touch()
    internet = {"name": "internet", "kind": "internet", "container": f"{PREFIX}-internet",
                "ip": plan["internet_server_ip"]}
    ensure_container(internet, ["--hostname", "internet", *COMMON_RUN, "--network",
                                network_arg(NET_INTERNET, plan["internet_server_ip"]), "-v", f"{internet_dir}:/lab",
                                IMAGE, "sh", "-c",
                                f"ip route replace {plan['vpc_cidr']} via {plan['internet_gateway_ip']}"
                                " && exec python3 /lab/server.py"])
    log(f"{internet['container']:<28} {plan['internet_server_ip']:<15} lab internet HTTP server")

    # The office: this machine reaches the VPC through the VPN router.
    host_route("replace", [plan["vpc_cidr"], "via", plan["office_router_ip"], "metric", str(ROUTE_METRIC)])
    log(f"route {plan['vpc_cidr']} via {plan['office_router_ip']} (VPN router) from {plan['office_host_ip']}")
    wait_for_instances(plan)
    publish_consoles(plan, created)


def unpin(instance_id: str) -> None:
    """Forget an instance's pinned host key (the lab rebuilt it)."""
    pinned = host_keys.read_known_hosts(str(KNOWN_HOSTS))
    if pinned.pop(instance_id, None) is not None:
        host_keys.write_known_hosts(str(KNOWN_HOSTS), pinned)
        log(f"  {instance_id}: rebuilt, its pinned host key is dropped")


def publish_consoles(plan: dict, booting: set[str]) -> None:
    """Give the local AWS API each instance's console (podman logs of its tty since its last boot, as EC2
    posts the console of the current boot), once it printed its host keys.

    This is the channel provisioning pins host keys from, as it reads EC2's GetConsoleOutput on AWS.
    ``booting``: containers just created, whose first boot prints the keys (cloud-init does it once per
    instance, so a container that merely restarted prints none: the console published from the boot that
    printed them stays).
    """
    CONSOLE_DIR.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + CONSOLE_TIMEOUT
    for node in plan["nodes"]:
        if node["kind"] != "instance":
            continue
        booted = out(["podman", "inspect", "--format", "{{.State.StartedAt.Unix}}", node["container"]])
        while True:
            console = podman("logs", "--since", booted, node["container"]).stdout.decode(errors="replace")
            try:
                printed = host_keys.parse_console_host_keys(console)
            except host_keys.HostKeyError as exc:
                raise LabError(f"{node['name']}: {exc}") from None
            if printed or node["container"] not in booting:
                break
            if time.monotonic() > deadline:
                raise LabError(f"{node['name']} printed no SSH host keys on its console within {CONSOLE_TIMEOUT}s "
                               "(fumidai-keys-to-console.service in the image)")
            time.sleep(1)
        path = CONSOLE_DIR / node["resource_id"]
        published = path.read_text() if path.exists() else None
        if not printed and published and host_keys.parse_console_host_keys(published):
            # A restart prints no keys (first boot only): the console still shows the boot that did, as
            # EC2's "Get system log" keeps the first boot's keys readable for re-pinning a running instance.
            continue
        if published != console:
            write_file(path, console, 0o600)
    log(f"consoles published to the local AWS API ({CONSOLE_DIR.relative_to(ROOT)})")


def wait_for_instances(plan: dict, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    for node in plan["nodes"]:
        if node["kind"] != "instance":
            continue
        while True:
            proc = podman("exec", node["container"], "systemctl", "is-active", "fumidai-lab-net.service", "ssh.service",
                          check=False)
            states = proc.stdout.decode().split()
            if states == ["active", "active"]:
                break
            if "failed" in states or time.monotonic() > deadline:
                journal = podman("exec", node["container"], "journalctl", "-b", "--no-pager", "-n", "30", "-u",
                                 "fumidai-lab-net.service", "-u", "ssh.service", check=False).stdout.decode()
                raise LabError(f"{node['name']} did not come up (fumidai-lab-net, ssh: {states}):\n{journal}")
            time.sleep(1)
    bastions = [n for n in plan["nodes"] if n["role"] == "bastion"]
    for node in bastions:
        wait_for_port(node["ip"], 22, deadline)
        log(f"bastion {node['ip']}:22 answers from the office")


def wait_for_port(address: str, port: int, deadline: float) -> None:
    while True:
        try:
            with socket.create_connection((address, port), timeout=2):
                return
        except OSError as exc:
            if time.monotonic() > deadline:
                raise LabError(f"{address}:{port} is not reachable from the office: {exc}") from exc
            time.sleep(1)


# --------------------------------------------------------------------------- steps


def ansible_env() -> dict[str, str]:
    venv_bin = str(Path(sys.executable).parent)
    return {**os.environ, **aws_env(), "PATH": f"{venv_bin}:{os.environ.get('PATH', '')}",
            "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
            # The inventory plugin: reach the bastion at its private IP (from the office,
            # through the VPN), never at the public IP moto invented.
            "FUMIDAI_BASTION_ADDRESS": "private_ip",
            "FUMIDAI_SSH_PRIVATE_KEY": str(KEY_FILE),
            # Pinned host keys of the lab's hosts (inventory plugin, playbooks, ssh_config.yml).
            "FUMIDAI_KNOWN_HOSTS": str(KNOWN_HOSTS),
            # The lab's provisioning outputs next to the lab, not in the project's shared
            # .cache/outputs.yml that any other provisioning run on this machine rewrites.
            "FUMIDAI_OUTPUTS_FILE": str(CACHE / "outputs.yml")}


def playbook(name: str, *extra: str) -> None:
    cmd = ["ansible-playbook", name, "-e", f"@{LAB_VARS.relative_to(ROOT)}"]
    if WEB_INSTANCES_FILE.exists():
        cmd += ["-e", f"@{WEB_INSTANCES_FILE.relative_to(ROOT)}"]
    cmd += extra
    log("$ " + shlex.join(cmd))
    proc = subprocess.run(cmd, cwd=ROOT, env=ansible_env())
    if proc.returncode != 0:
        raise LabError(f"{name} failed (exit {proc.returncode}); its output is above")


def step_keys() -> None:
    if KEY_FILE.exists():
        log(f"{KEY_FILE.relative_to(ROOT)} exists")
        return
    CACHE.mkdir(parents=True, exist_ok=True)
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "fumidai-lab", "-f", str(KEY_FILE)])
    log(f"generated {KEY_FILE.relative_to(ROOT)}")


def step_moto() -> None:
    state = moto_local.read_state()
    if state and state.get("lab_dir") != str(AWS_DIR):
        raise LabError(f"a moto server started outside the lab runs at {state['endpoint']}: it cannot show the lab "
                       "hosts' consoles; stop it first (python -m lab.moto_local stop)")
    AWS_DIR.mkdir(parents=True, exist_ok=True)
    if moto_local.main(["start", "--lab-dir", str(AWS_DIR)]) != 0:
        raise LabError("the moto server did not start (see .cache/moto/server.log)")


def step_provision(web_count: int | None = None) -> None:
    count = resolve_web_count(web_count)
    write_web_instances(count)
    log(f"{count} web server(s) ({WEB_INSTANCES_FILE.relative_to(ROOT)})")
    # The lab's hosts boot in the next step: their keys are pinned when site.yml provisions again (configure).
    playbook("fumidai.vpc.provision", "-e", "aws_host_keys_enabled=false")


def step_hosts() -> None:
    plan = build_plan(describe(), office_network())
    STATE_FILE.parent.mkdir(parents=True, exist_ok=True)
    # Written first: `down` must find the CIDRs even if building fails half way.
    STATE_FILE.write_text(json.dumps(plan, indent=2, default=str))
    write_env_file()
    build_hosts(plan)


def step_net() -> None:
    """Re-read moto and apply its routes, security groups and source/dest checks in place.

    What changing a route table, a security group or an instance attribute
    does on AWS: the running instances keep their disks and configuration (a
    `hosts` rebuild would replace a changed instance with a fresh one, losing
    what site.yml did). Instances, addresses and the ALB must be unchanged.
    """
    old = load_state()
    if not old:
        raise LabError("the lab is not up (make demo, or python -m lab.fumidai_lab up)")
    plan = build_plan(describe(), office_network())
    before = {n["name"]: (n["kind"], n["ip"]) for n in old["nodes"]}
    after = {n["name"]: (n["kind"], n["ip"]) for n in plan["nodes"]}
    if before != after:
        raise LabError("moto's instances or addresses changed since the hosts were built: "
                       "run `fumidai_lab.py step hosts` to rebuild them")
    STATE_FILE.write_text(json.dumps(plan, indent=2, default=str))
    changed = 0
    for node in plan["nodes"]:
        if node["kind"] in ("instance", "alb", "nat_gateway"):
            script = render_net_script(plan, node)
        elif node["kind"] in ("internet_gateway", "vpn_gateway"):
            script = render_router_script(plan, node)
        else:
            continue
        path = CACHE / "nodes" / node["name"] / "net.sh"
        if path.exists() and path.read_text() == script:
            continue
        write_file(path, script, 0o755)
        apply_net_in_place(node, path)
        changed += 1
        log(f"{node['container']:<28} {node['ip']:<15} re-applied")
    log(f"{changed} host(s) re-applied, the others unchanged")


def apply_net_in_place(node: dict, path: Path) -> None:
    """Re-apply a running node's routes and security groups from its (new) script, as AWS applies a changed
    route table or security group to running instances."""
    if node["kind"] == "instance":
        # The boot unit's script too, so a later restart keeps the new state.
        podman("cp", str(path), f"{node['container']}:/usr/local/sbin/fumidai-lab-net")
        podman("exec", node["container"], "systemctl", "restart", "fumidai-lab-net.service")
    else:
        podman("exec", node["container"], "/lab/net.sh")


def remove_stale_instances(plan: dict) -> None:
    """Remove the containers of instances that are gone from the local API (terminated)."""
    wanted = {n["container"] for n in plan["nodes"]}
    listed = out(["podman", "ps", "-a", "--format", "{{.Names}}", "--filter", f"label={LABEL}.kind=instance"])
    for container in listed.split():
        if container not in wanted:
            podman("rm", "-f", "-t", "0", container)
            log(f"{container:<28} removed (its instance is gone)")


def write_env_file() -> None:
    """`. .cache/lab/env.sh` gives a shell what the lab's ansible runs get."""
    env = ansible_env()
    keys = [*moto_local.environment("x"), "ANSIBLE_CONFIG", "FUMIDAI_BASTION_ADDRESS", "FUMIDAI_SSH_PRIVATE_KEY",
            "FUMIDAI_KNOWN_HOSTS", "FUMIDAI_OUTPUTS_FILE"]
    lines = ["# Generated by lab/fumidai_lab.py: the lab's AWS endpoint and inventory settings.",
             f"export PATH={shlex.quote(str(Path(sys.executable).parent))}:\"$PATH\""]
    lines += [f"export {key}={shlex.quote(env[key])}" for key in keys]
    # podman finds the lab's containers only with the project's storage config.
    lines += [f"export {key}={shlex.quote(env[key])}" for key in ("CONTAINERS_CONF", "CONTAINERS_STORAGE_CONF")]
    write_file(CACHE / "env.sh", "\n".join(lines) + "\n")


def step_configure() -> None:
    # site.yml ends by waiting until the ALB serves every web host; from the office the lab's ALB is reached
    # at its lab address (moto's DNS name is a real-world name, never used).
    state = load_state()
    extra = ["-e", f"aws_alb_ready_url=http://{state['albs'][0]['ip']}/"] if state and state.get("albs") else []
    playbook("site.yml", *extra)


def step_ssh_config() -> None:
    playbook("fumidai.vpc.ssh_config")


def step_consoles() -> None:
    """Publish what each host printed on its console since it booted (after a legitimate key rotation)."""
    plan = load_state()
    if not plan:
        raise LabError("the lab is not up (make demo, or python -m lab.fumidai_lab up)")
    publish_consoles(plan, booting=set())


STEP_FUNCS = {"keys": step_keys, "moto": step_moto, "provision": step_provision, "hosts": step_hosts,
              "configure": step_configure, "ssh-config": step_ssh_config, "net": step_net,
              "consoles": step_consoles}


def run_steps(steps: list[str], web_count: int | None = None) -> None:
    funcs = {**STEP_FUNCS, "provision": lambda: step_provision(web_count)}
    for number, name in enumerate(steps, 1):
        print(f"==> lab: step {number}/{len(steps)}: {STEP_TITLES[name]}", flush=True)
        started = time.monotonic()
        try:
            funcs[name]()
        except LabError as exc:
            raise LabError(f"step '{name}' ({STEP_TITLES[name]}) failed: {exc}") from exc
        log(f"done in {time.monotonic() - started:.0f}s")


def load_state() -> dict | None:
    try:
        return json.loads(STATE_FILE.read_text())
    except (OSError, ValueError):
        return None


def down(keep_moto: bool = False) -> None:
    """Remove containers, networks, veths and routes; then the AWS resources; then moto. Repeatable."""
    state = load_state() or {}
    print("==> lab down: containers", flush=True)
    ids = out(["podman", "ps", "-a", "-q", "--filter", f"label={LABEL}=1"]).split()
    if ids:
        podman("rm", "-f", "-t", "0", *ids)
    log(f"removed {len(ids)} container(s)")
    print("==> lab down: networks and routes", flush=True)
    if state.get("vpc_cidr") and state.get("office_router_ip"):
        host_route("del", [state["vpc_cidr"], "via", state["office_router_ip"], "metric", str(ROUTE_METRIC)])
    for network in (NET_VPC, NET_INTERNET, NET_OFFICE):
        if podman("network", "exists", network, check=False).returncode == 0:
            podman("network", "rm", "-f", network)
            log(f"removed network {network}")
    for pair in (VETH_VPC, VETH_INTERNET):
        if run(["ip", "link", "show", pair[0]], check=False).returncode == 0:
            run(["ip", "link", "del", pair[0]])
            log(f"removed veth {pair[0]}")
    if moto_local.read_state():
        if (ROOT / "playbooks" / "teardown.yml").exists():
            print("==> lab down: AWS resources on moto (playbooks/teardown.yml)", flush=True)
            try:
                playbook("fumidai.vpc.teardown")
            except LabError as exc:
                print(f"    warning: {exc}; moto's state goes with the server anyway", flush=True)
        if not keep_moto:
            print("==> lab down: moto", flush=True)
            moto_local.main(["stop"])
    print("==> lab down: prohibit routes (last)", flush=True)
    cidrs = [state.get("vpc_cidr"), state.get("office_cidr"), state.get("internet_cidr")]
    for cidr in filter(None, cidrs):
        host_route("del", ["prohibit", cidr, "metric", str(PROHIBIT_METRIC)])
        log(f"removed prohibit route for {cidr}")
    STATE_FILE.unlink(missing_ok=True)
    KNOWN_HOSTS.unlink(missing_ok=True)
    shutil.rmtree(AWS_DIR, ignore_errors=True)
    (CACHE / "env.sh").unlink(missing_ok=True)
    (CACHE / "outputs.yml").unlink(missing_ok=True)
    WEB_INSTANCES_FILE.unlink(missing_ok=True)
    shutil.rmtree(CACHE / "nodes", ignore_errors=True)


def show() -> int:
    state = load_state()
    if not state:
        print("the lab is not up (make demo, or python -m lab.fumidai_lab up)", file=sys.stderr)
        return 1
    print(f"VPC {state['vpc_cidr']} ({state['vpc_id']}); office {state['office_cidr']} "
          f"(this machine: {state['office_host_ip']}); lab internet {state['internet_cidr']}")
    for node in state["nodes"]:
        via = f" default via {node['default_via']}" if node["default_via"] else ""
        print(f"  {node['name']:<18} {node['ip']:<15} {node['kind']:<17} {node['subnet']}{via}")
    for alb in state["albs"]:
        print(f"  ALB {alb['dns_name']} -> {alb['ip']}")
    return 0


def preflight() -> None:
    if os.geteuid() != 0:
        raise LabError("the lab creates network interfaces and routes: run it as root")
    for tool in ("podman", "ip", "ssh", "ssh-keygen"):
        if not shutil.which(tool):
            raise LabError(f"{tool} is not installed (make setup installs what the lab needs)")
    if not os.environ.get("CONTAINERS_CONF"):
        raise LabError("podman is not pointed at the project's config: source scripts/podman-env.sh first")
    if podman("image", "exists", IMAGE, check=False).returncode != 0:
        raise LabError(f"image {IMAGE} is missing: run scripts/build-image.sh (make setup)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="action", required=True)
    up = sub.add_parser("up", help="every step, in order")
    up.add_argument("--until", choices=STEPS, default=STEPS[-1], help="stop after this step")
    web_count_help = (f"web servers to run (web01..webNN, 1-{MAX_WEB_COUNT}; default: {WEB_COUNT_ENV}, "
                      "else what the lab was provisioned with, else lab_web_count in lab/vars.yml)")
    up.add_argument("--web-count", type=int, help=web_count_help)
    step = sub.add_parser("step", help="run one step")
    step.add_argument("name", choices=[*STEPS, "net", "consoles"])
    step.add_argument("--web-count", type=int, help=web_count_help)
    dn = sub.add_parser("down", help="take everything down")
    dn.add_argument("--keep-moto", action="store_true", help="leave the moto server running")
    sub.add_parser("show", help="print the lab's addresses")
    args = parser.parse_args(argv)
    try:
        if args.action == "show":
            return show()
        preflight()
        web_count = getattr(args, "web_count", None)
        if web_count is not None:
            resolve_web_count(web_count)  # a bad count fails before anything is built
        if args.action == "up":
            run_steps(list(STEPS[: STEPS.index(args.until) + 1]), web_count)
        elif args.action == "step":
            run_steps([args.name], web_count)
        else:
            down(keep_moto=args.keep_moto)
    except LabError as exc:
        print(f"\nlab: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
