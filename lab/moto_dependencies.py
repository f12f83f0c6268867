"""AWS's dependency rules on delete, which moto skips, for the project's local API (lab/moto_server.py).

moto deletes a security group still in use, a subnet that still holds instances, a VPC with its internet
gateway attached, and releases an Elastic IP still associated; so a teardown in the wrong order passes
against it and fails on an account. This module makes the local API refuse what AWS refuses, with AWS's
error codes:

* DeleteSecurityGroup: ``DependencyViolation`` while a live instance, a network interface or a load
  balancer uses the group, or another group's rule references it;
* DeleteSubnet: ``DependencyViolation`` while it holds a live instance, a network interface, a NAT gateway
  that is not deleted, or a load balancer;
* DeleteVpc: ``DependencyViolation`` while an internet gateway is attached or a non-default security group
  is left (moto itself refuses subnets and route tables);
* DetachInternetGateway: ``DependencyViolation`` while a network interface in the VPC has a public address
  ("mapped public addresses");
* ReleaseAddress: ``InvalidIPAddress.InUse`` while the address is associated.

(DeleteTargetGroup in use by a listener: moto already answers ``ResourceInUse``.)

And what AWS does that makes the right order work, which moto leaves out: terminating an instance
disassociates its Elastic IPs and deletes the network interfaces it was launched with; deleting a NAT
gateway disassociates its Elastic IP and deletes its network interface. (Both happen at the call here, also
while the opt-in transitions keep the instance ``shutting-down``; the instance itself holds its groups and
subnet until it is ``terminated``, so the refusals above wait for that as on AWS.)

Each ``refuse_*``/``follow_*`` function patches one moto method; ``apply`` installs them all. They take the
setter to patch with (``setattr``; a test passes pytest's ``monkeypatch.setattr`` to undo them).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Setter = Callable[[Any, str, Any], None]
# Only a terminated instance lets go: AWS refuses the delete while it is still shutting down
# (lab/moto_transitions.py keeps one shutting-down for a while, as AWS does).
GONE = ("terminated",)


def _live_instances(backend) -> list:
    return [i for i in backend.all_instances() if i._state.name not in GONE]


def _load_balancers(backend) -> list:
    """The ELBv2 load balancers of the EC2 backend's account and region."""
    from moto.elbv2.models import elbv2_backends

    return list(elbv2_backends[backend.account_id][backend.region_name].load_balancers.values())


def _dependency(message: str):
    from moto.ec2.exceptions import DependencyViolationError

    return DependencyViolationError(message)


def security_group_users(backend, group_id: str) -> list[str]:
    """What keeps a security group from being deleted: instance, interface, load balancer and rule ids."""
    users = [i.id for i in _live_instances(backend) if group_id in {g.id for g in i.security_groups}]
    users += [e.id for e in backend.enis.values() if group_id in {g.id for g in e.group_set}]
    users += [lb.name for lb in _load_balancers(backend) if group_id in (lb.security_groups or [])]
    for groups in backend.groups.values():
        for group in groups.values():
            if group.id == group_id:
                continue
            for rule in [*group.ingress_rules, *group.egress_rules]:
                # moto keeps one rule per peer: its source_group ({"GroupId": ...} or empty).
                if (getattr(rule, "source_group", None) or {}).get("GroupId") == group_id:
                    users.append(f"{group.id} (a rule references it)")
                    break
    return sorted(set(users))


def subnet_users(backend, subnet_id: str) -> list[str]:
    """What keeps a subnet from being deleted: instances, interfaces, NAT gateways, load balancers."""
    users = [i.id for i in _live_instances(backend) if i.subnet_id == subnet_id]
    users += [e.id for e in backend.enis.values() if e.subnet.id == subnet_id]
    users += [n.id for n in backend.nat_gateways.values() if n.subnet_id == subnet_id and n.state != "deleted"]
    users += [lb.name for lb in _load_balancers(backend) if subnet_id in {s.id for s in lb.subnets}]
    return sorted(set(users))


def refuse_security_group_delete(patch: Setter = setattr) -> None:
    from moto.ec2.models.security_groups import SecurityGroupBackend

    original = SecurityGroupBackend.delete_security_group

    def delete_security_group(self, name=None, group_id=None):
        group = self.get_security_group_by_name_or_id(group_id or name)
        if group is not None:
            users = security_group_users(self, group.id)
            if users:
                raise _dependency(f"resource {group.id} has a dependent object ({', '.join(users)})")
        return original(self, name=name, group_id=group_id)

    patch(SecurityGroupBackend, "delete_security_group", delete_security_group)


def vpc_users(backend, vpc_id: str) -> list[str]:
    """What keeps a VPC from being deleted beyond moto's own checks: attached gateways, its own groups."""
    users = [g.id for g in backend.internet_gateways.values() if g.vpc is not None and g.vpc.id == vpc_id]
    users += [g.id for g in backend.groups.get(vpc_id, {}).values() if g.name != "default"]
    return users


def _refuse_delete(patch: Setter, backend_class, method: str, users_of, kind: str) -> None:
    """Wrap ``backend_class.method(self, resource_id)``: DependencyViolation while ``users_of`` names anything."""
    original = getattr(backend_class, method)

    def delete(self, resource_id):
        users = users_of(self, resource_id)
        if users:
            raise _dependency(f"The {kind} '{resource_id}' has dependencies and cannot be deleted. "
                              f"({', '.join(users)})")
        return original(self, resource_id)

    patch(backend_class, method, delete)


def refuse_subnet_delete(patch: Setter = setattr) -> None:
    from moto.ec2.models.subnets import SubnetBackend

    _refuse_delete(patch, SubnetBackend, "delete_subnet", subnet_users, "subnet")


def refuse_vpc_delete(patch: Setter = setattr) -> None:
    from moto.ec2.models.vpcs import VPCBackend

    _refuse_delete(patch, VPCBackend, "delete_vpc", vpc_users, "vpc")


def refuse_gateway_detach(patch: Setter = setattr) -> None:
    from moto.ec2.models.internet_gateways import InternetGatewayBackend

    original = InternetGatewayBackend.detach_internet_gateway

    def detach_internet_gateway(self, internet_gateway_id, vpc_id):
        mapped = [e.id for e in self.enis.values() if e.subnet.vpc_id == vpc_id and e.public_ip]
        if mapped:
            raise _dependency(f"Network {vpc_id} has some mapped public address(es). Please unmap those public "
                              f"address(es) before detaching the gateway. ({', '.join(sorted(mapped))})")
        return original(self, internet_gateway_id, vpc_id)

    patch(InternetGatewayBackend, "detach_internet_gateway", detach_internet_gateway)


def refuse_associated_address_release(patch: Setter = setattr) -> None:
    from moto.ec2.exceptions import EC2ClientError
    from moto.ec2.models.elastic_ip_addresses import ElasticAddressBackend

    original = ElasticAddressBackend.release_address

    def release_address(self, address=None, allocation_id=None):
        found = self.address_by_ip([address]) if address else self.address_by_allocation([allocation_id])
        if found and (found[0].association_id or found[0].eni is not None or found[0].instance is not None):
            raise EC2ClientError("InvalidIPAddress.InUse", f"Address {found[0].public_ip} is in use.")
        return original(self, address=address, allocation_id=allocation_id)

    patch(ElasticAddressBackend, "release_address", release_address)


def _disassociate_addresses_of(backend, enis) -> None:
    for eni in enis:
        for eip in [a for a in backend.addresses if a.eni is eni]:
            backend.disassociate_address(address=eip.public_ip)


def _delete_interface(backend, eni) -> None:
    if eni.id in backend.enis:
        eni.delete()


def follow_instance_termination(patch: Setter = setattr) -> None:
    """Terminating an instance frees its addresses and the interfaces it was launched with, as on AWS."""
    from moto.ec2.models.instances import Instance

    original = Instance.terminate

    def terminate(self):
        nics = list(self.nics.values())
        _disassociate_addresses_of(self.ec2_backend, nics)
        state = original(self)
        # Gone from the API, still on the instance's record (moto describes a terminated instance through it).
        for nic in nics:
            _delete_interface(self.ec2_backend, nic)
        return state

    patch(Instance, "terminate", terminate)


def follow_nat_gateway_deletion(patch: Setter = setattr) -> None:
    """Deleting a NAT gateway frees its Elastic IP and deletes its interface, as on AWS."""
    from moto.ec2.models.nat_gateways import NatGatewayBackend

    original = NatGatewayBackend.delete_nat_gateway

    def delete_nat_gateway(self, nat_gateway_id):
        nat_gateway = original(self, nat_gateway_id)
        eni = getattr(nat_gateway, "_eni", None)
        if eni is not None:
            _disassociate_addresses_of(self, [eni])
            _delete_interface(self, eni)
        return nat_gateway

    patch(NatGatewayBackend, "delete_nat_gateway", delete_nat_gateway)


def apply(patch: Setter = setattr) -> None:
    """Every refusal and every side effect above. A test that wants a detached gateway stages it as AWS allows:
    detached before any public address exists (tests/integration/test_doctor.py) or never attached
    (test_resume.py)."""
    follow_instance_termination(patch)
    follow_nat_gateway_deletion(patch)
    refuse_security_group_delete(patch)
    refuse_subnet_delete(patch)
    refuse_vpc_delete(patch)
    refuse_gateway_detach(patch)
    refuse_associated_address_release(patch)
