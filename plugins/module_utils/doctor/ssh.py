"""The doctor's ssh path: from the admin's address to the bastion, then through it to the target."""

from __future__ import annotations

import ipaddress

from ansible_collections.fumidai.vpc.plugins.module_utils.doctor.hops import Walk
from ansible_collections.fumidai.vpc.plugins.module_utils.doctor.naming import groups_text, role_label
from ansible_collections.fumidai.vpc.plugins.module_utils.doctor.state import CLIENT_EPHEMERAL, DoctorError, State
from ansible_collections.fumidai.vpc.plugins.module_utils.vpc_model import label, tags_dict

HOPS_AFTER_BASTION = ["bastion instance", "bastion public address", "bastion subnet routing", "internet gateway",
                      "bastion security group", "bastion network ACL", "target instance", "bastion to target routing",
                      "bastion outbound rule", "target security group", "network ACLs bastion to target"]


def walk(state: State, target: dict, arguments: dict) -> Walk:
    """The registry's entry point: checks source_cidr, then walks."""
    source_cidr = arguments.get("source_cidr")
    if not source_cidr:
        raise DoctorError("the ssh path needs the admin's address: -e source_cidr=<your IP>/32 "
                          "(default: the first of admin_cidrs)")
    try:
        ipaddress.ip_network(source_cidr, strict=False)
    except ValueError as exc:
        raise DoctorError(f"source_cidr '{source_cidr}' is not an address or CIDR: {exc}") from exc
    return walk_ssh(state, target, source_cidr, arguments.get("bastion"))


def zone_of(state: State, inst: dict) -> str | None:
    return (inst.get("placement") or {}).get("availability_zone") or \
        (state.subnets.get(inst.get("subnet_id")) or {}).get("availability_zone")


def running(inst: dict) -> bool:
    return (inst.get("state") or {}).get("name") == "running"


def find_bastion(state: State, target: dict, bastion: str | None) -> tuple[dict | None, str, dict | None]:
    """The bastion given by name or id, else the one tagged Role=bastion in the target's VPC: with one per zone
    (bastion_per_az) the target's own zone's, as the inventory's hop tries it first; running first.

    Third: the target's own zone's bastion when it is not running and another zone's carries the path instead
    (the hop's fallback: degraded, not blocked)."""
    if bastion:
        return state.resolve_instance(bastion, "bastion"), "given with -e bastion", None
    vpc_id = target.get("vpc_id")
    zone = zone_of(state, target)
    found = [i for i in state.instances if i.get("vpc_id") == vpc_id and tags_dict(i).get("Role") == "bastion"]
    found.sort(key=lambda i: (zone_of(state, i) != zone, tags_dict(i).get("Name") or "", i["instance_id"]))
    own = next((i for i in found if zone_of(state, i) == zone), None)
    found.sort(key=lambda i: not running(i))  # stable: own zone first among the running ones
    jump = found[0] if found else None
    down = own if own is not None and jump is not own and not running(own) else None
    return jump, "tagged Role=bastion", down


def walk_ssh(state: State, target: dict, source_cidr: str, bastion: str | None = None) -> Walk:
    walk = Walk(state, "ssh", target)
    jump, how, down = find_bastion(state, target, bastion)
    if jump is None:
        walk.blocked("bastion", f"no instance tagged Role=bastion in {target.get('vpc_id')}",
                     "Launch a bastion in a public subnet with tag Role=bastion, "
                     "or name one with -e bastion=<name|id>.")
        walk.skip(HOPS_AFTER_BASTION, "there is no bastion")
        return walk
    if down is not None:
        walk.degraded("bastion", f"{role_label('bastion', down)} in the target's zone {zone_of(state, target)} is "
                                 f"{(down.get('state') or {}).get('name', 'unknown')}: the hop falls back to "
                                 f"{role_label('bastion', jump)} in {zone_of(state, jump)} ({how}), after a connect "
                                 "timeout the first time",
                      f"Start it (aws ec2 start-instances --instance-ids {down['instance_id']}); until then the "
                      "other zone's bastion is a single point of failure.")
    else:
        walk.passed("bastion", f"{role_label('bastion', jump)} ({how})")
    _to_the_bastion(walk, jump, ipaddress.ip_network(source_cidr, strict=False), source_cidr)
    if jump["instance_id"] != target["instance_id"]:
        _through_the_bastion(walk, jump, target)
    return walk


def _to_the_bastion(walk: Walk, jump: dict, source, source_cidr: str) -> None:
    """The admin's address -> the bastion's port 22: running, public, routed, admitted."""
    state = walk.state
    jump_text = role_label("bastion", jump)
    walk.instance_running("bastion instance", jump, "bastion")
    public_ip = jump.get("public_ip_address")
    if public_ip:
        walk.passed("bastion public address", f"{jump_text} has public IP {public_ip}")
    else:
        walk.blocked("bastion public address", f"{jump_text} has no public IP address",
                     f"Associate an Elastic IP with it (aws ec2 associate-address --instance-id {jump['instance_id']} "
                     f"--allocation-id <eipalloc-...>).")
    _ok, route = walk.public_subnet("bastion subnet routing", jump["subnet_id"], jump_text)
    walk.internet_gateway(jump.get("vpc_id"), route)
    walk.sg_in("bastion security group", jump, 22, source, (), source_cidr, jump_text)
    walk.nacl_flow("bastion network ACL", None, source, jump["subnet_id"], state.instance_net(jump), 22,
                   CLIENT_EPHEMERAL)


def _through_the_bastion(walk: Walk, jump: dict, target: dict) -> None:
    """The bastion -> the target's port 22: same VPC, the bastion may send, the target admits, NACLs pass."""
    state = walk.state
    vpc_id = target.get("vpc_id")
    walk.instance_running("target instance", target, "target")
    if jump.get("vpc_id") != vpc_id:
        walk.blocked("bastion to target routing", f"{role_label('bastion', jump)} is in {jump.get('vpc_id')}, "
                                                  f"{role_label('target', target)} in {vpc_id}",
                     "Use a bastion in the target's VPC (or peer the VPCs and route between them).")
        walk.skip(HOPS_AFTER_BASTION[-3:], "bastion and target are in different VPCs")
        return
    walk.passed("bastion to target routing", f"same VPC {vpc_id}: the local route carries it")
    jump_groups = state.instance_groups(jump)
    target_net = state.instance_net(target)
    walk.sg_out("bastion outbound rule", jump_groups, 22, target_net, {g["group_id"] for g in
                state.instance_groups(target)}, f"{label(target)} {target_net}", f"{role_label('bastion', jump)}")
    walk.sg_in("target security group", target, 22, state.instance_net(jump), {g["group_id"] for g in jump_groups},
               f"the bastion (its security group {groups_text(jump_groups)} "
               f"or its address {jump.get('private_ip_address')})", f"{role_label('target', target)}")
    walk.nacl_flow("network ACLs bastion to target", jump["subnet_id"], state.instance_net(jump),
                   target["subnet_id"], target_net, 22, CLIENT_EPHEMERAL)
