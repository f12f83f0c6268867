"""The plan: moto's VPC turned into lab nodes (containers) with addresses, default routes and security groups."""

from __future__ import annotations

import ipaddress
from dataclasses import asdict, dataclass, field

from ansible_collections.fumidai.vpc.plugins.module_utils import login, ssh_args, vpc_model

from lab import config
from lab.proc import LabError


@dataclass
class Node:
    """One lab container standing in for something in the VPC."""

    name: str            # Name tag (instances) or the service's name
    kind: str            # a key of lab.kinds.KINDS
    ip: str
    container: str = ""
    subnet: str = ""     # subnet Name tag
    role: str = ""
    resource_id: str = ""
    mac: str = ""
    default_via: str | None = None
    # The subnet's other routes (more specific than the default, e.g. a NAT standby's probe route), as
    # {"cidr", "via"} (via None: a blackhole route, or a target the lab does not run: traffic is dropped).
    routes: list[dict] = field(default_factory=list)
    public: bool = False  # reachable from / to the internet through the IGW
    security_groups: list[str] = field(default_factory=list)
    source_dest_check: bool = True
    key_name: str = ""   # the EC2 key pair the instance was launched with
    login_user: str = ""  # the login user of the instance's image (plugins/module_utils/login.py)
    instance_profile: str = ""  # the ARN of the instance profile it was launched with (credentials on the host)
    network_acl: str = ""  # the ACL guarding the node's subnet (its own, else the VPC's default)
    subnet_cidrs: list[str] = field(default_factory=list)  # the subnet's IPv4 and IPv6 ranges
    notes: list[str] = field(default_factory=list)


def _name(resource: dict, default: str) -> str:
    """A node's name: its Name tag when that is a safe host name, else its ID (tags are untrusted: the name
    becomes a container name, a hostname and a comment in generated scripts)."""
    name = vpc_model.tag_value(resource, "Name", default) or default
    return name if ssh_args.safe_host_name(name) else default


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


def _nat_gateway_nodes(topo: dict, subnets: dict, taken: set) -> dict[str, Node]:
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
    return nat_nodes


def _login_user(model: vpc_model.VpcModel, inst: dict, default_os: str | None) -> str:
    """The login user of the instance's image, as the inventory plugin finds it; an image the mapping does
    not know (or moto no longer lists) gets the user of the OS the lab provisioned with."""
    return login.user_of_image(model.image_of(inst), default=login.login_user(default_os or login.DEFAULT_OS))


def _instance_nodes(topo: dict, subnets: dict, model: vpc_model.VpcModel) -> dict[str, Node]:
    instance_nodes = {}
    for inst in sorted(topo["instances"], key=lambda i: _name(i, i["instance_id"])):
        eni = vpc_model.primary_interface(inst) or {}
        # The security groups that guard the instance: the model's answer, as for the plugin and the doctor.
        groups = vpc_model.instance_group_ids(inst)
        node = Node(name=_name(inst, inst["instance_id"]), kind="instance", ip=inst["private_ip_address"],
                    subnet=_name(subnets[inst["subnet_id"]], inst["subnet_id"]),
                    role=vpc_model.tag_value(inst, "Role", "") or "", resource_id=inst["instance_id"],
                    mac=eni.get("mac_address", ""), public=bool(inst.get("public_ip_address")),
                    security_groups=groups, source_dest_check=inst.get("source_dest_check", True) is not False,
                    key_name=inst.get("key_name") or "",
                    login_user=_login_user(model, inst, topo.get("ami_os")),
                    instance_profile=(inst.get("iam_instance_profile") or {}).get("arn") or "")
        instance_nodes[inst["instance_id"]] = node
    return instance_nodes


def _alb_nodes(topo: dict, subnets: dict, taken: set) -> list[tuple[dict, Node]]:
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
        albs.append((alb, node))
    return albs


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
    nat_nodes = _nat_gateway_nodes(topo, subnets, taken)
    nodes += nat_nodes.values()
    # One model of what moto described: images (login users), subnets and their network ACLs.
    model = vpc_model.VpcModel({"instances": topo["instances"], "images": topo.get("images") or [],
                                "subnets": topo["subnets"], "network_acls": topo.get("network_acls") or []},
                               include_gone=True)
    instance_nodes = _instance_nodes(topo, subnets, model)
    nodes += instance_nodes.values()
    albs = _alb_nodes(topo, subnets, taken)
    nodes += [node for _alb, node in albs]

    # Routes: what each subnet's route table in moto says.
    def target_ip(route: dict | None) -> str | None:
        target = vpc_model.route_target(route)
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

    def route_via(subnet_id: str) -> str | None:
        return target_ip(vpc_model.default_route(
            vpc_model.route_table_for_subnet(subnet_id, vpc["vpc_id"], topo["route_tables"])))

    def other_routes(subnet_id: str) -> list[dict]:
        """The table's IPv4 routes besides local and default; a CIDR from the API is checked before it
        reaches a generated script."""
        table = vpc_model.route_table_for_subnet(subnet_id, vpc["vpc_id"], topo["route_tables"]) or {}
        routes = []
        for route in table.get("routes") or []:
            cidr = route.get("destination_cidr_block")
            if not cidr or cidr == vpc_model.DEFAULT_ROUTE or route.get("gateway_id") == "local":
                continue
            try:
                network = ipaddress.IPv4Network(cidr)
            except ValueError:
                raise LabError(f"route table {table.get('route_table_id')}: {cidr!r} is not an IPv4 CIDR") from None
            via = None if route.get("state") == "blackhole" else target_ip(route)
            routes.append({"cidr": str(network), "via": via})
        return sorted(routes, key=lambda r: r["cidr"])

    subnet_by_name = {_name(s, s["subnet_id"]): s["subnet_id"] for s in subnets.values()}
    for node in nodes:
        if node.subnet:
            subnet_id = subnet_by_name[node.subnet]
            node.default_via = route_via(subnet_id)
            node.routes = other_routes(subnet_id)
            nacl = model.nacl_for_subnet(subnet_id)
            node.network_acl = (nacl or {}).get("network_acl_id", "")
            node.subnet_cidrs = [subnets[subnet_id]["cidr_block"]] + [
                a["ipv6_cidr_block"] for a in subnets[subnet_id].get("ipv6_cidr_block_association_set") or []
                if a.get("ipv6_cidr_block")]
    seen: set[str] = set()
    for node in nodes:
        if node.name in seen and node.resource_id:
            node.notes.append(f"another node is already named {node.name}: this one is {node.resource_id}")
            node.name = node.resource_id.split("/")[-1]
        seen.add(node.name)
        node.container = f"{config.PREFIX}-{node.name}"

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
        "internet_cidr": str(config.INTERNET_CIDR),
        "internet_gateway_ip": str(config.INTERNET_GW_IP),
        "internet_server_ip": str(config.INTERNET_SERVER_IP),
        "igw_ip": str(igw_ip),
        "vgw_ip": str(vgw_ip),
        "nodes": [asdict(n) for n in nodes],
        "sg_members": members,
        "security_groups": {g["group_id"]: g for g in topo["security_groups"]},
        "network_acls": {a["network_acl_id"]: a for a in topo.get("network_acls") or []},
        "albs": [{"node": node.name, "dns_name": alb["dns_name"], "ip": node.ip,
                  "listeners": alb.get("listeners") or [], "target_groups": alb.get("target_groups") or []}
                 for alb, node in albs],
        "key_pairs": topo["key_pairs"],
    }
