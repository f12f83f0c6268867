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
    """The project's one validator (fumidai_admin_cidr_problems) speaks for the role."""
    before = sshd_state(bastion)
    # The scenario opts in (molecule.yml); without the opt-in the same range is refused.
    result = converge({"admin_cidrs": ["10.89.10.1/32", "0.0.0.0/0"], "allow_ssh_from_anywhere": False})
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "bastion_admin_cidrs[1]: 0.0.0.0/0 opens SSH to the whole internet" in output, output
    assert "(bastion_admin_cidrs defaults to admin_cidrs)" in output
    assert "allow_ssh_from_anywhere" in output
    assert "changed=0" in output
    assert sshd_state(bastion) == before
    assert ssh(BASTION, "true").returncode == 0


def test_bad_permit_open_entries_are_refused_before_any_change(bastion, ssh):
    before = sshd_state(bastion)
    bad = ["10.89.10.0/24:22", f"{ip_of('private')}:80", "private.example:22", "10.89.10.11:22\nPermitOpen any"]
    result = converge({"bastion_permit_open": bad})
    output = result.stdout + result.stderr
    assert result.returncode != 0
    # Every bad entry fails the check on its own (the loop reports each).
    assert output.count("failed: [fumidai-mol-bastion] (item=") == len(bad), output
    for entry in bad[:3]:
        assert f"(item={entry})" in output, entry
    assert "is not an IPv4:port or [IPv6]:port entry on an allowed port" in output
    assert "changed=0" in output
    assert sshd_state(bastion) == before
