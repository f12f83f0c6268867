"""Verify roles/security_upgrades on the hosts of a host role's molecule scenario.

The role has no scenario of its own: bastion, nat_instance and apache include
it, and each of their molecule scenarios runs this file too (molecule.yml:
verifier.additional_files_or_dirs), naming the containers that ran it in
SECURITY_UPGRADES_HOSTS (verifier.env, space-separated podman names).

The containers have no package mirror, so unattended-upgrade has no package
lists: its dry run proves that the configuration parses, which origins it
would install from, and that a run completes -- not that a package is upgraded.
"""

from __future__ import annotations

import os
import time

import pytest
import testinfra

if not os.environ.get("SECURITY_UPGRADES_HOSTS"):
    raise RuntimeError("SECURITY_UPGRADES_HOSTS is unset: run this file from a host role's molecule scenario")
HOSTS = os.environ["SECURITY_UPGRADES_HOSTS"].split()
# Debian 12's security archive, as unattended-upgrade prints it (codename expanded).
SECURITY_ORIGINS = [
    "origin=Debian,codename=bookworm,label=Debian-Security",
    "origin=Debian,codename=bookworm-security,label=Debian-Security",
]


def apt_config(host) -> dict[str, list[str]]:
    """`apt-config dump` as {key: [values]} (list entries end with '::')."""
    values: dict[str, list[str]] = {}
    for line in host.check_output("apt-config dump").splitlines():
        key, _, value = line.partition(" ")
        values.setdefault(key.rstrip(":"), []).append(value.rstrip(";").strip('"'))
    return values


@pytest.fixture(scope="module", params=HOSTS)
def upgraded(request):
    return testinfra.get_host(f"podman://{request.param}")


def test_daily_unattended_upgrade_is_switched_on(upgraded):
    config = apt_config(upgraded)
    assert config["APT::Periodic::Unattended-Upgrade"] == ["1"]
    assert config["APT::Periodic::Update-Package-Lists"] == ["1"]
    assert config["Unattended-Upgrade::Automatic-Reboot"] == ["false"]
    for timer in ("apt-daily.timer", "apt-daily-upgrade.timer"):
        assert upgraded.service(timer).is_enabled, timer
        assert upgraded.service(timer).is_running, timer
    assert upgraded.service("unattended-upgrades").is_enabled


def test_origins_are_the_security_archive_only(upgraded):
    config = apt_config(upgraded)
    # The package's lists are cleared: Debian's own also takes every point release (label=Debian).
    assert [p for p in config["Unattended-Upgrade::Origins-Pattern"] if p] == [
        "origin=Debian,codename=${distro_codename},label=Debian-Security",
        "origin=Debian,codename=${distro_codename}-security,label=Debian-Security",
    ]
    assert not [p for p in config.get("Unattended-Upgrade::Allowed-Origins", []) if p]


def test_a_dry_run_completes_with_those_origins(upgraded):
    for _ in range(5):
        result = upgraded.run("unattended-upgrade --dry-run --verbose")
        # An apt timer may hold the lock for a moment (offline, it fails fast): try again.
        if result.rc == 0 or "lock" not in (result.stdout + result.stderr).lower():
            break
        time.sleep(3)
    output = result.stdout + result.stderr
    assert result.rc == 0, output
    allowed = [line for line in output.splitlines() if line.startswith("Allowed origins are: ")]
    assert allowed == ["Allowed origins are: " + ", ".join(SECURITY_ORIGINS)], output
    # No mirror here: nothing to install, and the run says so instead of failing.
    assert "No packages found that can be upgraded unattended" in output
