"""Route states as AWS reports them (``blackhole`` when the target is gone), for the project's local API.

moto answers every route ``active``. AWS reports ``blackhole`` while the route's target cannot carry traffic,
and ``active`` again as soon as it can, so the doctor, the audit and the lab read a dead route as dead here too.
The state is computed when DescribeRouteTables answers, from the target as it is now:

* an internet gateway: deleted, or not attached to the route table's VPC;
* a NAT gateway: ``deleting``, ``deleted`` or ``failed``;
* an instance (a NAT instance, routed by ``InstanceId``): stopping, stopped, shutting down or terminated;
* a network interface (``NetworkInterfaceId``): deleted, attached to no instance, or its instance is one of
  the above.

Other targets (VPN and transit gateways, peering, endpoints) stay as moto has them: the project uses none.

``report_blackhole_routes`` patches one moto property; ``apply`` installs it. It takes the setter to patch
with (``setattr``; a test passes pytest's ``monkeypatch.setattr`` to undo it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Setter = Callable[[Any, str, Any], None]
NAT_GATEWAY_GONE = ("deleting", "deleted", "failed")
# Not "pending": a starting instance is on its way to carrying traffic, and AWS's route follows it.
INSTANCE_DOWN = ("stopping", "stopped", "shutting-down", "terminated")


def _gateway_gone(route) -> bool:
    from moto.ec2.models.internet_gateways import InternetGateway

    gateway = route.gateway
    if not isinstance(gateway, InternetGateway):
        return False
    backend = route.route_table.ec2_backend
    attached_to = gateway.vpc.id if gateway.vpc is not None else None
    return backend.internet_gateways.get(gateway.id) is not gateway or attached_to != route.route_table.vpc_id


def _instance_down(instance) -> bool:
    return instance is not None and instance._state.name in INSTANCE_DOWN


def _interface_gone(route) -> bool:
    interface = route.interface
    backend = route.route_table.ec2_backend
    return (backend.enis.get(interface.id) is not interface or interface.instance is None
            or _instance_down(interface.instance))


def route_state(route) -> str:
    """``blackhole`` when the route's target cannot carry its traffic now, else ``active``."""
    if route.local:
        return "active"
    gone = (_gateway_gone(route) if route.gateway is not None else False) \
        or (route.nat_gateway is not None and route.nat_gateway.state in NAT_GATEWAY_GONE) \
        or _instance_down(route.instance) \
        or (route.interface is not None and _interface_gone(route))
    return "blackhole" if gone else "active"


def report_blackhole_routes(patch: Setter = setattr) -> None:
    """DescribeRouteTables: a route whose target is gone is ``blackhole``, and ``active`` again once it is back.

    On AWS a route outlives its target: detaching the internet gateway, deleting a NAT gateway or stopping the
    NAT instance leaves the route in place, reported ``blackhole`` (traffic is dropped); re-attaching the gateway
    or starting the instance makes it ``active`` again without touching the route. moto's ``Route.state`` is a
    constant ``active``, which is what its response serializer reads.
    """
    from moto.ec2.models.route_tables import Route

    patch(Route, "state", property(route_state))


def apply(patch: Setter = setattr) -> None:
    """Every fix above."""
    report_blackhole_routes(patch)
