"""The VPC model: one reading of instances, subnets, route tables, SGs and NACLs for plugin, doctor, audit, lab.

Pure Python, no AWS calls: callers pass the facts ``vpc_reader.read`` returns (or the amazon.aws ``*_info``
modules' results): snake_case keys, tags as dicts (boto3's Key/Value lists are read too). "Is this subnet
public?", "which route table governs it?", "which security groups guard this instance?" are decided
here and nowhere else. Rule evaluation is in ``vpc_rules``.

Imported as ``ansible_collections.fumidai.vpc.plugins.module_utils.vpc_model``.
"""

from __future__ import annotations

import ipaddress
import re

from ansible_collections.fumidai.vpc.plugins.module_utils.fumidai_text import name as shown_name

DEFAULT_ROUTE = "0.0.0.0/0"
DEFAULT_ROUTE_V6 = "::/0"
PUBLIC, PRIVATE = "public", "private"
GONE_STATES = ("terminated", "shutting-down")


# --------------------------------------------------------------------------- tags and names
def tags_dict(resource: dict) -> dict:
    """Tags as a dict, whether given as a dict or as boto3's Key/Value list."""
    tags = resource.get("tags") or resource.get("Tags") or {}
    if isinstance(tags, dict):
        return tags
    return {t.get("key", t.get("Key")): t.get("value", t.get("Value")) for t in tags}


def tag_value(resource: dict, key: str, default=None):
    return tags_dict(resource).get(key, default)


def sanitize_group_name(name: str) -> str:
    """A string usable as an Ansible group name: private-subnet-1 -> private_subnet_1."""
    return re.sub(r"[^A-Za-z0-9_]", "_", str(name))


def resource_id_of(resource: dict) -> str:
    # Most specific first: an instance or a NAT gateway also carries subnet_id and vpc_id.
    for key in ("instance_id", "nat_gateway_id", "internet_gateway_id", "nacl_id", "network_acl_id", "group_id",
                "route_table_id", "load_balancer_name", "target_group_name", "subnet_id", "vpc_id"):
        if resource.get(key):
            return resource[key]
    return resource.get("id", "?")


def label(resource: dict | None, resource_id: str | None = None) -> str:
    """'Name (id)', or the bare id. Names are untrusted tag values: shown through fumidai_text.name."""
    if resource is None:
        return shown_name(resource_id or "?")
    rid = resource_id or resource_id_of(resource)
    name = tags_dict(resource).get("Name")
    return f"{shown_name(name)} ({shown_name(rid)})" if name and name != rid else shown_name(rid)


# --------------------------------------------------------------------------- the standby NAT instance
NAT_STANDBY_TAG = "NatStandby"  # "true" on the standby NAT instance (nat_instance_standby); Role is "nat" on both


def is_nat_standby(instance: dict) -> bool:
    tags = tags_dict(instance)
    return tags.get("Role") == "nat" and tags.get(NAT_STANDBY_TAG) == "true"


def nat_standby_problems(instance: dict) -> list[str]:
    """Why a standby NAT instance could not take over (empty: ready): it must run, forward (source/dest check
    off), reach the internet (public IP) and hold an instance profile (its watchdog's ReplaceRoute rights)."""
    problems = []
    state = (instance.get("state") or {}).get("name", "unknown")
    if state != "running":
        problems.append(f"it is {state}")
    if instance.get("source_dest_check", True):
        problems.append("its source/destination check is on")
    if not instance.get("public_ip_address"):
        problems.append("it has no public IP")
    if not (instance.get("iam_instance_profile") or {}).get("arn"):
        problems.append("it has no instance profile (its watchdog cannot call ReplaceRoute)")
    return problems


def probe_routes_to(route_table: dict | None, instance: dict) -> list[str]:
    """The /32 destinations a route table sends to ``instance`` (by instance ID or one of its ENIs): the standby NAT
    instance's subnet's table carries its watchdog's probe address so, to the active NAT instance."""
    if not route_table:
        return []
    enis = {eni.get("network_interface_id") for eni in instance.get("network_interfaces") or []} - {None}
    found = []
    for route in route_table.get("routes") or []:
        try:  # read from AWS: shown only once parsed (an IPv4 /32, printed by ipaddress)
            network = ipaddress.IPv4Network(str(route.get("destination_cidr_block") or ""))
        except ValueError:
            continue
        if network.prefixlen != 32 or route.get("state", "active") != "active":
            continue
        by_id = route.get("instance_id") and route.get("instance_id") == instance.get("instance_id")
        if by_id or route.get("network_interface_id") in enis:
            found.append(str(network))
    return found


def instance_profile_name(instance: dict) -> str:
    """The attached instance profile's name (from its ARN, shown escaped), or ''."""
    arn = (instance.get("iam_instance_profile") or {}).get("arn") or ""
    return shown_name(arn.rsplit("/", 1)[-1]) if arn else ""


# --------------------------------------------------------------------------- routes and tiers
def route_table_for_subnet(subnet_id: str, vpc_id: str | None, route_tables: list[dict]) -> dict | None:
    """The route table that governs a subnet: its explicit association, else the VPC's main table."""
    main = None
    for table in route_tables:
        if table.get("vpc_id") != vpc_id:
            continue
        for assoc in table.get("associations") or []:
            if assoc.get("subnet_id") == subnet_id:
                return table
            if assoc.get("main"):
                main = table
    return main


def default_route(route_table: dict | None, ipv6: bool = False) -> dict | None:
    """The route for 0.0.0.0/0 (ipv6: ::/0) in a table, or None."""
    if not route_table:
        return None
    key, wanted = ("destination_ipv6_cidr_block", DEFAULT_ROUTE_V6) if ipv6 else \
        ("destination_cidr_block", DEFAULT_ROUTE)
    for route in route_table.get("routes") or []:
        if route.get(key) == wanted:
            return route
    return None


def route_target(route: dict | None) -> tuple[str, str] | None:
    """(kind, id) of where a route sends traffic: kind is one of
    internet_gateway, nat_gateway, instance, network_interface, local, other."""
    if not route:
        return None
    gateway = route.get("gateway_id") or ""
    if gateway.startswith("igw-"):
        return "internet_gateway", gateway
    if gateway == "local":
        return "local", gateway
    if route.get("nat_gateway_id"):
        return "nat_gateway", route["nat_gateway_id"]
    if route.get("instance_id"):
        return "instance", route["instance_id"]
    if route.get("network_interface_id"):
        return "network_interface", route["network_interface_id"]
    for key in ("transit_gateway_id", "vpc_peering_connection_id", "egress_only_internet_gateway_id"):
        if route.get(key):
            return "other", route[key]
    if gateway:
        return "other", gateway
    return None


def subnet_tier(subnet_id: str, vpc_id: str | None, route_tables: list[dict]) -> str:
    """'public' when the subnet's route table sends 0.0.0.0/0 to an internet gateway, else 'private'."""
    target = route_target(default_route(route_table_for_subnet(subnet_id, vpc_id, route_tables)))
    return PUBLIC if target and target[0] == "internet_gateway" else PRIVATE


def subnet_is_public(subnet_id: str, vpc_id: str | None, route_tables: list[dict]) -> bool:
    return subnet_tier(subnet_id, vpc_id, route_tables) == PUBLIC


# --------------------------------------------------------------------------- instances
def primary_interface(instance: dict) -> dict | None:
    """The instance's primary network interface (device index 0; an interface without attachment data,
    as some EC2 emulations and hand-written facts give, counts as primary)."""
    for eni in instance.get("network_interfaces") or []:
        if (eni.get("attachment") or {}).get("device_index", 0) == 0:
            return eni
    return None


def instance_group_refs(instance: dict, all_interfaces: bool = False) -> list[dict]:
    """The security groups ({group_id, group_name}) that guard an instance, without duplicates.

    Four versions existed: the plugin took the instance's list else the primary interface's; the lab the
    first interface's else the instance's; the doctor and the audit the instance's plus every interface's.
    Right: traffic to the instance's private_ip_address is filtered by its primary interface's groups,
    and EC2 reports the instance-level list from those too, but some emulations fill only one of the
    two (and the audit's tests add a group to the instance list alone). So: the instance's list, then its
    primary interface's, merged. Groups of secondary interfaces guard other addresses; the path walks
    must not count them, but an exposure check (the audit) may ask for them with ``all_interfaces``.
    """
    refs = list(instance.get("security_groups") or [])
    if all_interfaces:
        interfaces = instance.get("network_interfaces") or []
    else:
        interfaces = [e for e in [primary_interface(instance)] if e]
    for eni in interfaces:
        refs += eni.get("groups") or []
    seen, out = set(), []
    for ref in refs:
        gid = ref.get("group_id")
        if gid and gid not in seen:
            seen.add(gid)
            out.append(ref)
    return out


def instance_group_ids(instance: dict, all_interfaces: bool = False) -> list[str]:
    return [g["group_id"] for g in instance_group_refs(instance, all_interfaces)]


class VpcModel:
    """One VPC's (or region's) state, indexed. ``facts`` keys: instances, subnets, route_tables,
    security_groups, network_acls, internet_gateways, nat_gateways, vpcs, load_balancers, target_groups,
    images, volumes, addresses; any may be missing. Terminated and shutting-down instances are left out
    unless ``include_gone``."""

    def __init__(self, facts: dict, include_gone: bool = False):
        self.facts = facts
        self.instances = [i for i in facts.get("instances") or []
                          if include_gone or (i.get("state") or {}).get("name") not in GONE_STATES]
        self.subnets = {s["subnet_id"]: s for s in facts.get("subnets") or []}
        self.route_tables = facts.get("route_tables") or []
        self.groups = {g["group_id"]: g for g in facts.get("security_groups") or []}
        self.nacls = facts.get("network_acls") or []
        self.nat_gateways = {n["nat_gateway_id"]: n for n in facts.get("nat_gateways") or []}
        self.igws = {g["internet_gateway_id"]: g for g in facts.get("internet_gateways") or []}
        self.vpcs = {v["vpc_id"]: v for v in facts.get("vpcs") or []}
        self.images = {i["image_id"]: i for i in facts.get("images") or []}
        self.load_balancers = facts.get("load_balancers") or []
        self.target_groups = {t["target_group_arn"]: t for t in facts.get("target_groups") or []}
        self._by_id = {i.get("instance_id"): i for i in self.instances}
        self._tiers: dict[str, str] = {}

    # instances ---------------------------------------------------------------
    def instance_by_id(self, instance_id: str) -> dict | None:
        return self._by_id.get(instance_id)

    def instance_by_eni(self, eni_id: str) -> dict | None:
        for inst in self.instances:
            for eni in inst.get("network_interfaces") or []:
                if eni.get("network_interface_id") == eni_id:
                    return inst
        return None

    def instance_groups(self, instance: dict, all_interfaces: bool = False) -> list[dict]:
        """The described groups guarding the instance (a stub {group_id} for one not described)."""
        return [self.groups.get(gid, {"group_id": gid}) for gid in instance_group_ids(instance, all_interfaces)]

    def image_of(self, instance: dict) -> dict | None:
        return self.images.get(instance.get("image_id"))

    @staticmethod
    def instance_net(instance: dict):
        return ipaddress.ip_network(f"{instance.get('private_ip_address')}/32")

    # network -----------------------------------------------------------------
    def vpc_of_subnet(self, subnet_id: str) -> str | None:
        return (self.subnets.get(subnet_id) or {}).get("vpc_id")

    def route_table(self, subnet_id: str, vpc_id: str | None = None) -> dict | None:
        return route_table_for_subnet(subnet_id, vpc_id or self.vpc_of_subnet(subnet_id), self.route_tables)

    def default_route_target(self, subnet_id: str, ipv6: bool = False) -> tuple[str, str] | None:
        return route_target(default_route(self.route_table(subnet_id), ipv6))

    def tier(self, subnet_id: str, vpc_id: str | None = None) -> str:
        """'public' or 'private', decided once per subnet (``vpc_id`` for subnets not described)."""
        if subnet_id not in self._tiers:
            self._tiers[subnet_id] = subnet_tier(subnet_id, vpc_id or self.vpc_of_subnet(subnet_id),
                                                 self.route_tables)
        return self._tiers[subnet_id]

    def is_public(self, subnet_id: str, vpc_id: str | None = None) -> bool:
        return self.tier(subnet_id, vpc_id) == PUBLIC

    def subnet_net(self, subnet_id: str):
        return ipaddress.ip_network(self.subnets[subnet_id]["cidr_block"])

    def attached_igw(self, vpc_id: str) -> dict | None:
        for igw in self.igws.values():
            for att in igw.get("attachments") or []:
                if att.get("vpc_id") == vpc_id and att.get("state") in ("available", "attached"):
                    return igw
        return None

    def nacl_for_subnet(self, subnet_id: str) -> dict | None:
        """The subnet's associated network ACL, else its VPC's default one."""
        vpc_id = self.vpc_of_subnet(subnet_id)
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
