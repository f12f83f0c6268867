"""IPv6 end to end: the admin's IPv6 range is exempt, other IPv6 sources are limited and banned.

The scenario network is dual stack (create.yml); admin_cidrs lists the
controller's IPv6 bridge address, so the role must exempt it in ip6tables
(not iptables) and in fail2ban's ignoreip. Runs after test_40 (the outsider is
banned over IPv4 there, a ban per address: its IPv6 address is still free;
test_40 also checks that the admin is never banned, over both families).
"""

from __future__ import annotations

import ipaddress

from conftest import CONTROLLER_IP6, banned, chain_counters, connect_burst, failed_logins, ip6_of, wait_until

BASTION6 = ip6_of("bastion")
OUTSIDER6 = ip6_of("outsider")
BURST = 10
ATTEMPTS = 30


def test_the_bastion_serves_ssh_over_ipv6(bastion):
    assert BASTION6 in bastion.check_output("ip -6 -brief address show")
    listeners = bastion.check_output("ss -Htln '( sport = :22 )'")
    assert "[::]:22" in listeners, listeners


def test_admin_logs_in_over_ipv6(ssh):
    """A real login from the controller's IPv6 admin address, with the scenario key."""
    result = ssh(BASTION6, "echo $SSH_CONNECTION")
    assert result.returncode == 0, result.stderr
    # sshd saw the connection come from the admin address, over IPv6, to the bastion's IPv6 address.
    client, _port, server, _ = result.stdout.split()
    assert (client, server) == (CONTROLLER_IP6, BASTION6)


def test_ipv6_admin_burst_is_not_limited(bastion):
    before = chain_counters(bastion, "ip6tables")
    assert all(connect_burst(BASTION6, ATTEMPTS))
    after = chain_counters(bastion, "ip6tables")
    assert after["RETURN"] - before["RETURN"] >= ATTEMPTS
    assert after["DROP"] == before["DROP"]


def test_ipv6_non_admin_burst_is_limited(private, bastion):
    """The positive control: the same burst from a non-admin IPv6 source is cut to the burst."""
    before = chain_counters(bastion, "ip6tables")
    script = f"for i in $(seq {ATTEMPTS}); do (nc -6 -z -w 3 {BASTION6} 22 && echo ok || echo dropped) & done; wait"
    outcomes = private.check_output(script).split()
    assert len(outcomes) == ATTEMPTS
    assert outcomes.count("ok") <= BURST + 2  # burst plus what the 1/s rate refills meanwhile
    assert outcomes.count("dropped") >= ATTEMPTS - BURST - 2
    after = chain_counters(bastion, "ip6tables")
    assert after["DROP"] > before["DROP"]
    assert after["RETURN"] == before["RETURN"]  # the private host is not an admin


def test_fail2ban_ignores_the_ipv6_admin_range(bastion):
    listed = bastion.check_output("fail2ban-client get sshd ignoreip").splitlines()[1:]
    ignored = [ipaddress.ip_network(line.split()[-1]) for line in listed]
    assert any(ipaddress.ip_address(CONTROLLER_IP6) in net for net in ignored), ignored
    assert not any(ipaddress.ip_address(OUTSIDER6) in net for net in ignored), ignored


def test_ipv6_repeated_failures_get_banned(bastion, outsider, ssh):
    assert OUTSIDER6 not in banned(bastion)
    failed_logins(outsider, BASTION6, 4)
    assert wait_until(lambda: OUTSIDER6 in banned(bastion), 60), bastion.check_output("fail2ban-client status sshd")
    # The ban is an ip6tables rule: the outsider cannot even connect over IPv6; the admin still can.
    assert "f2b-sshd" in bastion.check_output("ip6tables -w -S INPUT")
    assert outsider.run(f"nc -6 -z -w 3 {BASTION6} 22").rc != 0
    assert ssh(BASTION6, "true").returncode == 0
