"""Command auditing on a real kernel: auditd runs, the role's rules are loaded, and a command run over SSH
on the bastion is found with ausearch -k <key> -- but not one run by a login below the minimum uid, nor one
started by no login at all."""

from __future__ import annotations

from conftest import (
    AUDIT_KEY,
    AUDIT_MIN_UID,
    LOW_UID,
    LOW_UID_USER,
    events_with,
    marker,
    wait_for_events,
    wait_for_reboot,
)

ADMIN = "admin"


def admin_uid(bastion) -> int:
    return int(bastion.check_output(f"id -u {ADMIN}"))


def test_auditd_runs_enabled_and_owns_the_kernel_audit(bastion):
    service = bastion.service("auditd")
    assert service.is_running
    assert service.is_enabled
    status = dict(line.split(" ", 1) for line in bastion.check_output("auditctl -s").splitlines() if " " in line)
    assert status["enabled"] == "1"
    # The kernel sends its records to this auditd, not to the journal.
    assert status["pid"] == bastion.check_output("systemctl show --property=MainPID --value auditd")


def test_the_roles_rules_are_installed_and_loaded(bastion):
    rules_file = bastion.file("/etc/audit/rules.d/50-bastion-commands.rules")
    assert rules_file.user == "root" and rules_file.mode == 0o640
    loaded = bastion.check_output("auditctl -l").splitlines()
    for arch in ("b64", "b32"):
        # auditctl prints "auid!=unset" as -1 and "-k" as "-F key=".
        rule = f"-a always,exit -F arch={arch} -S execve -F auid>={AUDIT_MIN_UID} -F auid!=-1 -F key={AUDIT_KEY}"
        assert rule in loaded, loaded


def test_a_command_over_ssh_is_logged_with_the_login_uid(bastion, login):
    word = marker("admin")
    result = login(ADMIN, "/bin/echo", word)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == word
    uid = admin_uid(bastion)
    assert uid >= AUDIT_MIN_UID
    echo = [event for event in wait_for_events(bastion, word) if event.argv[0] == "/bin/echo"]
    assert echo, f"no execve of /bin/echo {word} under -k {AUDIT_KEY}"
    syscall = echo[0].syscall
    assert echo[0].argv == ["/bin/echo", word]
    assert syscall["auid"] == str(uid) and syscall["uid"] == str(uid)
    assert syscall["success"] == "yes"
    assert syscall["exe"] == "/usr/bin/echo"
    assert syscall["key"] == AUDIT_KEY


def test_a_command_run_with_sudo_is_logged_as_root_with_the_login_uid(bastion, login):
    """Who did it stays known after sudo: uid 0, auid the person who logged in."""
    word = marker("sudo")
    result = login(ADMIN, "sudo", "/bin/echo", word)
    assert result.returncode == 0, result.stderr
    echo = [event for event in wait_for_events(bastion, word) if event.argv[0] == "/bin/echo"]
    assert echo, f"no execve of /bin/echo {word} under -k {AUDIT_KEY}"
    assert echo[0].syscall["uid"] == "0"
    assert echo[0].syscall["auid"] == str(admin_uid(bastion))


def test_a_login_below_the_minimum_uid_is_not_logged(bastion, login):
    # The boundary: one below the threshold (the admin, logged, is at or above it).
    assert int(bastion.check_output(f"id -u {LOW_UID_USER}")) == LOW_UID == AUDIT_MIN_UID - 1
    unlogged = marker("low-uid")
    result = login(LOW_UID_USER, "/bin/echo", unlogged)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == unlogged  # it ran
    # Positive control, run after it: once this one is in the log, the first would be too.
    logged = marker("control")
    assert login(ADMIN, "/bin/echo", logged).returncode == 0
    assert wait_for_events(bastion, logged)
    assert events_with(bastion, unlogged) == []


def test_a_process_without_a_login_uid_is_not_logged(bastion, login):
    """A command systemd starts (a service, a timer) has no login uid: the rule's auid!=unset leaves it out."""
    word = marker("no-auid")
    result = login(ADMIN, "sudo", "systemd-run", "--quiet", "--wait", "--pipe", "/bin/echo", word)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == word  # the unit ran echo
    logged = marker("control")
    assert login(ADMIN, "/bin/echo", logged).returncode == 0
    assert wait_for_events(bastion, logged)
    # The admin's own systemd-run is logged (it carries the word as an argument) ...
    programs = [event.argv[0] for event in events_with(bastion, word)]
    assert "systemd-run" in programs, programs
    # ... the echo the unit ran with no login uid is not.
    assert "/bin/echo" not in programs, programs


def test_the_rules_come_back_after_a_reboot(bastion, login):
    """auditd is enabled and loads rules.d at boot: a reboot keeps the auditing."""
    boot_id = bastion.file("/proc/sys/kernel/random/boot_id").content_string.strip()
    login(ADMIN, "sudo", "systemctl", "reboot")
    wait_for_reboot(lambda: login(ADMIN, "cat", "/proc/sys/kernel/random/boot_id", timeout=60), boot_id)
    assert f"-F key={AUDIT_KEY}" in bastion.check_output("auditctl -l")
    word = marker("after-reboot")
    assert login(ADMIN, "/bin/echo", word).returncode == 0
    assert [event for event in wait_for_events(bastion, word) if event.argv[0] == "/bin/echo"]
