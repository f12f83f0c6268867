"""Verify roles/nat_instance on the podman test bed described in vars/testbed.yml.

`host` is the NAT instance (testinfra's podman:// backend, see molecule.yml);
the client is reached the same way. Every test takes `host` so pytest keeps
them in file order (testinfra groups tests by that parametrised fixture):
the restart test must run last.
"""

import json
import os
import pathlib
import socket
import subprocess
import time
from pathlib import Path

import pytest
import testinfra
import yaml

# The checkout linked as the collection fumidai.vpc (scripts/setup.sh): the role by its FQCN.
COLLECTIONS = str(Path(__file__).resolve().parents[5] / ".collections")

SCENARIO = pathlib.Path(__file__).parents[1]
TESTBED = yaml.safe_load((SCENARIO / "vars" / "testbed.yml").read_text())
VPC_CIDR = "10.89.20.0/25"  # molecule.yml host_vars vpc_cidr
SSH_SOURCE = f"{TESTBED['nat_instance_testbed_client_ip']}/32"  # molecule.yml nat_instance_ssh_sources
# The outside network carries the default route. Its interface is the one holding the NAT instance's outside
# address: podman does not always name a container's interfaces in the order its networks were given.
EGRESS = subprocess.run(
    ["podman", "exec", TESTBED["nat_instance_testbed_nat_name"], "ip", "-o", "-4", "addr", "show", "to",
     f"{TESTBED['nat_instance_testbed_nat_outside_ip']}/32"],
    capture_output=True, text=True, check=True).stdout.split()[1]
IN_CHAIN = "FUMIDAI-NAT-IN"
FWD_CHAIN = "FUMIDAI-NAT-FWD"
POST_CHAIN = "FUMIDAI-NAT-POST"
SERVER_IP = TESTBED["nat_instance_testbed_server_ip"]
SERVER_URL = f"http://{SERVER_IP}:{TESTBED['nat_instance_testbed_server_port']}/"
BLOCKED_URL = f"http://{SERVER_IP}:{TESTBED['nat_instance_testbed_server_blocked_port']}/"
NAT_INSIDE_IP = TESTBED["nat_instance_testbed_nat_inside_ip"]
NAT_OUTSIDE_IP = TESTBED["nat_instance_testbed_nat_outside_ip"]
RULES_SCRIPT = "/usr/local/sbin/fumidai-nat-rules"

NET_SYSCTLS = {
    "net.ipv4.ip_forward": 1,
    "net.ipv4.conf.all.send_redirects": 0,
    "net.ipv4.conf.default.send_redirects": 0,
    f"net.ipv4.conf.{EGRESS}.send_redirects": 0,
    "net.ipv4.conf.all.rp_filter": 2,
    "net.ipv4.conf.default.rp_filter": 2,
    f"net.ipv4.conf.{EGRESS}.rp_filter": 2,
}


@pytest.fixture(scope="module")
def client():
    return testinfra.get_host(f"podman://{TESTBED['nat_instance_testbed_client_name']}")


def rules(host, table):
    return host.check_output(f"iptables-save -t {table}").splitlines()


def fetch_from_client(client, source=None, timeout=3, url=SERVER_URL):
    interface = f"--interface {source} " if source else ""
    return client.run(f"curl -sS --max-time {timeout} {interface}{url}")


def wait_for_egress(client, deadline_s=60):
    """After a restart the client's ARP entry for the NAT instance is stale;
    keep trying until it answers (a wait, not a timing assertion)."""
    end = time.monotonic() + deadline_s
    while True:
        result = fetch_from_client(client)
        if result.rc == 0 or time.monotonic() > end:
            return result
        time.sleep(1)


def wait_for_boot(host, deadline_s=120):
    """Wait until systemd in the restarted container has finished booting."""
    end = time.monotonic() + deadline_s
    while True:
        state = host.run("systemctl is-system-running --wait")
        if state.stdout.strip() in ("running", "degraded") or time.monotonic() > end:
            return state.stdout.strip()
        time.sleep(1)


def assert_rules_installed_once(host):
    filter_rules = rules(host, "filter")
    nat_rules = rules(host, "nat")
    assert filter_rules.count(f"-A INPUT -j {IN_CHAIN}") == 1
    assert filter_rules.count(f"-A FORWARD -j {FWD_CHAIN}") == 1
    assert nat_rules.count(f"-A POSTROUTING -j {POST_CHAIN}") == 1
    # The instance's own INPUT: loopback, replies, ICMP, DHCP replies, SSH from the sources; the rest dropped.
    assert [r for r in filter_rules if r.startswith(f"-A {IN_CHAIN} ")] == [
        f"-A {IN_CHAIN} -i lo -j RETURN",
        f"-A {IN_CHAIN} -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN",
        f"-A {IN_CHAIN} -m conntrack --ctstate INVALID -j DROP",
        f"-A {IN_CHAIN} -p icmp -j RETURN",
        f"-A {IN_CHAIN} -p udp -m udp --sport 67 --dport 68 -j RETURN",
        f"-A {IN_CHAIN} -s {SSH_SOURCE} -p tcp -m tcp --dport 22 -j RETURN",
        f"-A {IN_CHAIN} -j DROP",
    ]
    # The role's FORWARD chain: replies, and VPC-originated traffic on the default ports only.
    assert [r for r in filter_rules if r.startswith(f"-A {FWD_CHAIN} ")] == [
        f"-A {FWD_CHAIN} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
        f"-A {FWD_CHAIN} -m conntrack --ctstate INVALID -j DROP",
        f"-A {FWD_CHAIN} -s {VPC_CIDR} -o {EGRESS} -p tcp -m tcp --dport 80 -j ACCEPT",
        f"-A {FWD_CHAIN} -s {VPC_CIDR} -o {EGRESS} -p tcp -m tcp --dport 443 -j ACCEPT",
        f"-A {FWD_CHAIN} -s {VPC_CIDR} -o {EGRESS} -p icmp -j ACCEPT",
        f"-A {FWD_CHAIN} -j DROP",
    ]
    # MASQUERADE only for the VPC, only out of the egress interface.
    masquerades = [r for r in nat_rules if "MASQUERADE" in r]
    assert masquerades == [f"-A {POST_CHAIN} -s {VPC_CIDR} -o {EGRESS} -j MASQUERADE"]
    assert host.run(f"{RULES_SCRIPT} check").rc == 0


def assert_sysctls(host):
    for name, value in NET_SYSCTLS.items():
        assert host.sysctl(name) == value, name


def test_forwarding_sysctls_live_and_persisted(host):
    assert_sysctls(host)
    conf = host.file("/etc/sysctl.d/60-fumidai-nat-instance.conf")
    assert conf.exists
    assert "net.ipv4.ip_forward=1" in conf.content_string.splitlines()
    assert "net.ipv4.conf.all.send_redirects=0" in conf.content_string.splitlines()


def test_only_net_sysctls_in_role_files(host):
    for path in ("/etc/sysctl.d/60-fumidai-nat-instance.conf", "/etc/sysctl.d/61-fumidai-nat-conntrack.conf"):
        keys = [line.split("=")[0].strip() for line in host.file(path).content_string.splitlines() if "=" in line]
        assert keys
        assert all(key.startswith("net.") for key in keys), keys


def test_conntrack_size_persisted_and_module_loaded_early(host):
    conf = host.file("/etc/sysctl.d/61-fumidai-nat-conntrack.conf").content_string.splitlines()
    assert "net.netfilter.nf_conntrack_max=131072" in conf
    assert "nf_conntrack" in host.file("/etc/modules-load.d/fumidai-nat-instance.conf").content_string.splitlines()


def test_rules_present_exactly_once(host):
    assert_rules_installed_once(host)


def test_other_rules_and_policies_untouched(host):
    filter_rules = rules(host, "filter")
    assert "-A INPUT -s 192.0.2.1/32 -m comment --comment not-the-nat-role -j DROP" in filter_rules
    assert ":FORWARD ACCEPT" in " ".join(filter_rules)
    assert ":INPUT ACCEPT" in " ".join(filter_rules)


def test_boot_unit_enabled(host):
    unit = host.service("fumidai-nat-rules.service")
    assert unit.is_enabled
    assert unit.is_running


def server_log():
    return subprocess.run(
        ["podman", "logs", TESTBED["nat_instance_testbed_server_name"]], capture_output=True, text=True, check=True
    ).stdout


def test_client_reaches_server_as_the_nat_instance(host, client):
    result = fetch_from_client(client)
    assert result.rc == 0, result.stderr
    assert result.stdout.strip() == TESTBED["nat_instance_testbed_nat_outside_ip"]
    log = server_log()
    assert f"peer={TESTBED['nat_instance_testbed_nat_outside_ip']}" in log
    assert f"peer={TESTBED['nat_instance_testbed_client_ip']}" not in log


def test_sources_outside_the_vpc_are_not_forwarded(host, client):
    result = fetch_from_client(client, source=TESTBED["nat_instance_testbed_client_foreign_ip"])
    assert result.rc != 0, f"a non-VPC source was forwarded: {result.stdout}"
    assert f"peer={TESTBED['nat_instance_testbed_client_foreign_ip']}" not in server_log()


def test_only_the_configured_ports_are_forwarded(host, client):
    """80 and ICMP go through; 8080, on which the same server answers, does not."""
    blocked_port = TESTBED["nat_instance_testbed_server_blocked_port"]
    # The server answers on 8080 (asked by the NAT instance itself, not forwarded).
    assert host.run(f"curl -sS --max-time 3 {BLOCKED_URL}").stdout.strip() == NAT_OUTSIDE_IP
    requests_before, drops_before = requests_on(blocked_port), drops(host, FWD_CHAIN)
    result = fetch_from_client(client, url=BLOCKED_URL)
    assert result.rc != 0, f"port {blocked_port} was forwarded: {result.stdout}"
    assert requests_on(blocked_port) == requests_before
    assert drops(host, FWD_CHAIN) > drops_before
    assert fetch_from_client(client).stdout.strip() == NAT_OUTSIDE_IP  # 80 still is
    ping = client.run(f"ping -c 1 -W 3 {SERVER_IP}")
    assert ping.rc == 0, ping.stdout + ping.stderr


def requests_on(port):
    """Requests the server logged on one of its ports."""
    return sum(1 for line in server_log().splitlines() if f" port={port} " in line)


def drops(host, chain):
    """Packets the chain's final DROP rule has dropped."""
    last = host.check_output(f"iptables -w -L {chain} -n -v -x").splitlines()[-1].split()
    assert last[2] == "DROP", last
    return int(last[0])


def ssh_port_open(from_host, address, source=None):
    bind = f"-s {source} " if source else ""
    return from_host.run(f"nc -z -w 3 {bind}{address} 22").rc == 0


def test_ssh_to_the_nat_instance_only_from_the_sources(host, client):
    """INPUT: 22 from the client's address (the stand-in bastion) only; ICMP from anywhere."""
    assert host.service("ssh").is_running
    assert ssh_port_open(client, NAT_INSIDE_IP)
    before = drops(host, IN_CHAIN)
    # Inside the VPC but not a source, and from the outside network: dropped by the role's chain.
    assert not ssh_port_open(client, NAT_INSIDE_IP, source=TESTBED["nat_instance_testbed_client_other_ip"])
    server = testinfra.get_host(f"podman://{TESTBED['nat_instance_testbed_server_name']}")
    assert not ssh_port_open(server, NAT_OUTSIDE_IP)
    assert drops(host, IN_CHAIN) >= before + 2
    # The controller (the outside network's gateway) is no source either.
    with pytest.raises(OSError):
        socket.create_connection((NAT_OUTSIDE_IP, 22), timeout=3).close()
    assert server.run(f"ping -c 1 -W 3 {NAT_OUTSIDE_IP}").rc == 0


def test_drift_is_detected_and_reapply_adds_no_duplicates(host):
    host.check_output(f"iptables -D FORWARD -j {FWD_CHAIN}")
    assert host.run(f"{RULES_SCRIPT} check").rc == 1
    host.check_output(f"{RULES_SCRIPT} apply")
    host.check_output(f"{RULES_SCRIPT} apply")
    assert_rules_installed_once(host)


def run_converge(*extra_args):
    """Run the scenario's converge playbook again (molecule's inventory and
    config); stdout and stderr together (ansible-core prints errors on stderr)."""
    return subprocess.run(
        ["ansible-playbook", "-i", os.environ["MOLECULE_INVENTORY_FILE"], str(SCENARIO / "converge.yml"), *extra_args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        check=False,
        env={**os.environ, "ANSIBLE_NOCOLOR": "1", "ANSIBLE_COLLECTIONS_PATH": COLLECTIONS},
    )


def test_bad_cidr_is_refused_before_any_change(host):
    result = run_converge("-e", '{"nat_instance_vpc_cidrs": ["10.89.20.5/25"]}')
    assert result.returncode != 0
    assert "10.89.20.5/25 is not an IPv4 network address" in result.stdout
    assert "changed=0" in result.stdout
    assert_rules_installed_once(host)


def test_missing_default_route_fails_loudly_before_any_change(host):
    default_route = host.check_output("ip -4 route show default")
    assert default_route
    host.check_output("ip -4 route del default")
    try:
        result = run_converge()
    finally:
        host.check_output(f"ip -4 route add {default_route}")
    assert result.returncode != 0
    assert "has no default IPv4 route" in result.stdout
    assert "changed=0" in result.stdout
    assert_rules_installed_once(host)


def test_bad_forward_ports_are_refused_before_any_change(host):
    # Refused by the validator preflight and the security group share (fumidai_forward_problems).
    bad = [{"proto": "tcp"}, {"proto": "icmp", "port": 8}, {"proto": "udp", "port": 0}, {"proto": "sctp", "port": 9}]
    result = run_converge("-e", json.dumps({"nat_instance_forward_ports": bad}))
    assert result.returncode != 0
    for index, reason in enumerate(
        ("is not a TCP port", "icmp takes no port", "is not a UDP port", "proto 'sctp' must be one of")
    ):
        assert f"nat_instance_forward_ports[{index}]: " in result.stdout, index
        assert reason in result.stdout, reason
    assert "changed=0" in result.stdout
    assert_rules_installed_once(host)


def test_ssh_sources_that_would_shut_out_this_run_are_refused(host, tmp_path):
    """The lock-out guard: a run connected over SSH from outside nat_instance_ssh_sources stops first.

    The scenario connects with podman, so the SSH session's environment is
    given to the role's tasks (the guard reads SSH_CONNECTION, as sshd sets it).
    """
    playbook = tmp_path / "over-ssh.yml"
    playbook.write_text(
        "- name: Converge as if connected over SSH from the controller\n"
        "  hosts: all\n"
        "  become: true\n"
        f"  environment: {{SSH_CONNECTION: '10.89.21.1 40022 {NAT_OUTSIDE_IP} 22'}}\n"
        "  roles: [{role: fumidai.vpc.nat_instance}]\n"
    )
    result = subprocess.run(
        ["ansible-playbook", "-i", os.environ["MOLECULE_INVENTORY_FILE"], str(playbook)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        check=False,
        env={**os.environ, "ANSIBLE_NOCOLOR": "1", "ANSIBLE_COLLECTIONS_PATH": COLLECTIONS},
    )
    assert result.returncode != 0
    assert (
        f"This run reaches fumidai-nat-instance over SSH from 10.89.21.1, which nat_instance_ssh_sources ({SSH_SOURCE})"
        " leaves out" in result.stdout
    ), result.stdout
    assert "changed=0" in result.stdout
    assert_rules_installed_once(host)


# Last: restarts the NAT container (its network namespace and /proc/sys
# values are rebuilt; podman sets ip_forward=0 again at start).
def test_rules_and_sysctls_come_back_after_restart(host, client):
    subprocess.run(["podman", "restart", TESTBED["nat_instance_testbed_nat_name"]], check=True, capture_output=True)
    assert wait_for_boot(host) in ("running", "degraded")
    # Both boot-time restorers ran and succeeded (a read-only conntrack key in
    # the container must not fail systemd-sysctl).
    assert host.service("systemd-sysctl.service").is_running
    assert host.service("fumidai-nat-rules.service").is_running
    assert_sysctls(host)
    assert_rules_installed_once(host)
    result = wait_for_egress(client)
    assert result.rc == 0, result.stderr
    assert result.stdout.strip() == TESTBED["nat_instance_testbed_nat_outside_ip"]
