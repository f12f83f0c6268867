"""The standby watchdog's probe (files/fumidai-nat-watchdog.py --check-peer) through the NAT instance, on real kernels.

The client stands in for the standby: its probe socket carries the watchdog's firewall mark, an ip rule sends it to
a table whose default route is the NAT instance (the peer), and the NAT instance forwards it to the server only if
the role's FORWARD and MASQUERADE let it. The watchdog itself needs no boto3 for this check. Runs after
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
MARK, TABLE = "0x4e41", "4941"


def config(port: int) -> dict:
    return {"region": "ap-northeast-1", "route_table_id": "rtb-0molecule", "self_instance_id": "i-0client",
            "peer_instance_id": "i-0natinstance", "peer_ip": TESTBED["nat_instance_testbed_nat_inside_ip"],
            "probe_host": TESTBED["nat_instance_testbed_server_ip"], "probe_port": port, "timeout": 2,
            "fwmark": int(MARK, 16), "routing_table": int(TABLE), "rule_priority": int(TABLE), "interface": "eth0"}


@pytest.fixture(scope="module")
def standby():
    subprocess.run(["podman", "cp", str(SCRIPT), f"{CLIENT}:/tmp/fumidai-nat-watchdog.py"], check=True)
    for port in (TESTBED["nat_instance_testbed_server_port"], TESTBED["nat_instance_testbed_server_blocked_port"]):
        subprocess.run(["podman", "exec", "-i", CLIENT, "sh", "-c", f"cat > /tmp/watchdog-{port}.json"],
                       input=json.dumps(config(port)), text=True, check=True)
    client = testinfra.get_host(f"podman://{CLIENT}")
    yield client
    client.run(f"ip rule del fwmark {MARK} table {TABLE}; ip route flush table {TABLE}")


def check_peer(client, port: int):
    return client.run(f"python3 /tmp/fumidai-nat-watchdog.py --check-peer --config /tmp/watchdog-{port}.json")


def test_probe_through_the_nat_instance_sees_it_forward(host, standby):
    port = TESTBED["nat_instance_testbed_server_port"]
    deadline = time.monotonic() + 60
    result = check_peer(standby, port)
    while result.rc != 0 and time.monotonic() < deadline:  # a stale ARP entry after the restart test
        time.sleep(2)
        result = check_peer(standby, port)
    assert result.rc == 0, result.stdout + result.stderr
    assert "forwards" in result.stdout
    # Set up once however often it runs: one rule for the mark, the peer as that table's only route.
    assert check_peer(standby, port).rc == 0
    rules = [line for line in standby.check_output("ip -4 rule show").splitlines() if f"fwmark {MARK}" in line]
    assert rules == [f"{TABLE}:\tfrom all fwmark {MARK} lookup {TABLE}"]
    peer = TESTBED["nat_instance_testbed_nat_inside_ip"]
    assert standby.check_output(f"ip -4 route show table {TABLE}").strip() == f"default via {peer} dev eth0 onlink"


def test_probe_on_a_port_nobody_forwards_cannot_judge_the_peer(host, standby):
    """The NAT instance drops 8080 (not forwarded), and the client's direct route is the NAT instance too, so the
    target does not answer directly either: exit 2, which the watchdog never treats as the peer's failure."""
    result = check_peer(standby, TESTBED["nat_instance_testbed_server_blocked_port"])
    assert result.rc == 2, result.stdout + result.stderr
    assert "does not answer directly either" in result.stdout
