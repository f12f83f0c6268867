"""What is installed satisfies what the project declares: every collection in
requirements.yml (Galaxy users) is present in a version inside its range,
and every pin in requirements.txt is the installed version."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
import yaml
from ansible.utils.version import SemanticVersion
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
REQUIREMENTS_YML = ROOT / "requirements.yml"
REQUIREMENTS_TXT = ROOT / "requirements.txt"
SPEC = re.compile(r"^\s*(==|!=|>=|<=|>|<)?\s*(\S+)\s*$")
COMPARE = {
    "==": lambda a, b: a == b, "!=": lambda a, b: a != b, ">=": lambda a, b: a >= b,
    "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, "<": lambda a, b: a < b,
}


def galaxy_range_allows(version: str, spec: str) -> bool:
    """ansible-galaxy's version range ("*", "1.2.3", ">=1.0.0,<2.0.0") checked the way Galaxy does."""
    if spec in ("*", ""):
        return True
    installed = SemanticVersion(version)
    for part in spec.split(","):
        match = SPEC.match(part)
        assert match, f"unparsable version requirement {part!r}"
        operator, wanted = match.group(1) or "==", match.group(2)
        if not COMPARE[operator](installed, SemanticVersion(wanted)):
            return False
    return True


def installed_collections() -> dict[str, str]:
    """name -> version of the collections ansible-galaxy sees, first match on the path winning."""
    galaxy = Path(sys.executable).parent / "ansible-galaxy"
    out = subprocess.run([str(galaxy), "collection", "list", "--format", "json"],
                         capture_output=True, text=True, check=True, cwd=ROOT).stdout
    found: dict[str, str] = {}
    for _path, collections in json.loads(out).items():
        for name, info in collections.items():
            found.setdefault(name, info["version"])
    return found


def declared_collections() -> list[dict]:
    return yaml.safe_load(REQUIREMENTS_YML.read_text())["collections"]


def declared_packages() -> list[Requirement]:
    lines = (line.split("#", 1)[0].strip() for line in REQUIREMENTS_TXT.read_text().splitlines())
    return [Requirement(line) for line in lines if line]


@pytest.fixture(scope="module")
def collections() -> dict[str, str]:
    return installed_collections()


def test_range_checker_behaves_like_galaxy():
    assert galaxy_range_allows("10.1.2", ">=10.1.0,<11.0.0")
    assert not galaxy_range_allows("11.0.0", ">=10.1.0,<11.0.0")
    assert not galaxy_range_allows("10.0.9", ">=10.1.0,<11.0.0")
    assert galaxy_range_allows("2.3.4", "2.3.4") and not galaxy_range_allows("2.3.5", "==2.3.4")
    assert galaxy_range_allows("0.1.0", "*")


@pytest.mark.parametrize("entry", declared_collections(), ids=lambda e: e["name"])
def test_collection_installed_in_range(entry, collections):
    name, spec = entry["name"], str(entry.get("version", "*"))
    assert name in collections, f"{name} from requirements.yml is not installed"
    assert galaxy_range_allows(collections[name], spec), \
        f"{name} {collections[name]} is installed but requirements.yml asks for {spec}"


def test_every_requirements_yml_entry_is_pinned_to_a_range():
    for entry in declared_collections():
        assert entry.get("version") not in (None, "*", ""), f"{entry['name']} has no version range"


@pytest.mark.parametrize("requirement", declared_packages(), ids=lambda r: r.name)
def test_python_pin_is_what_is_installed(requirement):
    specifiers = list(requirement.specifier)
    assert len(specifiers) == 1 and specifiers[0].operator == "==", f"{requirement} is not pinned with =="
    installed = metadata.version(requirement.name)
    assert installed == specifiers[0].version, f"{requirement.name} {installed} installed, {requirement} pinned"
    for extra in requirement.extras:
        # The extra's own requirements are installed too (e.g. moto[server] brings flask).
        dist = metadata.distribution(requirement.name)
        needed = [Requirement(r) for r in dist.requires or []]
        for dep in needed:
            if dep.marker and dep.marker.evaluate({"extra": extra}) and not dep.marker.evaluate({"extra": ""}):
                assert metadata.version(dep.name), f"{dep.name} (for {requirement.name}[{extra}]) is missing"


def test_the_collection_depends_on_what_requirements_yml_declares():
    """galaxy.yml's dependencies (what installing fumidai.vpc pulls in) name the same ranges as requirements.yml;
    only what the checkout alone needs (containers.podman: the lab and molecule) is left out of them."""
    galaxy = yaml.safe_load((ROOT / "galaxy.yml").read_text())
    declared = {e["name"]: str(e["version"]) for e in declared_collections()}
    assert galaxy["dependencies"] == {k: v for k, v in declared.items() if k != "containers.podman"}


def test_the_collection_requires_the_pinned_ansible_core():
    runtime = yaml.safe_load((ROOT / "meta" / "runtime.yml").read_text())
    core = next(r for r in declared_packages() if r.name == "ansible-core")
    assert core.specifier.contains(metadata.version("ansible-core"))
    pinned = next(iter(core.specifier)).version
    assert Requirement(f"ansible-core{runtime['requires_ansible']}").specifier.contains(pinned)
