"""Walk: the hop verdicts of one path (PASS, BLOCKED with the fix, SKIPPED), and the checks paths share.

The shared checks: an instance is running, an internet gateway is attached (and routed to), a subnet is
public, a blackhole route's target is only detached or stopped (its own hop names the fix), security groups
admit a connection in or out, the network ACLs on a flow let it and its replies through. Rule evaluation
is vpc_rules's; this file turns its answers into verdicts and fixes in words.
"""

from __future__ import annotations

from ansible_collections.fumidai.vpc.plugins.module_utils.doctor.naming import (
    groups_text,
    net_text,
    port_text,
    role_label,
)
from ansible_collections.fumidai.vpc.plugins.module_utils.doctor.state import State
from ansible_collections.fumidai.vpc.plugins.module_utils.vpc_model import default_route, label, route_target
from ansible_collections.fumidai.vpc.plugins.module_utils.vpc_rules import nacl_verdict, sg_allows

PASS = "PASS"
BLOCKED = "BLOCKED"
SKIPPED = "SKIPPED"
DEGRADED = "DEGRADED"  # passes, with less to spare (e.g. through the other zone's bastion): says why and the fix


class Walk:
    """Collects hop verdicts for one path."""

    def __init__(self, state: State, path: str, target: dict):
        self.state = state
        self.path = path
        self.target = target
        self.hops: list[dict] = []

    def hop(self, name: str, status: str, detail: str, fix: str = "") -> bool:
        self.hops.append({"hop": name, "status": status, "detail": detail, "fix": fix})
        return status == PASS

    def passed(self, name: str, detail: str) -> bool:
        return self.hop(name, PASS, detail)

    def blocked(self, name: str, detail: str, fix: str) -> bool:
        return self.hop(name, BLOCKED, detail, fix)

    def degraded(self, name: str, detail: str, fix: str) -> bool:
        self.hop(name, DEGRADED, detail, fix)
        return True

    def skip(self, names: list[str], because: str) -> None:
        for name in names:
            self.hop(name, SKIPPED, f"not checked: {because}")

    # shared checks -------------------------------------------------------
    def instance_running(self, name: str, inst: dict, role: str) -> bool:
        state = (inst.get("state") or {}).get("name", "unknown")
        if state == "running":
            return self.passed(name, f"{role_label(role, inst)} is running")
        return self.blocked(name, f"{role_label(role, inst)} is {state}",
                            f"Start it (EC2 console: Instance state > Start, or "
                            f"aws ec2 start-instances --instance-ids {inst['instance_id']}).")

    def target_still_there(self, vpc_id: str | None, target: tuple[str, str] | None) -> bool:
        """Whether a blackhole route's target still exists, only detached or stopped: then the hop that checks
        the target names the fix (attach the gateway, start the instance). A target gone for good (deleted
        gateway, NAT gateway or interface, terminated instance) needs the route replaced instead."""
        kind, target_id = target or (None, None)
        if kind == "internet_gateway":
            igw = self.state.igws.get(target_id)
            return igw is not None and self.state.attached_igw(vpc_id) is not igw
        if kind in ("instance", "network_interface"):
            found = (self.state.instance_by_id if kind == "instance" else self.state.instance_by_eni)(target_id)
            return found is not None and (found.get("state") or {}).get("name") != "running"
        return False

    def internet_gateway(self, vpc_id: str, via_route: dict | None = None) -> bool:
        """The VPC has an attached IGW, and the route (if given) points at it."""
        name = "internet gateway"
        igw = self.state.attached_igw(vpc_id)
        target = route_target(via_route) if via_route else None
        if igw and (not target or target[1] == igw["internet_gateway_id"]):
            return self.passed(name, f"{label(igw)} is attached to {vpc_id}")
        if target and target[0] == "internet_gateway":
            routed = self.state.igws.get(target[1])
            if igw:
                return self.blocked(name, f"the route sends 0.0.0.0/0 to {label(routed, target[1])}, "
                                          f"but the gateway attached to {vpc_id} is {label(igw)}",
                                    f"Point the route at {igw['internet_gateway_id']}.")
            return self.blocked(name, f"{label(routed, target[1])} is not attached to {vpc_id}: "
                                      f"routes to it go nowhere (blackhole)",
                                f"Attach it (VPC console: Internet gateways > Actions > Attach to VPC, or "
                                f"aws ec2 attach-internet-gateway --internet-gateway-id {target[1]} "
                                f"--vpc-id {vpc_id}).")
        return self.blocked(name, f"no internet gateway is attached to {vpc_id}",
                            f"Create one and attach it to {vpc_id}, then route 0.0.0.0/0 of the public "
                            f"subnets to it.")

    def public_subnet(self, name: str, subnet_id: str, who: str) -> tuple[bool, dict | None]:
        """The subnet's route table sends 0.0.0.0/0 to an internet gateway."""
        table = self.state.route_table(subnet_id)
        route = default_route(table)
        target = route_target(route)
        subnet = self.state.subnet_label(subnet_id)
        table_text = self.state.route_table_text(table, "?")
        blackhole = bool(route) and route.get("state") == "blackhole"
        if blackhole and not self.target_still_there(self.state.vpc_of_subnet(subnet_id), target):
            return self.blocked(name, f"{subnet}'s route table {table_text} has a blackhole 0.0.0.0/0 route "
                                      f"(its target {target[1] if target else '?'} is gone)",
                                "Replace the route with 0.0.0.0/0 -> the VPC's internet gateway."), route
        if target and target[0] == "internet_gateway":
            detached = " (a blackhole while the gateway is not attached)" if blackhole else ""
            return self.passed(name, f"{who} is in public subnet {subnet}: {table_text} sends "
                                     f"0.0.0.0/0 to {target[1]}{detached}"), route
        where = f"sends 0.0.0.0/0 to {target[1]}" if target else "has no 0.0.0.0/0 route"
        return self.blocked(name, f"{who} is in {subnet}, which is not public: its route table {table_text} {where}",
                            f"Add the route 0.0.0.0/0 -> the VPC's internet gateway to {table_text}, or move "
                            f"the {who.split()[0]} to a public subnet."), route

    def sg_in(self, name: str, inst_or_groups, port: int, peer_net, peer_sg_ids, peer_text: str,
              owner_text: str) -> bool:
        groups = inst_or_groups if isinstance(inst_or_groups, list) else self.state.instance_groups(inst_or_groups)
        how = sg_allows(groups, port, peer_net, peer_sg_ids, names=self.state.groups)
        if how:
            return self.passed(name, how)
        names = groups_text(groups) or "no security group"
        group_id = groups[0]["group_id"] if groups else "<sg-id>"
        return self.blocked(name, f"{owner_text}'s security group {names} does not allow TCP {port} from {peer_text}",
                            f"Add an inbound rule to {names}: TCP {port} from {peer_text} (e.g. "
                            f"aws ec2 authorize-security-group-ingress --group-id {group_id} --protocol tcp "
                            f"--port {port} {_source_arg(peer_net, peer_sg_ids)}).")

    def sg_out(self, name: str, groups: list[dict], port: int, peer_net, peer_sg_ids, peer_text: str,
               owner_text: str) -> bool:
        how = sg_allows(groups, port, peer_net, peer_sg_ids, egress=True, names=self.state.groups)
        if how:
            return self.passed(name, how)
        names = groups_text(groups) or "no security group"
        return self.blocked(name, f"{owner_text}'s security group {names} does not allow TCP {port} out to {peer_text}",
                            f"Add an outbound rule to {names}: TCP {port} to {peer_text} only (fumidai's groups "
                            "allow just what each tier needs out: see aws_security_groups_forward_ports and "
                            "aws_security_groups_update_ports).")

    def nacl_problems(self, subnet_id: str, egress: bool, ports: tuple[int, int], peer_net) -> list[tuple[str, str]]:
        nacl = self.state.nacl_for_subnet(subnet_id)
        if nacl is None:
            return []
        allowed, rule = nacl_verdict(nacl, egress, ports, peer_net)
        if allowed:
            return []
        direction, prep = ("outbound", "to") if egress else ("inbound", "from")
        subnet = self.state.subnet_label(subnet_id)
        nacl_name = label(nacl, nacl.get("nacl_id") or nacl.get("network_acl_id"))
        by = f"rule {rule['rule']} denies it" if rule else "no rule allows it (the final * rule denies)"
        what = f"TCP {port_text(ports)} {direction} {prep} {net_text(peer_net)}"
        before = f" numbered below {rule['rule']}" if rule else ""
        return [(f"network ACL {nacl_name} of {subnet} blocks {what}: {by}",
                 f"Add an {direction} allow rule to {nacl_name}{before}: {what}"
                 f"{' (or remove that deny rule)' if rule else ''}. NACLs are stateless: both directions need a rule.")]

    def nacl_flow(self, name: str, client_subnet: str | None, client_net, server_subnet: str | None, server_net,
                  port: int, ephemeral: tuple[int, int]) -> bool:
        """A TCP connection client -> server:port, replies back: every NACL it crosses."""
        problems = []
        if client_subnet and client_subnet != server_subnet:
            problems += self.nacl_problems(client_subnet, True, (port, port), server_net)
            problems += self.nacl_problems(client_subnet, False, ephemeral, server_net)
        if server_subnet and server_subnet != client_subnet:
            problems += self.nacl_problems(server_subnet, False, (port, port), client_net)
            problems += self.nacl_problems(server_subnet, True, ephemeral, client_net)
        if problems:
            return self.blocked(name, "; ".join(p[0] for p in problems), " ".join(p[1] for p in problems))
        if client_subnet == server_subnet:
            return self.passed(name, "same subnet: traffic does not cross a network ACL")
        return self.passed(name, f"network ACLs allow TCP {port} and the replies")


def _source_arg(peer_net, peer_sg_ids) -> str:
    if peer_sg_ids:
        return f"--source-group {sorted(peer_sg_ids)[0]}"
    return f"--cidr {peer_net}"


def merge_hops(walk: Walk, start: int, name: str, pass_text: str) -> None:
    """Fold several checks recorded under one hop name into one verdict."""
    parts = walk.hops[start:]
    del walk.hops[start:]
    blocked = [h for h in parts if h["status"] == BLOCKED]
    if blocked:
        walk.blocked(name, "; ".join(dict.fromkeys(h["detail"] for h in blocked)),
                     " ".join(dict.fromkeys(h["fix"] for h in blocked)))
    else:
        walk.passed(name, pass_text)
