"""fail2ban: journal backend, admins never banned, others banned after repeated failures."""

from __future__ import annotations

import ipaddress

import pytest
from conftest import CONTROLLER_IP, CONTROLLER_IP6, banned, failed_logins, ip6_of, ip_of, wait_until

BASTION = ip_of("bastion")
OUTSIDER = ip_of("outsider")


def test_jail_runs_on_the_journal(bastion):
    assert bastion.service("fail2ban").is_running
    assert bastion.service("fail2ban").is_enabled
    status = bastion.check_output("fail2ban-client status sshd")
    assert "_SYSTEMD_UNIT=ssh.service" in status
    # fail2ban prints the list normalised (127.0.0.0/8, a /32 as a bare address).
    listed = bastion.check_output("fail2ban-client get sshd ignoreip").splitlines()[1:]
    ignored = [ipaddress.ip_network(line.split()[-1]) for line in listed]
    for address in ("127.0.0.1", CONTROLLER_IP):
        assert any(ipaddress.ip_address(address) in net for net in ignored), (address, ignored)
    # admin_cidrs also lists 0.0.0.0/0 and ::/0 (with the opt-in): never ignored.
    assert all(net.prefixlen > 0 for net in ignored), ignored


@pytest.mark.parametrize(
    ("bastion_ip", "admin_ip"), [(BASTION, CONTROLLER_IP), (ip6_of("bastion"), CONTROLLER_IP6)], ids=["ipv4", "ipv6"]
)
def test_admin_is_never_banned(bastion, ssh, bastion_ip, admin_ip):
    for _ in range(5):
        ssh("-l", "nosuchuser", bastion_ip, "true")
    # Let fail2ban read the journal (sshd logged these failures from the admin address), then
    # check: nothing counted against the admin.
    failures = f"journalctl -u ssh --no-pager -n 200 | grep -F 'Invalid user nosuchuser from {admin_ip} '"
    assert wait_until(lambda: bastion.run(failures).rc == 0, 20)
    assert admin_ip not in banned(bastion)
    assert ssh(bastion_ip, "true").returncode == 0


def test_repeated_failures_get_banned(bastion, outsider, ssh):
    # The outsider's earlier (successful) fan-out must not have counted against it.
    assert OUTSIDER not in banned(bastion)
    failed_logins(outsider, BASTION, 4)
    assert wait_until(lambda: OUTSIDER in banned(bastion), 60), bastion.check_output("fail2ban-client status sshd")
    # The ban bites: the outsider cannot even connect; the admin still can.
    assert outsider.run(f"nc -z -w 3 {BASTION} 22").rc != 0
    assert ssh(BASTION, "true").returncode == 0
