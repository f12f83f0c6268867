"""Fixtures for the audit_vm scenario: the VM over SSH, the role's audit settings and an audit-log reader.

The VM's address and port come from the instance config create.yml wrote; its host keys are pinned in the
scenario's known_hosts; the audit key and minimum uid are the role's defaults (the scenario does not change them).
"""

from __future__ import annotations

import os
import re
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
import testinfra
import yaml

SCENARIO_DIR = Path(os.environ["MOLECULE_SCENARIO_DIRECTORY"])
SCENARIO = yaml.safe_load((SCENARIO_DIR / "molecule.yml").read_text())
ALL_VARS = SCENARIO["provisioner"]["inventory"]["group_vars"]["all"]
ROLE_DEFAULTS = yaml.safe_load((Path(os.environ["MOLECULE_PROJECT_DIRECTORY"]) / "defaults" / "main.yml").read_text())
AUDIT_KEY = ROLE_DEFAULTS["bastion_command_audit_key"]
AUDIT_MIN_UID = int(ROLE_DEFAULTS["bastion_command_audit_min_uid"])
LOW_UID_USER = ALL_VARS["scenario_low_uid_user"]
LOW_UID = int(ALL_VARS["scenario_low_uid"])
EPHEMERAL = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])
INSTANCE = yaml.safe_load((EPHEMERAL / "instance_config.yml").read_text())[0]


@pytest.fixture(scope="session")
def bastion():
    """The VM through the molecule inventory (pinned host key), commands run with sudo."""
    return testinfra.get_host(
        f"ansible://{INSTANCE['instance']}", ansible_inventory=os.environ["MOLECULE_INVENTORY_FILE"], sudo=True
    )


@pytest.fixture(scope="session")
def ssh_config(tmp_path_factory) -> Path:
    """An ssh_config for logins to the VM: the scenario key, the pinned host keys, nothing else."""
    path = tmp_path_factory.mktemp("ssh") / "config"
    path.write_text(
        "Host vm\n"
        "  HostName 127.0.0.1\n"
        f"  Port {INSTANCE['port']}\n"
        f"  IdentityFile {INSTANCE['identity_file']}\n"
        "  IdentitiesOnly yes\n"
        f"  UserKnownHostsFile {EPHEMERAL / 'known_hosts'}\n"
        "  StrictHostKeyChecking yes\n"
        "  BatchMode yes\n"
        "  LogLevel ERROR\n"
        "  ConnectTimeout 90\n"
    )
    return path


@pytest.fixture(scope="session")
def login(ssh_config):
    """Log in to the VM as user over SSH (a real session: sshd, PAM, a login uid) and run argv."""

    def run(user: str, *argv: str, timeout: int = 120) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["ssh", "-F", str(ssh_config), "-l", user, "vm", *argv],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    return run


def marker(label: str) -> str:
    """A word found nowhere else in the audit log."""
    return f"fumidai-audit-{label}-{uuid.uuid4().hex[:12]}"


@dataclass
class AuditEvent:
    """One audited execve: the SYSCALL record's fields and the EXECVE record's arguments."""

    syscall: dict[str, str]
    argv: list[str]


FIELD = re.compile(r'(\w+)=("[^"]*"|\S+)')


def audit_events(host, key: str = AUDIT_KEY) -> list[AuditEvent]:
    """Every event the audit log holds under key (ausearch --raw, records grouped by event id)."""
    # --input-logs: without a terminal ausearch would read its standard input instead of the logs.
    result = host.run(f"ausearch --input-logs --raw -k {key}")
    assert result.rc in (0, 1), result.stderr  # 1: no matches yet
    records: dict[str, dict[str, list[dict[str, str]]]] = {}
    for line in result.stdout.splitlines():
        event = re.search(r"msg=audit\(([^)]+)\)", line)
        kind = re.match(r"type=(\w+)", line)
        if not event or not kind:
            continue
        fields = dict(FIELD.findall(line.split("):", 1)[-1]))
        records.setdefault(event.group(1), {}).setdefault(kind.group(1), []).append(fields)
    events = []
    for by_type in records.values():
        if "SYSCALL" not in by_type or "EXECVE" not in by_type:
            continue
        execve = by_type["EXECVE"][0]
        argv = [decode_arg(execve[f"a{i}"]) for i in range(int(execve["argc"])) if f"a{i}" in execve]
        syscall = {name: value.strip('"') for name, value in by_type["SYSCALL"][0].items()}
        events.append(AuditEvent(syscall=syscall, argv=argv))
    return events


def decode_arg(value: str) -> str:
    """An EXECVE argument: quoted text, or unquoted hex when it holds spaces or special characters."""
    if value.startswith('"'):
        return value.strip('"')
    return bytes.fromhex(value).decode(errors="replace")


def events_with(host, word: str) -> list[AuditEvent]:
    """The audited execve calls whose arguments contain word."""
    return [event for event in audit_events(host) if any(word in arg for arg in event.argv)]


def wait_for_events(host, word: str, timeout: float = 60) -> list[AuditEvent]:
    """Poll the audit log until an execve with word appears (auditd writes asynchronously)."""
    deadline = time.monotonic() + timeout
    while True:
        found = events_with(host, word)
        if found or time.monotonic() > deadline:
            return found
        time.sleep(1)


def wait_for_reboot(read_boot_id, old_boot_id: str, timeout: float = 600) -> None:
    """Poll read_boot_id() (a login printing /proc/sys/kernel/random/boot_id) until a new boot answers. A login
    that hangs (the guest went down mid-handshake, or an emulated guest under load is still booting) is a "not
    yet", like one that fails."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            result = read_boot_id()
        except subprocess.TimeoutExpired:
            continue
        if result.returncode == 0 and result.stdout.strip() not in ("", old_boot_id):
            return
        time.sleep(3)
    raise AssertionError("the VM did not come back from the reboot")
