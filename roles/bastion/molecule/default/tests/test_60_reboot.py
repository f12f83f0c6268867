"""After a reboot (container restart) the hardening is back without Ansible."""

from __future__ import annotations

import subprocess

from conftest import PLATFORMS, ip_of, podman_host, wait_until

BASTION = ip_of("bastion")
CHAIN = "BASTION-SSH-RATELIMIT"


def test_rate_limit_and_services_survive_a_reboot(ssh):
    subprocess.run(["podman", "restart", PLATFORMS["bastion"]["name"]], check=True, capture_output=True, timeout=120)
    bastion = podman_host("bastion")
    booted = ("running", "degraded")
    assert wait_until(lambda: bastion.run("systemctl is-system-running --wait").stdout.strip() in booted, 120)
    rules = bastion.check_output("iptables -w -S INPUT").splitlines()
    assert len([r for r in rules if r.endswith(f"-j {CHAIN}")]) == 1
    assert "hashlimit" in bastion.check_output(f"iptables -w -S {CHAIN}")
    assert bastion.service("fail2ban").is_running
    assert bastion.service("bastion-ssh-ratelimit").is_running
    assert wait_until(lambda: ssh(BASTION, "true").returncode == 0, 60)
