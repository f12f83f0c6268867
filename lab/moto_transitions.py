"""AWS's state transitions (pending -> running, provisioning -> active...) with delays, opt-in, for the local API.

moto creates an instance already ``running``, a NAT gateway already ``available`` and an application load
balancer ``active`` from its first DescribeLoadBalancers on; terminating and deleting take effect at once. So
provisioning's waits (``wait: true`` on ec2_instance and ec2_vpc_nat_gateway, anything that needs a running
instance or an available gateway) are never exercised here. With a delay per kind, the project's server
(lab/moto_server.py ``--transition-delays``, or FUMIDAI_MOTO_TRANSITIONS for lab/moto_local.py) reports what AWS
reports while a resource comes up or goes away, and the final state once its delay has passed:

* ``instance``: RunInstances -> ``pending``, then ``running``; TerminateInstances -> ``shutting-down``, then
  ``terminated`` (Stop/StartInstances stay immediate, as moto has them); AssociateAddress refuses a pending
  instance, as AWS does;
* ``nat_gateway``: CreateNatGateway -> ``pending``, then ``available``; DeleteNatGateway -> ``deleting``, then
  ``deleted``;
* ``load_balancer``: CreateLoadBalancer -> ``provisioning``, then ``active`` (DescribeLoadBalancers no longer
  activates it).

moto's own state manager (moto.moto_api.state_manager) models none of these three. Each state attribute becomes a
``TimedState`` descriptor: a write stores the state; a read first moves a step whose time has come to its final
state, so every API call (Describe*, filters, moto's checks such as "target not running") sees the state as of
now. A kind without a delay is not patched at all: off by default, everything stays immediate.

Each ``timed_*`` function patches one kind; ``apply`` installs those given a delay. They take the setter to patch
with (``setattr``; a test passes pytest's ``monkeypatch.setattr`` to undo them).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Setter = Callable[[Any, str, Any], None]
ENVIRONMENT = "FUMIDAI_MOTO_TRANSITIONS"  # what lab/moto_local.py reads when --transition-delays is not given
KINDS = ("instance", "nat_gateway", "load_balancer")
INSTANCE_CODES = {"pending": 0, "running": 16, "shutting-down": 32, "terminated": 48, "stopping": 64, "stopped": 80}
STEP = "_fumidai_step"  # where a resource keeps the transition it is in (its instance __dict__)
clock = time.monotonic  # a test may replace it to move time on without sleeping


def parse_delays(text: str) -> dict[str, float]:
    """``instance=2,nat_gateway=3,load_balancer=2`` -> seconds per kind; "" -> {} (off). An argparse type:
    a bad value fails with what is wrong (ArgumentTypeError)."""
    delays: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in (text or "").split(","))):
        kind, sep, seconds = item.partition("=")
        kind = kind.strip()
        if not sep or kind not in KINDS:
            raise argparse.ArgumentTypeError(f"{item!r}: expected KIND=SECONDS with KIND one of {', '.join(KINDS)}")
        try:
            delay = float(seconds)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{item!r}: {seconds.strip()!r} is not a number of seconds") from None
        if not 0 <= delay <= 3600:
            raise argparse.ArgumentTypeError(f"{item!r}: the delay must be between 0 and 3600 seconds")
        delays[kind] = delay
    return delays


def format_delays(delays: dict[str, float]) -> str:
    """The inverse of ``parse_delays``: what the server's --transition-delays takes."""
    return ",".join(f"{kind}={seconds:g}" for kind, seconds in delays.items())


@dataclass
class Step:
    """A resource on its way from ``interim`` to ``final``, which it reaches at ``due`` (``clock()`` time)."""

    interim: str
    final: str
    due: float


class TimedState:
    """The state attribute ``name`` of a moto model, moved from a step's interim state to its final one when
    read after the step is due. The value is kept in the resource's own __dict__ (a data descriptor wins over it).
    ``name_of`` and ``moved`` read and change the state name inside the value (a string, or moto's InstanceState)."""

    def __init__(self, name: str, name_of: Callable[[Any], str] = lambda v: v,
                 moved: Callable[[Any, str], Any] = lambda _v, final: final):
        self.name, self.name_of, self.moved = name, name_of, moved

    def __get__(self, resource, owner=None):
        if resource is None:
            return self
        value = resource.__dict__[self.name]
        step = resource.__dict__.get(STEP)
        if step is not None and clock() >= step.due:
            resource.__dict__.pop(STEP, None)
            # Something else changed the state meanwhile (moto's stop, say): that state stands.
            if self.name_of(value) == step.interim:
                value = resource.__dict__[self.name] = self.moved(value, step.final)
        return value

    def __set__(self, resource, value) -> None:
        resource.__dict__[self.name] = value


def begin(resource, attribute: str, interim: str, final: str, delay: float, interim_value: Any = None) -> None:
    """Put ``resource`` in ``interim`` now and in ``final`` after ``delay`` seconds."""
    setattr(resource, attribute, interim if interim_value is None else interim_value)
    resource.__dict__[STEP] = Step(interim, final, clock() + delay)


def _instance_state(name: str):
    from moto.ec2.models.instances import InstanceState

    return InstanceState(name, INSTANCE_CODES[name])


def timed_instances(delay: float, patch: Setter = setattr) -> None:
    """RunInstances: ``pending`` for ``delay`` seconds, then ``running``; TerminateInstances: ``shutting-down``,
    then ``terminated``.

    On AWS an instance is ``pending`` while it is placed and boots: an Elastic IP cannot be associated with it
    yet and a target group refuses it (InvalidTarget, "not in a running state"), which is why ec2_instance
    waits for ``running``. Terminating takes a while too (``shutting-down``); teardown waits for ``terminated``
    before it deletes the security groups and subnets the instance held.
    """
    from moto.ec2.models.instances import Instance

    original_init, original_terminate = Instance.__init__, Instance.terminate

    def __init__(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        begin(self, "_state", "pending", "running", delay, _instance_state("pending"))

    def terminate(self):
        previous = original_terminate(self)  # a copy of the state before, read through TimedState (as of now)
        if previous.name == "shutting-down":
            self._state = _instance_state("shutting-down")  # already on its way: keep its step
        elif previous.name != "terminated":
            begin(self, "_state", "shutting-down", "terminated", delay, _instance_state("shutting-down"))
        return previous

    def moved(state, final: str):
        state.name, state.code = final, INSTANCE_CODES[final]
        return state

    patch(Instance, "_state", TimedState("_state", name_of=lambda state: state.name, moved=moved))
    patch(Instance, "__init__", __init__)
    patch(Instance, "terminate", terminate)
    refuse_pending_association(patch)


def refuse_pending_association(patch: Setter = setattr) -> None:
    """AssociateAddress with a ``pending`` instance, or its interface: refused with AWS's codes and messages.

    AWS answers ``InvalidInstanceID`` ("The pending instance 'i-...' is not in a valid state for this
    operation") until the instance runs; moto associates at once. Only reachable with instance transitions on.
    """
    from moto.ec2.exceptions import EC2ClientError
    from moto.ec2.models.elastic_ip_addresses import ElasticAddressBackend

    original = ElasticAddressBackend.associate_address

    def associate_address(self, instance=None, eni=None, *args, **kwargs):
        if instance is not None and instance.state == "pending":
            raise EC2ClientError("InvalidInstanceID",
                                 f"The pending instance '{instance.id}' is not in a valid state for this operation.")
        attached = getattr(eni, "instance", None)
        if attached is not None and attached.state == "pending":
            raise EC2ClientError("IncorrectInstanceState", f"The pending-instance-creation instance to which "
                                 f"'{eni.id}' is attached is not in a valid state for this operation")
        return original(self, instance, eni, *args, **kwargs)

    patch(ElasticAddressBackend, "associate_address", associate_address)


def timed_nat_gateways(delay: float, patch: Setter = setattr) -> None:
    """CreateNatGateway: ``pending`` for ``delay`` seconds, then ``available``; DeleteNatGateway: ``deleting``,
    then ``deleted``.

    A NAT gateway takes minutes to come up on AWS; ec2_vpc_nat_gateway waits for ``available`` when asked to.
    A deleting one still holds its subnet (DeleteSubnet: DependencyViolation until it is ``deleted``), which is
    why teardown waits for ``deleted``.
    """
    from moto.ec2.models.nat_gateways import NatGateway, NatGatewayBackend

    original_init, original_delete = NatGateway.__init__, NatGatewayBackend.delete_nat_gateway

    def __init__(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        begin(self, "state", "pending", "available", delay)

    def delete_nat_gateway(self, nat_gateway_id):
        found = self.nat_gateways.get(nat_gateway_id)
        previous = found.state if found is not None else None
        nat_gateway = original_delete(self, nat_gateway_id)
        if previous == "deleting":
            nat_gateway.state = "deleting"  # already on its way: keep its step
        elif previous != "deleted":
            begin(nat_gateway, "state", "deleting", "deleted", delay)
        return nat_gateway

    patch(NatGateway, "state", TimedState("state"))
    patch(NatGateway, "__init__", __init__)
    patch(NatGatewayBackend, "delete_nat_gateway", delete_nat_gateway)


def timed_load_balancers(delay: float, patch: Setter = setattr) -> None:
    """CreateLoadBalancer: ``provisioning`` for ``delay`` seconds, then ``active``.

    moto answers ``provisioning`` to the create call and turns the balancer ``active`` on the next
    DescribeLoadBalancers, so a waiter (elb_application_lb's ``wait``, the ``load_balancer_available`` waiter)
    never waits. On AWS it takes a minute or more; its DNS name does not answer before. Here the time decides:
    moto's activate-on-describe is turned off.
    """
    from moto.elbv2.models import FakeLoadBalancer

    original_init = FakeLoadBalancer.__init__

    def __init__(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        if self.state == "provisioning":
            begin(self, "state", "provisioning", "active", delay)

    def activate(self) -> None:
        """Nothing: TimedState makes it active when its time comes."""

    patch(FakeLoadBalancer, "state", TimedState("state"))
    patch(FakeLoadBalancer, "__init__", __init__)
    patch(FakeLoadBalancer, "activate", activate)


TIMED = {"instance": timed_instances, "nat_gateway": timed_nat_gateways, "load_balancer": timed_load_balancers}


def apply(delays: dict[str, float], patch: Setter = setattr) -> None:
    """Time the transitions of each kind given a delay above 0; the others stay as moto has them (immediate)."""
    for kind, delay in delays.items():
        if delay > 0:
            TIMED[kind](delay, patch)
