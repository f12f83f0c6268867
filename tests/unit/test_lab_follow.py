"""The lab following the local AWS API (lab/follow.py) and the API's endpoint for lab hosts (lab/render/aws_api.py)."""

from __future__ import annotations

import http.server
import socket
import subprocess
import sys
import threading
import time

import pytest

from lab import config, follow
from lab.render import aws_api, text

PLAN = {"office_host_ip": "192.168.250.1", "office_router_ip": "192.168.250.254", "vpc_cidr": "10.0.0.0/16",
        "internet_gateway_ip": "198.18.0.1", "aws_api_port": 41095}


def nodes(*names_ips):
    return {"nodes": [{"name": name, "kind": "instance", "ip": ip} for name, ip in names_ips]}


@pytest.fixture
def recorded(monkeypatch):
    calls = {"saved": [], "applied": []}
    monkeypatch.setattr(follow.state, "save_state", lambda plan: calls["saved"].append(plan))
    monkeypatch.setattr(follow.steps, "apply_changes", lambda plan, names: calls["applied"].append(names) or 1)
    return calls


def test_a_pass_applies_what_changed_and_keeps_the_lab_state_when_the_instances_are_the_same(monkeypatch, recorded):
    lab = nodes(("web02", "10.0.12.4"), ("nat-instance", "10.0.2.4"))
    monkeypatch.setattr(follow.state, "load_state", lambda: lab)
    monkeypatch.setattr(follow.steps, "current_plan", lambda: lab)
    assert follow.reconcile_once() == 1
    assert recorded["applied"] == [{"web02", "nat-instance"}]
    assert recorded["saved"] == [lab]


def test_an_instance_gone_from_the_api_or_a_new_one_is_reported_and_only_the_others_are_followed(
        monkeypatch, recorded, capsys):
    monkeypatch.setattr(follow.state, "load_state", lambda: nodes(("web02", "10.0.12.4"), ("nat-instance", "10.0.2.4")))
    monkeypatch.setattr(follow.steps, "current_plan",
                        lambda: nodes(("web02", "10.0.12.4"), ("nat-instance-standby", "10.0.1.9")))
    follow.reconcile_once()
    assert recorded["applied"] == [{"web02"}]
    # The lab's record of its hosts is the hosts step's: a partial pass must not rewrite it.
    assert recorded["saved"] == []
    assert "gone: nat-instance; new: nat-instance-standby" in capsys.readouterr().out


def test_no_lab_is_an_error_with_the_way_to_bring_one_up(monkeypatch, recorded):
    monkeypatch.setattr(follow.state, "load_state", lambda: None)
    with pytest.raises(follow.LabError, match="python -m lab up"):
        follow.reconcile_once()


def test_the_endpoint_listens_on_the_lab_internet_and_the_relay_on_the_office_address_only():
    endpoint, relay = aws_api.nodes(PLAN)
    assert endpoint["ip"] == str(config.AWS_API_IP) and aws_api.endpoint_url() == f"http://{config.AWS_API_IP}"
    args = aws_api.endpoint_args(PLAN, endpoint, config.CACHE)
    assert f"{config.NET_INTERNET}:ip={config.AWS_API_IP}" in args
    assert f"{config.NET_OFFICE}:ip=192.168.250.253" in args
    assert args[-1].endswith(f"python3 /lab/relay.py {config.AWS_API_IP} 80 192.168.250.1 {config.AWS_API_RELAY_PORT}")
    # The relay: this machine's network, listening on the office address, connecting to 127.0.0.1 only.
    relay_args = aws_api.relay_args(PLAN, relay, config.CACHE)
    assert relay_args[:2] == ["--network", "host"]
    assert relay_args[-4:] == ["192.168.250.1", str(config.AWS_API_RELAY_PORT), "127.0.0.1", "41095"]
    # Control: no moto port known (no lab API yet), no endpoint containers.
    assert aws_api.nodes({**PLAN, "aws_api_port": None}) == []


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_the_relay_carries_a_request_and_its_answer(tmp_path):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    script = tmp_path / "relay.py"
    script.write_text(text("tcp-relay.py"))
    port = free_port()
    relay = subprocess.Popen([sys.executable, str(script), "127.0.0.1", str(port), "127.0.0.1",
                              str(server.server_address[1])], stdout=subprocess.PIPE, text=True)
    try:
        assert relay.stdout.readline().startswith(f"relay 127.0.0.1:{port} -> 127.0.0.1:")
        deadline = time.monotonic() + 10
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
            answer = b""
            while time.monotonic() < deadline and (chunk := sock.recv(4096)):
                answer += chunk
        assert answer.startswith(b"HTTP/1.0 200")
    finally:
        relay.kill()
        server.shutdown()


def test_the_relay_refuses_an_address_that_is_not_one():
    proc = subprocess.run([sys.executable, "-c", text("tcp-relay.py"), "127.0.0.1", "1", "localhost; id", "2"],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode != 0 and "does not appear to be an IPv4 or IPv6 address" in proc.stderr
