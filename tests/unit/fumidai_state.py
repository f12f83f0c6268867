"""Hand-built VPC state in the shapes amazon.aws's *_info modules return on
moto and AWS (snake_case, tags as dicts, NACL entries as lists), for the
doctor's and the audit's unit tests. ``clean_state()`` is fumidai's topology
with nothing wrong; tests break one thing at a time."""

from __future__ import annotations

import copy

VPC = "vpc-0f00"
IGW = "igw-0f00"
ADMIN_CIDR = "192.0.2.0/24"
SUBNETS = {  # Name -> (id, cidr, az)
    "public-subnet-1": ("subnet-0pub1", "10.0.1.0/24", "ap-northeast-1a"),
    "public-subnet-2": ("subnet-0pub2", "10.0.2.0/24", "ap-northeast-1c"),
    "private-subnet-1": ("subnet-0prv1", "10.0.11.0/24", "ap-northeast-1a"),
    "private-subnet-2": ("subnet-0prv2", "10.0.12.0/24", "ap-northeast-1c"),
}
SG = {"alb": "sg-0a1b", "bastion": "sg-0ba5", "web": "sg-0eb0", "nat": "sg-0a70", "default": "sg-0def"}
INSTANCES = {  # Name -> (id, role, subnet, ip, sg, public ip)
    "bastion": ("i-0000000000000b001", "bastion", "public-subnet-1", "10.0.1.10", "bastion", "54.0.0.10"),
    "nat-instance": ("i-0000000000000a001", "nat", "public-subnet-2", "10.0.2.10", "nat", "54.0.0.20"),
    "web01": ("i-0000000000000e001", "web", "private-subnet-1", "10.0.11.10", "web", None),
    "web02": ("i-0000000000000e002", "web", "private-subnet-2", "10.0.12.10", "web", None),
}
NAT_GW = "nat-0f00"
TG_ARN = "arn:aws:elasticloadbalancing:ap-northeast-1:123456789012:targetgroup/fumidai-web/0f00"
ALB_ARN = "arn:aws:elasticloadbalancing:ap-northeast-1:123456789012:loadbalancer/app/fumidai-alb/0f00"


def tcp(port_from: int, port_to: int | None = None, cidrs=(), groups=(), ipv6=()) -> dict:
    return {"ip_protocol": "tcp", "from_port": port_from, "to_port": port_to or port_from,
            "ip_ranges": [{"cidr_ip": c} for c in cidrs], "ipv6_ranges": [{"cidr_ipv6": c} for c in ipv6],
            "prefix_list_ids": [], "user_id_group_pairs": [{"group_id": g, "user_id": "123456789012"} for g in groups]}


ALL_OUT = {"ip_protocol": "-1", "ip_ranges": [{"cidr_ip": "0.0.0.0/0"}], "ipv6_ranges": [], "prefix_list_ids": [],
           "user_id_group_pairs": []}


def _group(key: str, name: str, ingress: list[dict]) -> dict:
    return {"group_id": SG[key], "group_name": name, "vpc_id": VPC, "description": name,
            "ip_permissions": ingress, "ip_permissions_egress": [copy.deepcopy(ALL_OUT)],
            "tags": {"Name": name, "Project": "fumidai"}}


def _instance(name: str) -> dict:
    iid, role, subnet, ip, sg, public = INSTANCES[name]
    inst = {
        "instance_id": iid, "vpc_id": VPC, "subnet_id": SUBNETS[subnet][0], "private_ip_address": ip,
        "state": {"code": 16, "name": "running"}, "source_dest_check": role != "nat",
        "security_groups": [{"group_id": SG[sg], "group_name": f"fumidai-{sg}"}],
        "network_interfaces": [{"network_interface_id": f"eni-{iid[2:]}", "groups": [
            {"group_id": SG[sg], "group_name": f"fumidai-{sg}"}], "subnet_id": SUBNETS[subnet][0]}],
        "metadata_options": {"http_endpoint": "enabled", "http_tokens": "required"},
        "block_device_mappings": [{"device_name": "/dev/xvda", "ebs": {"volume_id": f"vol-{iid[2:]}"}}],
        "tags": {"Name": name, "Role": role, "Project": "fumidai"},
    }
    if public:
        inst["public_ip_address"] = public
    return inst


def _route_table(rtb: str, name: str, subnets: list[str], default: dict | None, main: bool = False) -> dict:
    routes = [{"destination_cidr_block": "10.0.0.0/16", "gateway_id": "local", "state": "active"}]
    if default:
        routes.append({"destination_cidr_block": "0.0.0.0/0", "state": "active", "gateway_id": None,
                       "instance_id": None, "nat_gateway_id": None, "network_interface_id": None, **default})
    assocs = [{"subnet_id": SUBNETS[s][0], "main": False, "route_table_id": rtb} for s in subnets]
    if main:
        assocs.append({"main": True, "route_table_id": rtb})
    return {"route_table_id": rtb, "id": rtb, "vpc_id": VPC, "routes": routes, "associations": assocs,
            "tags": {"Name": name}}


def clean_state() -> dict:
    web_ids = [INSTANCES["web01"][0], INSTANCES["web02"][0]]
    return {
        "vpcs": [{"vpc_id": VPC, "cidr_block": "10.0.0.0/16",
                  "cidr_block_association_set": [{"cidr_block": "10.0.0.0/16"}],
                  "tags": {"Name": "fumidai-vpc", "Project": "fumidai"}}],
        "instances": [_instance(n) for n in INSTANCES],
        "subnets": [{"subnet_id": sid, "id": sid, "vpc_id": VPC, "cidr_block": cidr, "availability_zone": az,
                     "tags": {"Name": name}} for name, (sid, cidr, az) in SUBNETS.items()],
        "route_tables": [
            _route_table("rtb-0main", "main", [], None, main=True),
            _route_table("rtb-0pub", "fumidai-public", ["public-subnet-1", "public-subnet-2"], {"gateway_id": IGW}),
            _route_table("rtb-0prv1", "fumidai-private-1", ["private-subnet-1"], {"nat_gateway_id": NAT_GW}),
            _route_table("rtb-0prv2", "fumidai-private-2", ["private-subnet-2"],
                         {"instance_id": INSTANCES["nat-instance"][0]}),
        ],
        "security_groups": [
            _group("alb", "fumidai-alb", [tcp(80, cidrs=["0.0.0.0/0"])]),
            _group("bastion", "fumidai-bastion", [tcp(22, cidrs=[ADMIN_CIDR])]),
            _group("web", "fumidai-web", [tcp(80, groups=[SG["alb"]]), tcp(22, groups=[SG["bastion"]])]),
            _group("nat", "fumidai-nat", [
                {"ip_protocol": "-1", "ip_ranges": [{"cidr_ip": "10.0.12.0/24"}], "ipv6_ranges": [],
                 "prefix_list_ids": [], "user_id_group_pairs": []},
                tcp(22, groups=[SG["bastion"]])]),
            _group("default", "default", [{"ip_protocol": "-1", "ip_ranges": [], "ipv6_ranges": [],
                                           "prefix_list_ids": [],
                                           "user_id_group_pairs": [{"group_id": SG["default"]}]}]),
        ],
        "network_acls": [{
            "nacl_id": "acl-0def", "vpc_id": VPC, "is_default": True, "tags": {},
            "subnets": [sid for sid, _c, _a in SUBNETS.values()],
            "ingress": [[100, "all", "allow", "0.0.0.0/0", None, None, 0, 65535]],
            "egress": [[100, "all", "allow", "0.0.0.0/0", None, None, 0, 65535]],
        }],
        "nat_gateways": [{"nat_gateway_id": NAT_GW, "vpc_id": VPC, "subnet_id": SUBNETS["public-subnet-1"][0],
                          "state": "available", "connectivity_type": "public",
                          "nat_gateway_addresses": [{"public_ip": "54.0.0.30"}],
                          "tags": {"Name": "fumidai-nat-gateway"}}],
        "internet_gateways": [{"internet_gateway_id": IGW, "attachments": [{"state": "available", "vpc_id": VPC}],
                               "tags": {"Name": "fumidai-igw"}}],
        "load_balancers": [{
            "load_balancer_name": "fumidai-alb", "load_balancer_arn": ALB_ARN, "vpc_id": VPC, "type": "application",
            "scheme": "internet-facing", "state": {"code": "active"}, "security_groups": [SG["alb"]],
            "availability_zones": [{"subnet_id": SUBNETS[n][0], "zone_name": SUBNETS[n][2]}
                                   for n in ("public-subnet-1", "public-subnet-2")],
            "listeners": [{"port": 80, "protocol": "HTTP",
                           "default_actions": [{"type": "forward", "target_group_arn": TG_ARN}]}],
        }],
        "target_groups": [{
            "target_group_arn": TG_ARN, "target_group_name": "fumidai-web", "port": 80, "protocol": "HTTP",
            "vpc_id": VPC, "target_type": "instance", "health_check_path": "/healthz", "matcher": {"http_code": "200"},
            "targets_health_description": [{"target": {"id": i, "port": 80}, "target_health": {"state": "healthy"}}
                                           for i in web_ids],
        }],
        "volumes": [{"id": f"vol-{iid[2:]}", "encrypted": True, "tags": {},
                     "attachment_set": [{"instance_id": iid, "status": "attached"}]}
                    for iid, *_rest in INSTANCES.values()],
    }


def instance(state: dict, name: str) -> dict:
    return next(i for i in state["instances"] if i["tags"]["Name"] == name)


def group(state: dict, key: str) -> dict:
    return next(g for g in state["security_groups"] if g["group_id"] == SG[key])


def route_table(state: dict, rtb: str) -> dict:
    return next(t for t in state["route_tables"] if t["route_table_id"] == rtb)
