"""How fumidai reads a VPC's topology: decided once, used everywhere.

Pure Python, no AWS calls: callers pass what they described. Shapes are
amazon.aws's snake_case ones (as the ``*_info`` modules return them, or
boto3 responses passed through ``camel_dict_to_snake_dict``), so the
inventory plugin, the audit and the doctor all decide "is this subnet
public?" with the same code.

Imported as ``ansible_collections.fumidai.vpc.plugins.module_utils.fumidai_topology`` and by the
inventory plugin.
"""

from __future__ import annotations

import re

DEFAULT_ROUTE = "0.0.0.0/0"


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


def route_table_for_subnet(subnet_id: str, vpc_id: str, route_tables: list[dict]) -> dict | None:
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


def default_route(route_table: dict | None) -> dict | None:
    """The route for 0.0.0.0/0 in a table, or None."""
    if not route_table:
        return None
    for route in route_table.get("routes") or []:
        if route.get("destination_cidr_block") == DEFAULT_ROUTE:
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


def subnet_is_public(subnet_id: str, vpc_id: str, route_tables: list[dict]) -> bool:
    """A subnet is public when its route table sends 0.0.0.0/0 to an internet gateway."""
    target = route_target(default_route(route_table_for_subnet(subnet_id, vpc_id, route_tables)))
    return bool(target and target[0] == "internet_gateway")
