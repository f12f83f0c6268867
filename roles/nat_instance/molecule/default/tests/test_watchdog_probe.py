"""The standby watchdog's probe (files/fumidai-nat-watchdog.py --check-peer) through the NAT instance, on real kernels.

The client stands in for the standby. As on AWS, where the standby subnet's route table sends <probe address>/32 to
the active NAT instance, the client's route to the probe address (the server's second address) is a /32 via the NAT
instance (prepare.yml); the watchdog itself only opens plain TCP connections: no mark, rule or routing table of its
own. The control address is the server's first address, by the client's own way out -- in this test bed that is its
default route, via the NAT instance too (the inside network has no other exit), so "the peer does not forward" is
shown by the NAT instance dropping the probe address only. The watchdog needs no boto3 for this check. Runs after
test_default.py (file order), so after the NAT instance's restart: the first probe waits for the client's ARP entry.
"""

import json
import subprocess
import time
from pathlib import Path

import pytest
import testinfra
import yaml

SCENARIO = Path(__file__).parents[1]
TESTBED = yaml.safe_load((SCENARIO / "vars" / "testbed.yml").read_text())
SCRIPT = Path(__file__).resolve().parents[3] / "files" / "fumidai-nat-watchdog.py"
CLIENT = TESTBED["nat_instance_testbed_client_name"]
NAT = TESTBED["nat_instance_testbed_nat_name"]
PEER = TESTBED["nat_instance_testbed_nat_inside_ip"]
PROBE = TESTBED["nat_instance_testbed_server_probe_ip"]
CONTROL = TESTBED["nat_instance_testbed_server_ip"]
# Stands in for the active NAT instance no longer forwarding (the probe address only: the control goes through it too).
STOP_FORWARDING = ["FORWARD", "-d", f"{PROBE}/32", "-m", "comment", "--comment", "molecule-peer-down", "-j", "DROP"]


def config(port: int) -> dict:
    return {"region": "ap-northeast-1", "route_table_id": "rtb-0molecule", "self_instance_id": "i-0client",
            "peer_instance_id": "i-0natinstance", "peer_ip": PEER, "probe_address": PROBE,
            "control_address": CONTROL, "probe_port": port, "timeout": 2}


@pytest.fixture(scope="module")
def standby():
    subprocess.run(["podman", "cp", str(SCRIPT), f"{CLIENT}:/tmp/fumidai-nat-watchdog.py"], check=True)
    for port in (TESTBED["nat_instance_testbed_server_port"], TESTBED["nat_instance_testbed_server_blocked_port"]):
        subprocess.run(["podman", "exec", "-i", CLIENT, "sh", "-c", f"cat > /tmp/watchdog-{port}.json"],
                       input=json.dumps(config(port)), text=True, check=True)
    return testinfra.get_host(f"podman://{CLIENT}")


def check_peer(client, port: int):
    return client.run(f"python3 /tmp/fumidai-nat-watchdog.py --check-peer --config /tmp/watchdog-{port}.json")


def routing(client) -> tuple[str, str]:
    return client.check_output("ip -4 rule show"), client.check_output("ip -4 route show table all")


def test_the_probe_address_is_routed_via_the_nat_instance_and_the_control_is_not_the_probe(standby):
    assert f"via {PEER} " in standby.check_output(f"ip -4 route get {PROBE}")
    assert standby.check_output("ip -4 route show %s/32", PROBE).strip() == f"{PROBE} via {PEER} dev eth0"
    # The control address follows the client's default route, not the /32.
    assert standby.check_output("ip -4 route show %s/32", CONTROL).strip() == ""


def test_probe_through_the_nat_instance_sees_it_forward(host, standby):
    port = TESTBED["nat_instance_testbed_server_port"]
    before = routing(standby)
    deadline = time.monotonic() + 60
    result = check_peer(standby, port)
    while result.rc != 0 and time.monotonic() < deadline:  # a stale ARP entry after the restart test
        time.sleep(2)
        result = check_peer(standby, port)
    assert result.rc == 0, result.stdout + result.stderr
    assert "forwards" in result.stdout and f"{PROBE}:{port} answered through it" in result.stdout
    # The watchdog changes no rule or route: the route table (here the /32) alone sends the probe through the peer.
    assert routing(standby) == before


def test_probe_the_nat_instance_does_not_forward_while_the_control_answers(host, standby):
    """The NAT instance stops forwarding to the probe address: exit 1, the failover case; forwarding again, exit 0."""
    port = TESTBED["nat_instance_testbed_server_port"]
    assert check_peer(standby, port).rc == 0  # positive control, before
    subprocess.run(["podman", "exec", NAT, "iptables", "-I", *STOP_FORWARDING[:1], "1", *STOP_FORWARDING[1:]],
                   check=True)
    try:
        result = check_peer(standby, port)
    finally:
        subprocess.run(["podman", "exec", NAT, "iptables", "-D", *STOP_FORWARDING], check=True)
    assert result.rc == 1, result.stdout + result.stderr
    assert "does not forward" in result.stdout and f"control {CONTROL}:{port} answers directly" in result.stdout
    assert check_peer(standby, port).rc == 0  # and after


def test_probe_on_a_port_nobody_forwards_cannot_judge_the_peer(host, standby):
    """The NAT instance drops 8080 (not forwarded), and the client's direct way out is the NAT instance too, so the
    control does not answer either: exit 2, which the watchdog never treats as the peer's failure."""
    result = check_peer(standby, TESTBED["nat_instance_testbed_server_blocked_port"])
    assert result.rc == 2, result.stdout + result.stderr
    assert "does not answer directly either" in result.stdout
