"""End to end: the VPC moto holds, as real hosts, configured by site.yml through the bastion.

Each check is one a newcomer gets wrong on AWS: who may reach what (security
groups), where each subnet's traffic leaves (route tables, NAT gateway vs NAT
instance), and that every connection to a private host goes through the bastion.
"""

from __future__ import annotations

import re
import subprocess
import time

import pytest

from tests.lab.lab_helpers import (
    ROOT,
    alb_get,
    counting_arrivals,
    counting_packets,
    egress_source,
    served_by,
    server_status,
    tcp_open,
)

# --- from the office (this machine, 192.168.250.1 through the VPN router) -------------------------


def test_office_reaches_the_bastion_on_ssh(lab):
    bastion = lab.by_role("bastion")[0]
    assert tcp_open(bastion["ip"], 22), "the bastion SG opens 22 to admin_cidrs: the office must get in"


@pytest.mark.parametrize(("role", "port"), [("web", 22), ("web", 80), ("nat", 22)])
def test_office_cannot_reach_private_or_nat_hosts(lab, role, port):
    for node in lab.by_role(role):
        with counting_arrivals(lab.host(node["name"]), lab.state["office_host_ip"], port) as arrived:
            opened = tcp_open(node["ip"], port)
        assert not opened, f"{node['name']}:{port} must be closed to the office (SG)"
        # Positive control: the office's packets got there (VPN router, route tables) and the SG dropped them.
        assert arrived["packets"] > 0, f"nothing from the office reached {node['name']}:{port}: routing, not the SG"


def test_alb_answers_from_both_web_hosts(lab):
    names = served_by(lab)
    assert set(names) == {n["name"] for n in lab.by_role("web")}, f"ALB spread: {names}"


def test_alb_health_checks_are_real(lab):
    stats = lab.host(lab.alb["node"]).run("curl -sf 'http://127.0.0.1:8404/stats;csv'")
    assert stats.rc == 0, stats.stderr
    status = {row.split(",")[1]: row.split(",")[17] for row in stats.stdout.splitlines()[1:] if row.count(",") > 17}
    for node in lab.by_role("web"):
        assert status.get(node["resource_id"]) == "UP", f"health check of {node['name']}: {status}"


# --- inside the VPC ----------------------------------------------------------------------------


def test_bastion_reaches_web_hosts_on_ssh(lab):
    bastion = lab.host(lab.by_role("bastion")[0]["name"])
    for node in lab.by_role("web"):
        assert bastion.run(f"nc -z -w 3 {node['ip']} 22").rc == 0, f"bastion -> {node['name']}:22 (web SG)"


def test_web_hosts_reach_each_other_only_as_the_sg_says(lab):
    web01, web02 = lab.by_role("web")[:2]
    sender, receiver = lab.host(web01["name"]), lab.host(web02["name"])
    # Port 80: web01's egress allows it (the forward ports, anywhere); web02's ingress opens 80 to the ALB's
    # group only, so web02 refuses it. Positive control: web01's packets reached web02 (same VPC, local route).
    with counting_arrivals(receiver, web01["ip"], 80) as arrived:
        probe = sender.run(f"nc -z -w 3 {web02['ip']} 80")
    assert probe.rc != 0, f"{web01['name']} reached {web02['name']}:80, which only the ALB may"
    assert arrived["packets"] > 0, f"nothing from {web01['name']} reached {web02['name']}:80: routing, not the SG"
    # Port 22: a web host is not a jump host. web01's own egress group sends only the forward ports, so the
    # probe leaves web01's socket (counted before the SG chain) and never reaches web02.
    with counting_packets(sender, "OUTPUT", f"-d {web02['ip']} -p tcp --dport 22") as sent, \
            counting_arrivals(receiver, web01["ip"], 22) as arrived:
        probe = sender.run(f"nc -z -w 3 {web02['ip']} 22")
    assert probe.rc != 0, f"{web01['name']} reached {web02['name']}:22"
    assert sent["packets"] > 0 and arrived["packets"] == 0, (sent, arrived)


# --- egress: each private subnet leaves through what its route table names ---------------------


def _nat_gateway_ip(lab) -> str:
    return lab.by_kind("nat_gateway")[0]["ip"]


def _nat_instance_ip(lab) -> str:
    return lab.by_role("nat")[0]["ip"]


def _web_in(lab, subnet_prefix: str) -> dict:
    """The web host whose subnet's default route goes to the given NAT (by its address)."""
    return next(n for n in lab.by_role("web") if n["default_via"] == subnet_prefix)


def test_web_host_behind_the_nat_gateway_egresses_with_its_address(lab):
    web = _web_in(lab, _nat_gateway_ip(lab))
    assert egress_source(lab.host(web["name"]), lab.internet_url) == _nat_gateway_ip(lab)
    log = (ROOT / ".cache" / "lab" / "nodes" / "internet" / "requests.log").read_text().splitlines()
    assert log and log[-1].split()[1] == _nat_gateway_ip(lab), "the internet server logs the NAT gateway's address"


def test_web_host_behind_the_nat_instance_egresses_with_its_address(lab):
    web = _web_in(lab, _nat_instance_ip(lab))
    assert egress_source(lab.host(web["name"]), lab.internet_url) == _nat_instance_ip(lab)


def test_before_the_nat_instance_role_the_nat_instance_subnet_had_no_egress(lab):
    assert lab.pre_configure, ("the lab's egress step never ran (python -m lab up runs it before site.yml): "
                               "nothing was observed before configuration")
    assert set(lab.pre_configure) == {n["name"] for n in lab.by_role("web")}, lab.pre_configure
    behind_instance = _web_in(lab, _nat_instance_ip(lab))
    behind_gateway = _web_in(lab, _nat_gateway_ip(lab))
    assert lab.pre_configure[behind_instance["name"]] is None, "no egress until the NAT instance forwards"
    # The managed NAT gateway needs no configuration: it worked from the start.
    assert lab.pre_configure[behind_gateway["name"]] == _nat_gateway_ip(lab)


def test_nat_instance_has_source_dest_check_off_in_moto(lab):
    nat = lab.by_role("nat")[0]
    assert nat["source_dest_check"] is False, "a NAT instance forwards others' packets: the check must be off"


# --- reaching private hosts the way Ansible and a person do -----------------------------------


def test_ansible_adhoc_goes_through_the_bastion(lab):
    ansible = str(ROOT / ".venv" / "bin" / "ansible")
    proc = subprocess.run([ansible, "web", "-m", "ansible.builtin.command", "-a", "hostname"],
                          cwd=ROOT, env=lab.env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for node in lab.by_role("web"):
        assert re.search(rf"^{node['name']}$", proc.stdout, re.M), proc.stdout
    inventory = subprocess.run([str(ROOT / ".venv" / "bin" / "ansible-inventory"), "--host", "web01"],
                               cwd=ROOT, env=lab.env, capture_output=True, text=True, timeout=120)
    assert inventory.returncode == 0, inventory.stderr
    assert "ProxyCommand" in inventory.stdout
    # The web host saw the SSH login come from the bastion, not from the office.
    bastion_ip = lab.by_role("bastion")[0]["ip"]
    journal = lab.host("web01").run("journalctl -u ssh --no-pager -o cat").stdout
    assert re.search(rf"Accepted publickey for \S+ from {re.escape(bastion_ip)} ", journal), journal[-2000:]
    assert lab.state["office_host_ip"] not in journal


def test_ssh_config_works_as_a_person_types_it(lab):
    config = ROOT / ".cache" / "ssh_config"
    assert config.exists(), "playbooks/ssh_config.yml writes .cache/ssh_config"
    proc = subprocess.run(["ssh", "-F", str(config), "web01", "hostname"], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "web01"


# --- security checks of the configured hosts (issue 6's lab part) ----------------------------


def test_bastion_passes_ssh_audit(lab):
    bastion = lab.by_role("bastion")[0]
    ssh_audit = str(ROOT / ".venv" / "bin" / "ssh-audit")
    # The bastion role's target: ssh-audit's hardening policy for the image's OS.
    policy = subprocess.run([ssh_audit, "-n", "-P", "Hardened Debian 12 (version 3)", bastion["ip"]],
                            capture_output=True, text=True, timeout=120)
    assert policy.returncode == 0, policy.stdout[-4000:]
    audit = subprocess.run([ssh_audit, "-n", "--skip-rate-test", bastion["ip"]],
                           capture_output=True, text=True, timeout=120)
    assert "[fail]" not in audit.stdout, audit.stdout[-4000:]


def test_web_hosts_do_not_disclose_versions(lab):
    alb = lab.host(lab.alb["node"])
    for node in lab.by_role("web"):
        result = alb.run(f"curl -sS -D - -o /dev/null --max-time 5 http://{node['ip']}/")
        assert result.rc == 0, result.stderr
        headers = result.stdout.lower()
        server = re.search(r"^server:(.*)$", headers, re.M)
        assert not server or not re.search(r"\d|debian|ubuntu", server.group(1)), headers
        assert "x-powered-by" not in headers
    status, _headers, _body = alb_get(lab, "/does-not-exist")
    assert status == 404


# --- faults and idempotence (last: they change state) ---------------------------------------


def _health_timeout(lab, counts: str) -> float:
    group = lab.alb["target_groups"][0]
    interval = group.get("health_check_interval_seconds", 30)
    return interval * (group.get(counts, 5) + 1) + 15




def _wait_for_status(lab, node: dict, wanted: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while server_status(lab, node) != wanted:
        assert time.monotonic() < deadline, f"the ALB never saw {node['name']} {wanted}"
        time.sleep(1)


def test_alb_keeps_serving_when_apache_stops_on_one_host(lab):
    web01 = lab.node("web01")
    host = lab.host("web01")
    assert host.run("systemctl stop apache2").rc == 0
    try:
        assert set(served_by(lab)) == {n["name"] for n in lab.by_role("web")} - {"web01"}
        _wait_for_status(lab, web01, "DOWN", _health_timeout(lab, "unhealthy_threshold_count"))
        assert set(served_by(lab)) == {n["name"] for n in lab.by_role("web")} - {"web01"}
    finally:
        assert host.run("systemctl start apache2").rc == 0
    _wait_for_status(lab, web01, "UP", _health_timeout(lab, "healthy_threshold_count"))
    assert set(served_by(lab)) == {n["name"] for n in lab.by_role("web")}
