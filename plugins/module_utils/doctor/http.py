"""The doctor's http path: from the internet through the target's ALB, its listener and target group."""

from __future__ import annotations

from ansible_collections.fumidai.vpc.plugins.module_utils.doctor.hops import Walk, merge_hops
from ansible_collections.fumidai.vpc.plugins.module_utils.doctor.naming import groups_text, role_label
from ansible_collections.fumidai.vpc.plugins.module_utils.doctor.state import AWS_EPHEMERAL, INTERNET, State
from ansible_collections.fumidai.vpc.plugins.module_utils.fumidai_text import name as shown_name
from ansible_collections.fumidai.vpc.plugins.module_utils.fumidai_text import text as shown_text
from ansible_collections.fumidai.vpc.plugins.module_utils.vpc_model import label
from ansible_collections.fumidai.vpc.plugins.module_utils.vpc_rules import sg_allows

HOPS_AFTER_TARGET = ["load balancer subnets", "load balancer security group", "listener", "target registration",
                     "load balancer outbound rule", "target security group", "network ACLs", "target health"]


def walk(state: State, target: dict, arguments: dict) -> Walk:
    """The registry's entry point: the path takes no arguments."""
    return walk_http(state, target)


def walk_http(state: State, target: dict, port: int = 80) -> Walk:
    walk = Walk(state, "http", target)
    walk.instance_running("target instance", target, "target")
    walk.internet_gateway(target.get("vpc_id"))
    alb = _load_balancer(walk, target)
    if alb is None:
        return walk
    name = shown_name(alb["load_balancer_name"])
    subnet_ids = _alb_subnets(walk, alb, name)
    alb_groups = [state.groups.get(g, {"group_id": g}) for g in alb.get("security_groups") or []]
    front = _listener(walk, alb, name, alb_groups, port)
    if front is None:
        return walk
    front_port, tg_arns = front
    registered = _target_registration(walk, target, tg_arns)
    if registered is None:
        return walk
    tg, reg, tg_port = registered
    _alb_to_target(walk, target, alb_groups, subnet_ids, tg_port, name)
    _network_acls(walk, target, subnet_ids, front_port, tg_port)
    _target_health(walk, tg, reg, target, tg_port)
    return walk


def _load_balancer(walk: Walk, target: dict) -> dict | None:
    """The ALB serving the target, internet-facing and active; None (and the rest skipped) when none does."""
    state = walk.state
    vpc_id = target.get("vpc_id")
    alb, albs = _alb_for(state, target)
    if alb is None:
        if albs:
            names = ", ".join(shown_name(lb["load_balancer_name"]) for lb in albs)
            walk.blocked("load balancer", f"none of the load balancers in {vpc_id} ({names}) forwards to "
                                          f"{label(target)}", f"Register {target['instance_id']} in the target "
                                          f"group of the ALB that should serve it.")
        else:
            walk.blocked("load balancer", f"there is no application load balancer in {vpc_id}",
                         "Create an internet-facing ALB in two public subnets with a listener on port 80.")
        walk.skip(HOPS_AFTER_TARGET, "no load balancer serves the target")
        return None
    name = shown_name(alb["load_balancer_name"])
    lb_state = (alb.get("state") or {}).get("code", "unknown")
    if alb.get("scheme") != "internet-facing":
        walk.blocked("load balancer", f"ALB {name} is {alb.get('scheme')}: it has no address on the internet",
                     "Recreate it with scheme internet-facing (the scheme cannot be changed in place).")
    elif lb_state != "active":
        walk.blocked("load balancer", f"ALB {name} is {lb_state}", "Wait for it to become active, or fix "
                                                                   "what the console reports.")
    else:
        walk.passed("load balancer", f"ALB {name} is internet-facing and active")
    return alb


def _alb_subnets(walk: Walk, alb: dict, name: str) -> list[str]:
    """The ALB's subnets: two AZs at least, every one public. Returns their ids."""
    state = walk.state
    zones = alb.get("availability_zones") or []
    subnet_ids = [z["subnet_id"] for z in zones]
    distinct = {z.get("zone_name") for z in zones}
    private = [s for s in subnet_ids if not state.is_public(s)]
    if len(subnet_ids) < 2 or len(distinct) < 2:
        walk.blocked("load balancer subnets", f"ALB {name} is in {len(subnet_ids)} subnet(s) in "
                                              f"{len(distinct)} availability zone(s): AWS requires two AZs",
                     f"Add a public subnet in another availability zone (aws elbv2 set-subnets "
                     f"--load-balancer-arn {alb.get('load_balancer_arn')} --subnets {' '.join(subnet_ids)} "
                     f"<public subnet in another AZ>).")
    elif private:
        walk.blocked("load balancer subnets", f"ALB {name} has nodes in private subnet(s) "
                                              f"{', '.join(state.subnet_label(s) for s in private)}: "
                                              f"the internet cannot reach them",
                     "Move the ALB to public subnets (set-subnets), or route those subnets to the internet gateway.")
    else:
        walk.passed("load balancer subnets", f"ALB {name} is in public subnets "
                                             f"{', '.join(state.subnet_label(s) for s in subnet_ids)} "
                                             f"({len(distinct)} AZs)")
    return subnet_ids


def _listener(walk: Walk, alb: dict, name: str, alb_groups: list[dict], port: int) -> tuple[int, list] | None:
    """The ALB's group admits the internet, and a listener forwards (following a redirect, e.g. to 443).
    Returns (the port the client ends up on, the target groups), or None (the rest skipped)."""
    listeners = {int(lst.get("port", 0)): lst for lst in alb.get("listeners") or []}
    listener = listeners.get(port)
    front_port = port
    if listener:
        redirect = next((a for a in listener.get("default_actions") or [] if a.get("type") == "redirect"), None)
        if redirect and not _listener_target_groups(listener):
            front_port = int((redirect.get("redirect_config") or {}).get("port") or 443)
            listener = listeners.get(front_port)
    walk.sg_in("load balancer security group", alb_groups, port, INTERNET, (), "0.0.0.0/0 (the internet)",
               f"ALB {name}")
    if front_port != port:
        walk.sg_in("load balancer security group", alb_groups, front_port, INTERNET, (), "0.0.0.0/0 (the internet)",
                   f"ALB {name} (port {port} redirects to {front_port})")
    if not listener:
        walk.blocked("listener", f"ALB {name} has no listener on port {front_port}",
                     f"Add a listener on port {front_port} forwarding to the web target group.")
        walk.skip(HOPS_AFTER_TARGET[3:], "there is no listener")
        return None
    tg_arns = _listener_target_groups(listener)
    if not tg_arns:
        kinds = ", ".join(a.get("type", "?") for a in listener.get("default_actions") or [])
        walk.blocked("listener", f"ALB {name}'s listener on {front_port} does not forward ({kinds})",
                     "Make its default action forward to the web target group.")
        walk.skip(HOPS_AFTER_TARGET[3:], "the listener forwards nowhere")
        return None
    walk.passed("listener", f"ALB {name} listens on {front_port} and forwards to "
                            f"{', '.join(_tg_name(walk.state, a) for a in tg_arns)}")
    return front_port, tg_arns


def _target_registration(walk: Walk, target: dict, tg_arns: list[str]) -> tuple[dict, dict, int] | None:
    """The target is registered in one of the listener's groups: (group, registration, port), else None."""
    state = walk.state
    registered = [(state.target_groups.get(a), _registration(state.target_groups.get(a) or {}, target))
                  for a in tg_arns]
    registered = [(tg, reg) for tg, reg in registered if reg]
    if not registered:
        tg_name = _tg_name(state, tg_arns[0])
        walk.blocked("target registration", f"{label(target)} is not registered in target group {tg_name}",
                     f"Register it (aws elbv2 register-targets --target-group-arn {tg_arns[0]} "
                     f"--targets Id={target['instance_id']}).")
        walk.skip(HOPS_AFTER_TARGET[4:], "the target is not registered")
        return None
    tg, reg = registered[0]
    tg_port = int((reg.get("target") or {}).get("port") or tg.get("port") or 80)
    walk.passed("target registration", f"{label(target)} is registered in {shown_name(tg['target_group_name'])} "
                                       f"on port {tg_port}")
    return tg, reg, tg_port


def _alb_to_target(walk: Walk, target: dict, alb_groups: list[dict], subnet_ids: list[str], tg_port: int,
                   name: str) -> None:
    """The ALB's group may send to the target, and the target's admits the ALB (by group, or every ALB subnet)."""
    state = walk.state
    alb_sg_ids = {g["group_id"] for g in alb_groups}
    target_net = state.instance_net(target)
    target_groups = state.instance_groups(target)
    walk.sg_out("load balancer outbound rule", alb_groups, tg_port, target_net, {g["group_id"] for g in target_groups},
                f"{label(target)} {target_net}", f"ALB {name}")
    alb_nets = [state.subnet_net(s) for s in subnet_ids if s in state.subnets]
    via_group = sg_allows(target_groups, tg_port, None, alb_sg_ids, names=state.groups)
    via_cidr = alb_nets and all(sg_allows(target_groups, tg_port, n, ()) for n in alb_nets)
    if via_group or via_cidr:
        walk.passed("target security group", via_group or f"{groups_text(target_groups)} allows "
                                                          f"{tg_port} from every ALB subnet")
    else:
        walk.sg_in("target security group", target, tg_port, None, alb_sg_ids,
                   f"the ALB's security group {groups_text(alb_groups)}", role_label("target", target))


def _network_acls(walk: Walk, target: dict, subnet_ids: list[str], front_port: int, tg_port: int) -> None:
    """internet -> the ALB's subnets, and the ALB's subnets -> the target, replies included."""
    state = walk.state
    target_net = state.instance_net(target)
    problems_hop = "network ACLs"
    before = len(walk.hops)
    for subnet_id in subnet_ids:
        if subnet_id not in state.subnets:
            continue
        walk.nacl_flow(problems_hop, None, INTERNET, subnet_id, state.subnet_net(subnet_id), front_port, AWS_EPHEMERAL)
        walk.nacl_flow(problems_hop, subnet_id, state.subnet_net(subnet_id), target["subnet_id"], target_net,
                       tg_port, AWS_EPHEMERAL)
    merge_hops(walk, before, problems_hop, "network ACLs allow internet -> ALB and ALB -> target, with replies")


def _target_health(walk: Walk, tg: dict, reg: dict, target: dict, tg_port: int) -> None:
    """The ALB's own verdict, last: a configuration fault found above explains it, so that one is blocked first."""
    health = reg.get("target_health") or {}
    if health.get("state") == "healthy":
        walk.passed("target health", f"{label(target)} is healthy in {shown_name(tg['target_group_name'])}")
        return
    reason = shown_text(health.get("description") or health.get("reason") or "no reason given")
    walk.blocked("target health", f"{label(target)} is {health.get('state', 'unknown')} in target group "
                                  f"{shown_name(tg['target_group_name'])} ({reason})",
                 f"Make the health check pass: {tg.get('health_check_protocol', 'HTTP')} "
                 f"{shown_text(tg.get('health_check_path', '/'))} on port {tg_port} must answer "
                 f"{shown_text((tg.get('matcher') or {}).get('http_code', '200'))} (is the web server running and "
                 f"listening? does its security group admit the ALB?).")


def _listener_target_groups(listener: dict) -> list[str]:
    """Target groups a listener forwards to: its default action first, then its rules' actions."""
    arns = []
    actions = list(listener.get("default_actions") or [])
    for rule in listener.get("rules") or []:
        actions += rule.get("actions") or []
    for action in actions:
        if action.get("type") != "forward":
            continue
        if action.get("target_group_arn"):
            arns.append(action["target_group_arn"])
        for tg in (action.get("forward_config") or {}).get("target_groups") or []:
            arns.append(tg["target_group_arn"])
    return list(dict.fromkeys(arns))


def _registration(target_group: dict, target: dict) -> dict | None:
    for desc in target_group.get("targets_health_description") or []:
        tid = (desc.get("target") or {}).get("id")
        if tid in (target["instance_id"], target.get("private_ip_address")):
            return desc
    return None


def _alb_for(state: State, target: dict) -> tuple[dict | None, list[dict]]:
    """The target's ALB: one forwarding to a target group holding it, else the VPC's only ALB."""
    albs = [lb for lb in state.load_balancers
            if lb.get("vpc_id") == target.get("vpc_id") and lb.get("type", "application") == "application"]
    for lb in albs:
        for listener in lb.get("listeners") or []:
            for arn in _listener_target_groups(listener):
                tg = state.target_groups.get(arn)
                if tg and _registration(tg, target):
                    return lb, albs
    return (albs[0] if len(albs) == 1 else None), albs


def _tg_name(state: State, arn: str) -> str:
    tg = state.target_groups.get(arn)
    return shown_name(tg["target_group_name"] if tg else arn.rsplit("/", 2)[-2] if "/" in arn else arn)
