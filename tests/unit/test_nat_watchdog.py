"""The standby NAT instance's watchdog (roles/nat_instance/files/fumidai-nat-watchdog.py): its decisions with fake
probes and clients, and the script's loop against moto with injected probe results (the route ends on the standby)."""

from __future__ import annotations

import importlib.util
import json
import logging
import sys
from pathlib import Path

import pytest

from tests.support.aws_seed import in_process

SCRIPT = Path(__file__).resolve().parents[2] / "roles" / "nat_instance" / "files" / "fumidai-nat-watchdog.py"
_spec = importlib.util.spec_from_file_location("fumidai_nat_watchdog", SCRIPT)
watchdog = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = watchdog  # dataclasses look their module up by name
_spec.loader.exec_module(watchdog)

SELF, PEER, TABLE = "i-standby", "i-active", "rtb-0123456789abcdef0"


def config(**overrides) -> watchdog.Config:
    values = {"region": "ap-northeast-1", "route_table_id": TABLE, "self_instance_id": SELF,
              "peer_instance_id": PEER, "peer_ip": "10.0.2.10", "probe_address": "198.18.0.12",
              "control_address": "198.18.0.10", "probe_port": 80, "failures_before_failover": 3,
              "route_check_every": 1000}
    return watchdog.Config(**{**values, **overrides})


class FakeClient:
    """DescribeRouteTables / ReplaceRoute on one table; ``fail_replace`` ReplaceRoute errors to raise first."""

    def __init__(self, target: str | None = PEER, fail_replace: int = 0):
        self.target, self.fail_replace, self.replaced, self.describes = target, fail_replace, [], 0

    def describe_route_tables(self, RouteTableIds):  # noqa: N803 - boto3's argument names
        self.describes += 1
        routes = [{"DestinationCidrBlock": "10.0.0.0/16", "GatewayId": "local"}]
        if self.target:
            routes.append({"DestinationCidrBlock": "0.0.0.0/0", "InstanceId": self.target})
        return {"RouteTables": [{"RouteTableId": RouteTableIds[0], "Routes": routes}]}

    def replace_route(self, RouteTableId, DestinationCidrBlock, InstanceId):  # noqa: N803
        if self.fail_replace:
            self.fail_replace -= 1
            raise RuntimeError("RequestLimitExceeded: slow down")
        self.replaced.append((RouteTableId, DestinationCidrBlock, InstanceId))
        self.target = InstanceId


def scripted(results: list[bool]):
    """A probe answering ``results`` in turn (then the last one forever); counts its calls."""
    calls = {"n": 0}

    def probe() -> bool:
        calls["n"] += 1
        return results[min(calls["n"] - 1, len(results) - 1)]
    probe.calls = calls
    return probe


def run_cycles(peer: list[bool], direct: list[bool], client: FakeClient, cycles: int, **overrides):
    cfg = config(**overrides)
    probes = watchdog.Probes(scripted(peer), scripted(direct))
    policy = watchdog.FailoverPolicy(cfg.self_instance_id, cfg.peer_instance_id, cfg.failures_before_failover)
    actions = [watchdog.cycle(policy, probes, client, cfg, n) for n in range(cycles)]
    return actions, probes, policy


# --------------------------------------------------------------------------- decisions
def test_fails_over_after_n_consecutive_failures_when_the_target_answers_directly():
    client = FakeClient()
    actions, probes, _ = run_cycles([False], [True], client, 3)
    assert actions == ["none", "none", "replace"]
    assert client.replaced == [(TABLE, "0.0.0.0/0", SELF)]
    assert probes.direct.calls["n"] == 1  # the direct probe only at the threshold


def test_positive_control_healthy_peer_never_reads_or_replaces():
    client = FakeClient()
    actions, probes, _ = run_cycles([True], [True], client, 20)
    assert set(actions) == {"none"} and client.replaced == [] and client.describes == 1  # the start-up read only
    assert probes.direct.calls["n"] == 0


def test_no_failover_when_the_target_is_unreachable_directly_too():
    client = FakeClient()
    actions, _, _ = run_cycles([False], [False], client, 10)
    assert "replace" not in actions and client.replaced == [] and client.target == PEER
    # Once the target answers directly again, the still-failing peer is replaced (positive control).
    actions, _, _ = run_cycles([False], [False, True], client, 4)
    assert actions[-1] == "replace" and client.target == SELF


def test_a_single_slow_probe_never_fails_over():
    client = FakeClient()
    # One timeout then success, repeatedly: the count never reaches the threshold.
    actions, _, policy = run_cycles([False, True] * 20, [True], client, 40)
    assert "replace" not in actions and client.replaced == [] and client.describes == 1  # the start-up read only
    assert policy.failures == 0
    # Two slow probes in a row stay under a threshold of 3 as well.
    actions, _, _ = run_cycles([False, False, True] * 10, [True], client, 30)
    assert "replace" not in actions and client.replaced == []


def test_route_already_on_self_means_reporting_only():
    client = FakeClient(target=SELF)
    actions, _, policy = run_cycles([False], [True], client, 10)
    assert client.replaced == [] and policy.route_on_self
    assert actions[2] == "report" and set(actions[3:]) == {"report"}
    assert client.describes == 1  # read at start-up: it never reads the route for a decision after that


def test_route_on_a_third_target_is_left_alone():
    client = FakeClient(target="i-someone-else")
    actions, _, _ = run_cycles([False], [True], client, 6)
    assert client.replaced == [] and client.target == "i-someone-else" and "replace" not in actions


def test_replace_route_error_is_logged_and_retried_next_cycle(caplog):
    client = FakeClient(fail_replace=1)
    with caplog.at_level(logging.INFO, logger="fumidai-nat-watchdog"):
        actions, _, _ = run_cycles([False], [True], client, 5)
    assert actions[:4] == ["none", "none", "error", "replace"]
    assert client.replaced == [(TABLE, "0.0.0.0/0", SELF)]
    assert "ReplaceRoute" in caplog.text and "retrying next cycle" in caplog.text and "FAILOVER" in caplog.text


def test_fail_back_by_a_person_resumes_watching():
    client = FakeClient()
    cfg = config(route_check_every=1)
    probes = watchdog.Probes(scripted([False]), scripted([True]))
    policy = watchdog.FailoverPolicy(SELF, PEER, 3)
    actions = [watchdog.cycle(policy, probes, client, cfg, n) for n in range(3)]
    assert actions[-1] == "replace" and policy.route_on_self
    client.target = PEER  # playbooks/nat_failback.yml
    probes.through_peer = scripted([True])
    actions = [watchdog.cycle(policy, probes, client, cfg, n) for n in range(3, 6)]
    assert not policy.route_on_self and set(actions) == {"none"}


def test_check_peer_exit_codes(capsys):
    cfg = config()
    assert watchdog.check_peer(cfg, watchdog.Probes(scripted([False, True]), scripted([True]))) == 0
    assert watchdog.check_peer(cfg, watchdog.Probes(scripted([False]), scripted([True]))) == 1
    assert watchdog.check_peer(cfg, watchdog.Probes(scripted([False]), scripted([False]))) == 2
    assert "does not forward" in capsys.readouterr().out


def test_config_is_validated(tmp_path):
    good = {"region": "ap-northeast-1", "route_table_id": TABLE, "self_instance_id": SELF,
            "peer_instance_id": PEER, "peer_ip": "10.0.2.10", "probe_address": "198.18.0.12",
            "control_address": "198.18.0.10", "probe_port": 80, "endpoint_url": "", "unknown_key_is_ignored": 1}
    path = tmp_path / "nat-watchdog.json"
    path.write_text(json.dumps(good))
    assert watchdog.Config.load(str(path)).probe_port == 80
    path.write_text(json.dumps({**good, "peer_ip": "10.0.2.10; reboot", "peer_instance_id": SELF}))
    with pytest.raises(ValueError, match="peer_ip .* not an IPv4 address") as raised:
        watchdog.Config.load(str(path))
    assert "same instance" in str(raised.value)


@pytest.mark.parametrize(("change", "problem"), [
    ({"probe_address": "198.18.0.12/32"}, "probe_address '198.18.0.12/32' is not an IPv4 address"),
    ({"control_address": "one.one.one.one"}, "control_address 'one.one.one.one' is not an IPv4 address"),
    ({"probe_address": "1.1"}, "probe_address '1.1' is not an IPv4 address"),
    ({"control_address": "198.18.0.12"}, "probe_address and control_address are the same address"),
    ({"probe_port": 0}, "probe_port 0 is not a port"),
])
def test_probe_and_control_addresses_are_validated(tmp_path, change, problem):
    path = tmp_path / "nat-watchdog.json"
    good = {**config().__dict__}
    path.write_text(json.dumps(good))
    assert watchdog.main(["--check-config", "--config", str(path)]) == 0  # positive control
    path.write_text(json.dumps({**good, **change}))
    with pytest.raises(ValueError, match=problem):
        watchdog.Config.load(str(path))
    assert watchdog.main(["--check-config", "--config", str(path)]) == 3


def test_a_configuration_of_the_fwmark_design_is_refused(tmp_path):
    """A file written before the probe used the subnet's route table (probe_host, fwmark, ...) has no probe or
    control address: --check-config refuses it, so the role never installs a watchdog that cannot probe."""
    old = {k: v for k, v in config().__dict__.items() if k not in ("probe_address", "control_address")}
    path = tmp_path / "nat-watchdog.json"
    path.write_text(json.dumps({**old, "probe_host": "198.18.0.12", "fwmark": 20033, "routing_table": 4941}))
    assert watchdog.main(["--check-config", "--config", str(path)]) == 3


# --------------------------------------------------------------------------- the script against moto
def test_script_fails_over_in_moto_and_only_reports_after():
    with in_process() as seed:
        stack = seed.project()
        standby = seed.instance(stack.subnets["public-subnet-1"], "nat-instance-standby", "nat", public=True,
                                groups=[stack.sgs["nat"]], source_dest_check=False)
        table = stack.route_tables["fumidai-private-subnet-2"]
        other = stack.route_tables["fumidai-private-subnet-1"]
        active = stack.instances["nat-instance"]
        cfg = config(route_table_id=table, self_instance_id=standby["id"], peer_instance_id=active,
                     peer_ip=stack.hosts["nat-instance"]["private"], route_check_every=5)
        client = watchdog.ec2_client(cfg)
        assert watchdog.route_target(client, cfg) == active  # positive control: the seeded route
        # Healthy for a while: nothing moves.
        watchdog.run(cfg, watchdog.Probes(scripted([True]), scripted([True])), client, cycles=6, sleep=lambda _: None)
        assert watchdog.route_target(client, cfg) == active
        # The active NAT instance stops forwarding: the route moves to the standby, and only that route.
        policy = watchdog.run(cfg, watchdog.Probes(scripted([True, False]), scripted([True])), client, cycles=8,
                              sleep=lambda _: None)
        assert policy.route_on_self
        routes = seed.ec2.describe_route_tables(RouteTableIds=[table])["RouteTables"][0]["Routes"]
        default = [r for r in routes if r.get("DestinationCidrBlock") == "0.0.0.0/0"]
        assert [r.get("InstanceId") for r in default] == [standby["id"]]
        other_routes = seed.ec2.describe_route_tables(RouteTableIds=[other])["RouteTables"][0]["Routes"]
        assert [r.get("NatGatewayId") for r in other_routes if r.get("DestinationCidrBlock") == "0.0.0.0/0"] \
            == [stack.nat_gateway_id]


def test_the_probes_are_plain_tcp_connects_routed_by_the_kernel(monkeypatch):
    """No firewall mark, rule or routing table of its own: the probe connects to the probe address, the control
    to the control address, same port; which way each goes is the routing's business (the VPC route table)."""
    listener = watchdog.socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    open_port = listener.getsockname()[1]
    try:
        assert watchdog.tcp_probe("127.0.0.1", open_port, 2.0)  # positive control: something listens
        calls = []
        real_socket = watchdog.socket.socket

        class RecordingSocket(real_socket):
            def setsockopt(self, *args):
                calls.append(("setsockopt", *args))
                return super().setsockopt(*args)

            def connect(self, address):
                calls.append(("connect", address))
                return super().connect(address)

        monkeypatch.setattr(watchdog.socket, "socket", RecordingSocket)
        cfg = config(probe_address="127.0.0.1", control_address="127.0.0.2", probe_port=open_port, timeout=1.0)
        probes = watchdog.real_probes(cfg)
        assert probes.through_peer() is True
        probes.direct()  # 127.0.0.2 is loopback too on Linux, but the listener is bound to 127.0.0.1 only
        assert calls == [("connect", ("127.0.0.1", open_port)), ("connect", ("127.0.0.2", open_port))]
    finally:
        listener.close()
    # Nobody listens any more: refused, reported as a failed probe (never an exception).
    assert watchdog.tcp_probe("127.0.0.1", open_port, 1.0) is False
