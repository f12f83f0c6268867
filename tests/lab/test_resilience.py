"""Issue 14 on real hosts: the session's lab gains a bastion per zone and a standby NAT instance, then loses each.

The module runs last (conftest sorts it there): it turns the options on for the running lab in place, as an
admin would on a stack already in use - provision with both options (bastion-2, the standby NAT instance and
its instance profile), start their hosts, site.yml, the SSH config, `lab follow` (route changes in the local
API reach the hosts' routes) - and then:
  - with web01's zone's bastion stopped, an ad-hoc ping, a person's `ssh -F` and site.yml reach every other
    host (0 unreachable);
  - a probe target that stops answering for a while never displaces the healthy NAT instance;
  - with the NAT instance's container stopped, web02's egress comes back through the standby (the route in
    the local API and web02's own route both name it);
  - playbooks/nat_failback.yml returns the route once the NAT instance is back, and a second run changes nothing.
The outage is printed (bench/failover_bench.py measures it over several runs); the waits are bounds only.
"""

from __future__ import annotations

import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from lab import config as lab_config
from lab import podman, resilience
from lab import state as lab_state
from lab import steps as lab_steps
from tests.lab.lab_helpers import lab_cli, wait_for

ROOT = Path(__file__).resolve().parents[2]
WATCHDOG_UNIT = "fumidai-nat-watchdog.service"
WATCHDOG = "/usr/local/sbin/fumidai-nat-watchdog"


@dataclass
class ResilientLab:
    nodes: dict[str, dict]
    internet_url: str
    env: dict[str, str]

    def default_target(self) -> str | None:
        """The instance private-subnet-2's default route names in the local API."""
        client = lab_state.aws_client(self.env, "ec2")
        return resilience.route_target(client, resilience.subnet_of(client, self.nodes["web02"]["resource_id"]))

    def run(self, *argv: str, timeout: int = 1200) -> subprocess.CompletedProcess:
        return subprocess.run(list(argv), cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=timeout)

    def playbook(self, name: str, *extra: str) -> subprocess.CompletedProcess:
        return self.run(*lab_steps.playbook_command(name, *extra))

    def journal_since(self, node: str, since: float) -> str:
        proc = podman.exec_in(self.nodes[node]["container"], "journalctl", "-q", "-o", "cat", "-u", WATCHDOG_UNIT,
                              "--since", f"@{int(since)}", check=False)
        return proc.stdout.decode(errors="replace")


@pytest.fixture(scope="module")
def resilient(lab, tmp_path_factory) -> ResilientLab:
    """The session's lab with both options turned on in place; `lab follow` runs for the module."""
    started = time.monotonic()
    lab_cli("step", "provision", "--bastion-per-az", "--nat-standby")
    lab_cli("step", "hosts")
    lab_cli("step", "configure")
    lab_cli("step", "ssh-config")
    lab_cli("follow", "start")
    print(f"\nlab upgraded to a bastion per zone and a standby NAT instance in {time.monotonic() - started:.0f}s")
    current = lab_state.load_state()
    # Connections of this module: their own control sockets and fallback markers (a stopped bastion
    # remembered here does not slow anything after the module).
    env = {**lab_steps.ansible_env(), "ANSIBLE_NOCOLOR": "1", "ANSIBLE_INVENTORY_CACHE": "false",
           "ANSIBLE_SSH_CONTROL_PATH_DIR": str(tmp_path_factory.mktemp("cp"))}
    try:
        yield ResilientLab({n["name"]: n for n in current["nodes"]}, f"http://{current['internet_server_ip']}/", env)
    finally:
        lab_cli("follow", "stop")


def test_the_upgrade_adds_a_pinned_bastion_and_a_watching_standby(resilient):
    nodes = resilient.nodes
    assert {"bastion", "bastion-2", "nat-instance", "nat-instance-standby"} <= set(nodes)
    assert nodes["bastion"]["subnet"] != nodes["bastion-2"]["subnet"]
    assert nodes["nat-instance"]["subnet"] != nodes["nat-instance-standby"]["subnet"]
    pins = lab_config.KNOWN_HOSTS.read_text()
    assert nodes["bastion-2"]["resource_id"] in pins and nodes["nat-instance-standby"]["resource_id"] in pins
    standby = nodes["nat-instance-standby"]["container"]
    active = podman.exec_in(standby, "systemctl", "is-active", WATCHDOG_UNIT, check=False)
    assert active.stdout.decode().strip() == "active"
    # Only the standby watches: the active NAT instance has no watchdog.
    primary = podman.exec_in(nodes["nat-instance"]["container"], "systemctl", "is-active", WATCHDOG_UNIT,
                             check=False)
    assert primary.stdout.decode().strip() != "active"
    # The standby's check of the active one, with the instance profile's stand-in credentials: it forwards.
    check = podman.exec_in(standby, WATCHDOG, "--check-peer", check=False)
    assert check.returncode == 0, check.stdout.decode() + check.stderr.decode()
    assert resilient.default_target() == nodes["nat-instance"]["resource_id"]
    assert resilience.lab_default_gateway(nodes["web02"]["container"]) == nodes["nat-instance"]["ip"]


def test_with_one_bastion_stopped_ping_and_site_reach_every_other_host(resilient):
    nodes = resilient.nodes
    # web01's own zone's bastion: every host of that zone must fall back to bastion-2.
    down = next(n for n in nodes.values() if n["role"] == "bastion" and n["subnet"] == "public-subnet-1")
    others = sorted(name for name, node in nodes.items() if node["kind"] == "instance" and name != down["name"])
    podman.podman("stop", "-t", "2", down["container"])
    try:
        ping = resilient.run("ansible", f"all:!{down['name']}", "-m", "ansible.builtin.ping", "-o")
        assert ping.returncode == 0, ping.stdout[-3000:] + ping.stderr[-2000:]
        answered = sorted(re.findall(r"^(\S+) \| SUCCESS", ping.stdout, re.MULTILINE))
        assert answered == others, ping.stdout
        assert "UNREACHABLE" not in ping.stdout
        # A person's `ssh -F` with the config ssh_config.yml wrote: the same hop, the same fallback.
        for name in ("web01", "web02"):
            person = subprocess.run(["ssh", "-F", str(ROOT / ".cache" / "ssh_config"), name, "hostname"], cwd=ROOT,
                                    capture_output=True, text=True, timeout=120)
            assert (person.returncode, person.stdout.strip()) == (0, name), person.stderr
        # site.yml: provisioning on this machine, then every host but the stopped bastion configured.
        site = resilient.playbook("site.yml", *lab_steps.alb_ready_args(), "--limit", f"localhost,all,!{down['name']}")
        recap = site.stdout[site.stdout.rfind("PLAY RECAP"):]
        assert site.returncode == 0, site.stdout[-4000:] + site.stderr[-2000:]
        for name in others:
            assert re.search(rf"^{re.escape(name)}\s+: ok=\d+ .*unreachable=0\s+failed=0", recap, re.MULTILINE), recap
        assert not re.search(rf"^{re.escape(down['name'])}\s+:", recap, re.MULTILINE), recap
    finally:
        podman.podman("start", down["container"])
        resilience.wait_for_instance_units(down["container"])


def test_a_probe_target_that_stops_answering_never_displaces_a_healthy_nat_instance(resilient):
    """The target (both its addresses) drops every connection for longer than the watchdog's failures take:
    the watchdog sees its probes fail and the direct probe fail too, so the target is at fault, not the peer."""
    nodes = resilient.nodes
    internet = f"{lab_config.PREFIX}-internet"
    since = time.time()
    rule = ["INPUT", "-p", "tcp", "--dport", "80", "-m", "comment", "--comment", "fumidai-test-target-down",
            "-j", "DROP"]
    podman.exec_in(internet, "iptables", "-w", "-I", *rule)
    try:
        # 3 failures x (2 s timeout + 2 s interval) and the direct probe: about 15 s; 25 s leaves margin.
        time.sleep(25)
    finally:
        podman.exec_in(internet, "iptables", "-w", "-D", *rule)
    journal = resilient.journal_since("nat-instance-standby", since)
    # Positive control: the watchdog did see the target stop answering and decided not to act.
    assert "does not answer directly either" in journal, journal[-3000:]
    assert "FAILOVER" not in journal, journal[-3000:]
    assert resilient.default_target() == nodes["nat-instance"]["resource_id"]
    assert resilience.lab_default_gateway(nodes["web02"]["container"]) == nodes["nat-instance"]["ip"]
    # And the NAT instance still forwards for web02.
    assert wait_for(
        lambda: lab_steps.egress_source(nodes["web02"]["container"], resilient.internet_url) == nodes[
            "nat-instance"]["ip"], 30)


def test_the_standby_takes_over_when_the_nat_instance_stops(resilient):
    nodes = resilient.nodes
    since = time.time()
    run = resilience.nat_failover(resilient.env, nodes, resilient.internet_url, interval=1.0, timeout=180)
    journal = resilient.journal_since("nat-instance-standby", since)
    assert run["route_moved"] is not None, f"the API's route never named the standby:\n{journal[-3000:]}"
    assert run["back"] is not None, f"web02 never left through the standby: {run['samples'][-5:]}"
    print(f"\nNAT instance stopped: web02's egress back through the standby after {run['outage']:.1f}s "
          f"(the API's route after {run['route']:.1f}s)")
    assert "FAILOVER" in journal, journal[-3000:]
    assert resilient.default_target() == nodes["nat-instance-standby"]["resource_id"]
    # `lab follow` applied the API's route to web02's own.
    assert wait_for(
        lambda: resilience.lab_default_gateway(nodes["web02"]["container"]) == nodes["nat-instance-standby"]["ip"],
        30)


def test_fail_back_returns_the_route_and_a_second_run_changes_nothing(resilient):
    nodes = resilient.nodes
    primary = nodes["nat-instance"]
    if podman.container_state(primary["container"])[0] != "running":
        podman.podman("start", primary["container"])
    resilience.wait_for_instance_units(primary["container"])
    first = resilient.playbook("playbooks/nat_failback.yml")
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-2000:]
    assert resilient.default_target() == primary["resource_id"]
    assert wait_for(
        lambda: resilience.lab_default_gateway(nodes["web02"]["container"]) == primary["ip"], 30)
    assert wait_for(
        lambda: lab_steps.egress_source(nodes["web02"]["container"], resilient.internet_url) == primary["ip"], 30)
    second = resilient.playbook("playbooks/nat_failback.yml")
    assert second.returncode == 0, second.stdout[-4000:]
    assert re.search(r"changed=0\s", second.stdout[second.stdout.rfind("PLAY RECAP"):]), second.stdout[-3000:]
    assert resilient.default_target() == primary["resource_id"]
    # The standby watches again (it never stopped: after a fail-back it resumes probing the active one).
    check = podman.exec_in(nodes["nat-instance-standby"]["container"], WATCHDOG, "--check-peer", check=False)
    assert check.returncode == 0, check.stdout.decode() + check.stderr.decode()
