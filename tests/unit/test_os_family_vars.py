"""Each host role's OS-family variables define everything its tasks, handlers and templates use.

Only the Debian family runs here (the lab, molecule): no RPM repository is reachable, so no Amazon Linux or
RHEL host can converge. What can be checked without one: every vars/<family>.yml of a role defines the same
variables, and every OS-specific name the role's tasks, handlers and templates read is defined by each family
(or by the role's defaults or vars/main.yml), so a RedHat-family run cannot stop on an undefined variable.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
ROLES = sorted(path.parent.parent.name for path in ROOT.glob("roles/*/vars/RedHat.yml"))
NAME = re.compile(r"\b_{0,2}[a-z][a-z0-9_]*\b")


def defined(path: Path) -> set[str]:
    return set((yaml.safe_load(path.read_text()) or {}) if path.exists() else {})


def families(role: str) -> dict[str, set[str]]:
    """Family file stem (Debian, RedHat, Ubuntu, ...) -> the variables it defines."""
    return {path.stem: defined(path) for path in sorted((ROOT / "roles" / role / "vars").glob("*.yml"))
            if path.stem != "main"}


def used(role: str) -> set[str]:
    """Every identifier-like word in the role's tasks, handlers and templates."""
    base = ROOT / "roles" / role
    files = [p for part in ("tasks", "handlers", "templates") for p in (base / part).rglob("*") if p.is_file()]
    return {word for path in files for word in NAME.findall(path.read_text())}


def test_the_host_roles_have_os_family_vars():
    assert {"apache", "bastion", "nat_instance", "security_upgrades"} <= set(ROLES)


@pytest.mark.parametrize("role", ROLES)
def test_every_family_defines_the_same_variables(role):
    found = families(role)
    assert "Debian" in found and "RedHat" in found, found
    union = set().union(*found.values())
    for family, names in found.items():
        assert names == union, f"roles/{role}/vars/{family}.yml lacks {sorted(union - names)}"


@pytest.mark.parametrize("role", ROLES)
def test_every_os_specific_name_the_role_reads_is_defined_for_each_family(role):
    base = ROOT / "roles" / role
    common = defined(base / "vars" / "main.yml") | defined(base / "defaults" / "main.yml")
    for extra in (base / "defaults" / "main").glob("*.yml"):
        common |= defined(extra)
    found = families(role)
    specific = set().union(*found.values()) | {w for w in used(role) if w.startswith(f"__{role}_")}
    read = used(role) & specific
    assert read, f"roles/{role} reads none of its OS-family variables"
    for family, names in found.items():
        missing = read - names - common
        assert not missing, f"roles/{role}/vars/{family}.yml leaves {sorted(missing)} undefined"
