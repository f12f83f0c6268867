"""fail2ban: journal backend, admins never banned, others banned after repeated failures."""

from __future__ import annotations

import ipaddress

from conftest import CONTROLLER_IP, ip_of, wait_until

BASTION = ip_of("bastion")
OUTSIDER = ip_of("outsider")


def banned(host) -> list[str]:
    out = host.check_output("fail2ban-client get sshd banned")
    return [ip.strip(" '\"") for ip in out.strip("[]\n ").split(",") if ip.strip(" '\"")]


def failed_logins(from_host, count: int) -> None:
    """Log in as a user that does not exist (sshd logs "Invalid user ... from <ip>")."""
    cmd = (
        "-o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o ConnectTimeout=5"
        f" -i /root/id_ed25519 nosuchuser@{BASTION} true"
    )
    for _ in range(count):
        # Bounded: a ban that lands mid-handshake drops the packets, and ssh would wait forever.
        from_host.run(f"timeout 20 ssh {cmd}")


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


def test_admin_is_never_banned(bastion, ssh):
    for _ in range(5):
        ssh("-l", "nosuchuser", BASTION, "true")
    # Let fail2ban read the journal, then check: nothing counted against the admin.
    assert wait_until(lambda: "nosuchuser" in bastion.check_output("journalctl -u ssh --no-pager -n 50"), 20)
    assert CONTROLLER_IP not in banned(bastion)
    assert ssh(BASTION, "true").returncode == 0


def test_repeated_failures_get_banned(bastion, outsider, ssh):
    # The outsider's earlier (successful) fan-out must not have counted against it.
    assert OUTSIDER not in banned(bastion)
    failed_logins(outsider, 4)
    assert wait_until(lambda: OUTSIDER in banned(bastion), 60), bastion.check_output("fail2ban-client status sshd")
    # The ban bites: the outsider cannot even connect; the admin still can.
    assert outsider.run(f"nc -z -w 3 {BASTION} 22").rc != 0
    assert ssh(BASTION, "true").returncode == 0
