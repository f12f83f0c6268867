"""Bad input never locks anyone out: the run fails, the running sshd keeps its config."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from conftest import EPHEMERAL, ip_of

BASTION = ip_of("bastion")
CONVERGE = Path(os.environ["MOLECULE_SCENARIO_DIRECTORY"]) / "converge.yml"


def converge(extra_vars: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            "ansible-playbook",
            "--inventory", str(EPHEMERAL / "inventory"),
            "--extra-vars", json.dumps(extra_vars),
            str(CONVERGE),
        ],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )  # fmt: skip


def sshd_state(bastion) -> tuple[str, str]:
    return bastion.file("/etc/ssh/sshd_config").sha256sum, bastion.check_output("/usr/sbin/sshd -T")


def test_bad_sshd_value_fails_and_keeps_the_old_config(bastion, ssh):
    before = sshd_state(bastion)
    pid_before = bastion.check_output("systemctl show -p MainPID --value ssh")
    result = converge({"bastion_sshd_extra_options": {"PermitTTY": "perhaps"}})
    assert result.returncode != 0
    output = result.stdout + result.stderr
    # The candidate file was refused by `sshd -t`, naming the bad value.
    assert "failed to validate" in output
    assert "unsupported option" in output and "perhaps" in output
    assert sshd_state(bastion) == before
    assert bastion.service("ssh").is_running
    assert bastion.check_output("systemctl show -p MainPID --value ssh") == pid_before
    assert ssh(BASTION, "true").returncode == 0


def test_admin_cidr_covering_everything_is_refused_before_any_change(bastion, ssh):
    before = sshd_state(bastion)
    result = converge({"admin_cidrs": ["0.0.0.0/0"]})
    assert result.returncode != 0
    assert "exempting it would switch off fail2ban" in result.stdout + result.stderr
    assert sshd_state(bastion) == before
    assert ssh(BASTION, "true").returncode == 0
