"""lab/moto_transitions.py: with a delay per kind, instances, NAT gateways and load balancers pass through AWS's
pending states (pending, shutting-down, deleting, provisioning) before their final one; without, all is immediate.

Against moto in-process with the patches installed for the test only (monkeypatch undoes them) and the module's
clock moved on by the test instead of slept through; then once against the project's server, started the way the
lab and `make demo` start it (lab/moto_local.py, setting FUMIDAI_MOTO_TRANSITIONS), in real time.
"""

from __future__ import annotations

import argparse

import pytest
from botocore.exceptions import ClientError

from lab import moto_dependencies, moto_local, moto_transitions
from tests.support.aws_seed import in_process

DELAY = 1.0
IMAGE = "ami-0f0d1e1a2b3c4d5e6"  # one of lab/moto_amis.json's images


class Clock:
    """moto_transitions' clock, moved on by the test."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float = DELAY) -> None:
        self.now += seconds


def network(seed) -> dict:
    ec2 = seed.ec2
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    zones = [z["ZoneName"] for z in ec2.describe_availability_zones()["AvailabilityZones"]][:2]
    subnets = [ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{n}.0/24", AvailabilityZone=zone)["Subnet"]["SubnetId"]
               for n, zone in enumerate(zones, start=1)]
    return {"vpc": vpc, "subnets": subnets}


def lenient(monkeypatch):
    """monkeypatch.setattr that may add a class attribute (the state descriptors are new ones); undone after."""
    return lambda target, name, value: monkeypatch.setattr(target, name, value, raising=False)


@pytest.fixture(scope="module")
def moto():
    """One in-process moto for the module's tests, each making resources of its own."""
    with in_process() as seed:
        yield seed, network(seed)


@pytest.fixture
def timed(moto, monkeypatch):
    """The transitions on, with DELAY for every kind, for this test; its clock the test's."""
    clock = Clock()
    monkeypatch.setattr(moto_transitions, "clock", clock)
    moto_transitions.apply(dict.fromkeys(moto_transitions.KINDS, DELAY), lenient(monkeypatch))
    return (*moto, clock)


def instance_state(ec2, instance_id: str) -> str:
    return ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]["State"]["Name"]


def with_state(ec2, state: str) -> list[str]:
    found = ec2.describe_instances(Filters=[{"Name": "instance-state-name", "Values": [state]}])["Reservations"]
    return [i["InstanceId"] for r in found for i in r["Instances"]]


def nat_state(ec2, nat_id: str) -> str:
    return ec2.describe_nat_gateways(NatGatewayIds=[nat_id])["NatGateways"][0]["State"]


def nats_in(ec2, state: str) -> list[str]:
    found = ec2.describe_nat_gateways(Filters=[{"Name": "state", "Values": [state]}])["NatGateways"]
    return [n["NatGatewayId"] for n in found]


def lb_state(elbv2, arn: str) -> str:
    return elbv2.describe_load_balancers(LoadBalancerArns=[arn])["LoadBalancers"][0]["State"]["Code"]


def launch(ec2, subnet: str) -> dict:
    return ec2.run_instances(ImageId=IMAGE, MinCount=1, MaxCount=1, SubnetId=subnet)["Instances"][0]


def create_nat_gateway(ec2, subnet: str) -> dict:
    allocation = ec2.allocate_address(Domain="vpc")["AllocationId"]
    return ec2.create_nat_gateway(SubnetId=subnet, AllocationId=allocation)["NatGateway"]


def create_alb(elbv2, subnets: list[str], name: str = "fumidai-alb") -> dict:
    return elbv2.create_load_balancer(Name=name, Subnets=subnets)["LoadBalancers"][0]


# --- the setting -----------------------------------------------------------------------------------

def test_delays_are_read_per_kind_and_written_back_the_same():
    text = "instance=2, nat_gateway=3,load_balancer=0.5"
    delays = moto_transitions.parse_delays(text)
    assert delays == {"instance": 2.0, "nat_gateway": 3.0, "load_balancer": 0.5}
    assert moto_transitions.parse_delays(moto_transitions.format_delays(delays)) == delays
    assert moto_transitions.parse_delays("") == {}


@pytest.mark.parametrize("text, says", [("instances=2", "KIND=SECONDS"), ("instance", "KIND=SECONDS"),
                                        ("instance=soon", "not a number"), ("instance=-1", "between 0 and 3600"),
                                        ("instance=nan", "between 0 and 3600")])
def test_a_bad_delay_is_refused_with_what_is_wrong(text, says):
    with pytest.raises(argparse.ArgumentTypeError, match=says):
        moto_transitions.parse_delays(text)


# --- instances -------------------------------------------------------------------------------------

def test_an_instance_is_pending_until_its_delay_has_passed_then_running(timed):
    seed, net, clock = timed
    ec2 = seed.ec2
    launched = launch(ec2, net["subnets"][0])
    instance_id = launched["InstanceId"]
    assert launched["State"] == {"Code": 0, "Name": "pending"}
    clock.advance(DELAY / 2)
    assert instance_state(ec2, instance_id) == "pending"
    assert instance_id in with_state(ec2, "pending") and instance_id not in with_state(ec2, "running")
    # DescribeInstanceStatus lists running instances only, unless asked for all.
    assert ec2.describe_instance_status(InstanceIds=[instance_id])["InstanceStatuses"] == []
    everything = ec2.describe_instance_status(InstanceIds=[instance_id], IncludeAllInstances=True)
    assert everything["InstanceStatuses"][0]["InstanceState"]["Name"] == "pending"
    # What provisioning's wait is for: a target group refuses an instance that is not running yet.
    group = seed.elbv2.create_target_group(Name="fumidai-web", Protocol="HTTP", Port=80, VpcId=net["vpc"],
                                           TargetType="instance")["TargetGroups"][0]["TargetGroupArn"]
    with pytest.raises(ClientError, match="not in a running state"):
        seed.elbv2.register_targets(TargetGroupArn=group, Targets=[{"Id": instance_id}])

    clock.advance(DELAY / 2)
    assert instance_state(ec2, instance_id) == "running"
    assert instance_id in with_state(ec2, "running") and instance_id not in with_state(ec2, "pending")
    status = ec2.describe_instance_status(InstanceIds=[instance_id])["InstanceStatuses"]
    assert status[0]["InstanceState"] == {"Code": 16, "Name": "running"}
    seed.elbv2.register_targets(TargetGroupArn=group, Targets=[{"Id": instance_id}])


def test_an_elastic_ip_is_not_associated_with_a_pending_instance(timed):
    seed, net, clock = timed
    ec2 = seed.ec2
    launched = launch(ec2, net["subnets"][0])
    instance_id, interface = launched["InstanceId"], launched["NetworkInterfaces"][0]["NetworkInterfaceId"]
    allocation = ec2.allocate_address(Domain="vpc")["AllocationId"]
    with pytest.raises(ClientError, match=f"The pending instance '{instance_id}' is not in a valid state") as refused:
        ec2.associate_address(AllocationId=allocation, InstanceId=instance_id)
    assert refused.value.response["Error"]["Code"] == "InvalidInstanceID"
    with pytest.raises(ClientError, match="IncorrectInstanceState"):
        ec2.associate_address(AllocationId=allocation, NetworkInterfaceId=interface)
    assert "AssociationId" not in ec2.describe_addresses(AllocationIds=[allocation])["Addresses"][0]
    clock.advance()
    ec2.associate_address(AllocationId=allocation, InstanceId=instance_id)
    assert ec2.describe_addresses(AllocationIds=[allocation])["Addresses"][0]["InstanceId"] == instance_id


def test_a_terminated_instance_is_shutting_down_until_its_delay_has_passed(timed):
    seed, net, clock = timed
    ec2 = seed.ec2
    instance_id = launch(ec2, net["subnets"][0])["InstanceId"]
    clock.advance()
    answer = ec2.terminate_instances(InstanceIds=[instance_id])["TerminatingInstances"][0]
    assert answer["PreviousState"]["Name"] == "running"
    assert answer["CurrentState"]["Name"] == "shutting-down"
    assert instance_state(ec2, instance_id) == "shutting-down"
    ec2.terminate_instances(InstanceIds=[instance_id])  # again while shutting down: its time does not restart
    clock.advance(DELAY - 0.1)
    assert instance_state(ec2, instance_id) == "shutting-down"
    clock.advance(0.1)
    assert instance_state(ec2, instance_id) == "terminated"
    ec2.terminate_instances(InstanceIds=[instance_id])  # and once terminated, it stays so
    assert instance_state(ec2, instance_id) == "terminated"


def test_an_instance_terminated_while_pending_goes_through_shutting_down(timed):
    seed, net, clock = timed
    instance_id = launch(seed.ec2, net["subnets"][0])["InstanceId"]
    seed.ec2.terminate_instances(InstanceIds=[instance_id])
    assert instance_state(seed.ec2, instance_id) == "shutting-down"
    clock.advance()
    assert instance_state(seed.ec2, instance_id) == "terminated"


# --- NAT gateways ----------------------------------------------------------------------------------

def test_a_nat_gateway_is_pending_then_available_and_deleting_then_deleted(timed):
    seed, net, clock = timed
    ec2 = seed.ec2
    created = create_nat_gateway(ec2, net["subnets"][0])
    nat_id = created["NatGatewayId"]
    assert created["State"] == "pending"
    assert nat_state(ec2, nat_id) == "pending"
    assert nat_id not in nats_in(ec2, "available") and nat_id in nats_in(ec2, "pending")
    clock.advance()
    assert nat_state(ec2, nat_id) == "available"
    assert nat_id in nats_in(ec2, "available") and nat_id not in nats_in(ec2, "pending")

    ec2.delete_nat_gateway(NatGatewayId=nat_id)
    assert nat_state(ec2, nat_id) == "deleting"
    clock.advance()
    assert nat_state(ec2, nat_id) == "deleted"


def test_a_deleting_nat_gateway_still_holds_its_subnet(timed, monkeypatch):
    """With the server's dependency rules (lab/moto_dependencies.py), as on AWS: teardown must wait for deleted."""
    seed, net, clock = timed
    moto_dependencies.follow_nat_gateway_deletion(monkeypatch.setattr)
    moto_dependencies.refuse_subnet_delete(monkeypatch.setattr)
    ec2 = seed.ec2
    subnet = ec2.create_subnet(VpcId=net["vpc"], CidrBlock="10.0.9.0/24")["Subnet"]["SubnetId"]
    nat_id = create_nat_gateway(ec2, subnet)["NatGatewayId"]
    clock.advance()
    ec2.delete_nat_gateway(NatGatewayId=nat_id)
    with pytest.raises(ClientError, match=f"DependencyViolation.*{nat_id}"):
        ec2.delete_subnet(SubnetId=subnet)
    clock.advance()
    ec2.delete_subnet(SubnetId=subnet)


# --- load balancers --------------------------------------------------------------------------------

def test_a_load_balancer_is_provisioning_until_its_delay_has_passed_then_active(timed):
    seed, net, clock = timed
    created = create_alb(seed.elbv2, net["subnets"])
    assert created["State"]["Code"] == "provisioning"
    # moto alone would make it active on this first describe.
    assert lb_state(seed.elbv2, created["LoadBalancerArn"]) == "provisioning"
    everything = seed.elbv2.describe_load_balancers()["LoadBalancers"]
    assert {lb["LoadBalancerArn"]: lb["State"]["Code"] for lb in everything}[created["LoadBalancerArn"]] == \
        "provisioning"
    clock.advance()
    assert lb_state(seed.elbv2, created["LoadBalancerArn"]) == "active"


# --- off -------------------------------------------------------------------------------------------

def test_without_delays_every_state_is_immediate(moto):
    seed, net = moto
    instance_id = launch(seed.ec2, net["subnets"][0])["InstanceId"]
    assert instance_state(seed.ec2, instance_id) == "running"
    nat = create_nat_gateway(seed.ec2, net["subnets"][0])
    assert nat["State"] == "available"
    seed.ec2.delete_nat_gateway(NatGatewayId=nat["NatGatewayId"])
    assert nat_state(seed.ec2, nat["NatGatewayId"]) == "deleted"
    alb = create_alb(seed.elbv2, net["subnets"], "fumidai-alb-2")
    assert lb_state(seed.elbv2, alb["LoadBalancerArn"]) == "active"  # moto's own: active from the first describe
    seed.ec2.terminate_instances(InstanceIds=[instance_id])
    assert instance_state(seed.ec2, instance_id) == "terminated"


def test_a_kind_without_a_delay_is_left_as_moto_has_it(moto, monkeypatch):
    seed, net = moto
    monkeypatch.setattr(moto_transitions, "clock", Clock())
    moto_transitions.apply({"nat_gateway": DELAY, "instance": 0}, lenient(monkeypatch))
    assert instance_state(seed.ec2, launch(seed.ec2, net["subnets"][0])["InstanceId"]) == "running"
    assert create_nat_gateway(seed.ec2, net["subnets"][0])["State"] == "pending"


# --- the switch, from lab/moto_local.py to the server -------------------------------------------------

def started_with(monkeypatch, argv: list[str]) -> list[str]:
    """The server command line lab/moto_local.py would start for ``argv`` (nothing is started)."""
    started = []

    def popen(command, **_kwargs):
        started.append(command)
        raise RuntimeError("not started")

    monkeypatch.setattr(moto_local.subprocess, "Popen", popen)
    with pytest.raises(RuntimeError, match="not started"):
        moto_local.main(argv)
    return started[0]


def test_moto_local_passes_the_environments_delays_to_the_server(monkeypatch):
    monkeypatch.setenv(moto_transitions.ENVIRONMENT, "instance=1,load_balancer=2.5")
    command = started_with(monkeypatch, ["run", "--", "true"])
    assert command[command.index("--transition-delays") + 1] == "instance=1,load_balancer=2.5"
    # The flag wins over the environment.
    command = started_with(monkeypatch, ["--transition-delays", "nat_gateway=3", "run", "--", "true"])
    assert command[command.index("--transition-delays") + 1] == "nat_gateway=3"


def test_without_the_setting_the_server_gets_no_delays(monkeypatch):
    monkeypatch.delenv(moto_transitions.ENVIRONMENT, raising=False)
    command = started_with(monkeypatch, ["run", "--", "true"])
    assert "lab.moto_server" in command and "--transition-delays" not in command


def test_the_launcher_refuses_a_bad_setting_before_starting_anything(monkeypatch, capsys):
    monkeypatch.setenv(moto_transitions.ENVIRONMENT, "instances=2")
    with pytest.raises(SystemExit):
        moto_local.main(["run", "--", "true"])
    assert "KIND=SECONDS" in capsys.readouterr().err
