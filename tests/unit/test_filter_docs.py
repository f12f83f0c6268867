"""The filters' documentation matches the filters: every filter fumidai.vpc registers has a sidecar
plugins/filter/<name>.yml (the format ansible-doc reads for filters) whose options are the function's
parameters, and every fumidai.vpc filter the playbooks and roles use is one of them.

One Python file holds several filters, so a DOCUMENTATION in it would be shown for each of them instead of
its own sidecar: the Python files carry none.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
FILTER_DIR = ROOT / "plugins" / "filter"
PREFIX = "fumidai.vpc."
# A filter applied by FQCN: `| fumidai.vpc.name`, or passed by name to map()/select() and friends.
USED = re.compile(r"(?:\|\s*|['\"])fumidai\.vpc\.([a-z_][a-z0-9_]*)")


def registered() -> dict[str, object]:
    """{filter name: function} over every plugins/filter/*.py, as Ansible's loader sees them."""
    filters = {}
    for path in sorted(FILTER_DIR.glob("*.py")):
        module = importlib.import_module(f"ansible_collections.fumidai.vpc.plugins.filter.{path.stem}")
        for name, function in module.FilterModule().filters().items():
            assert name not in filters, f"{name} is registered by two files"
            filters[name] = function
    return filters


FILTERS = registered()


def sidecar(name: str) -> dict:
    return yaml.safe_load((FILTER_DIR / f"{name}.yml").read_text())


def test_the_collection_registers_the_documented_filter_names():
    assert sorted(FILTERS) == ["admin_cidr_problems", "forward_problems", "forward_rules", "image_lookup",
                               "image_os_problems", "network_problems",
                               "pinned_instance_ids", "port_problems", "ssh_config", "teardown_plan",
                               "web_instance_problems"]


@pytest.mark.parametrize("name", sorted(FILTERS))
def test_each_filter_has_a_sidecar_matching_its_signature(name):
    doc = sidecar(name)
    documentation = doc["DOCUMENTATION"]
    assert documentation["name"] == name
    assert documentation["version_added"] == "1.0.0"
    assert documentation["short_description"] and documentation["description"]

    parameters = list(inspect.signature(FILTERS[name]).parameters.values())
    options = documentation["options"]
    # The filtered value is _input; the other parameters are options of the same names, in the same order
    # as `positional`, required exactly when the function gives them no default.
    assert set(options) == {"_input"} | {p.name for p in parameters[1:]}
    assert options["_input"]["required"] is True
    positional = [word.strip() for word in documentation.get("positional", "").split(",") if word.strip()]
    assert positional == [p.name for p in parameters[1:]]
    for parameter in parameters[1:]:
        required = parameter.default is inspect.Parameter.empty
        assert options[parameter.name].get("required", False) is required, parameter.name
        if not required and "default" in options[parameter.name]:
            documented = options[parameter.name]["default"]
            actual = list(parameter.default) if isinstance(parameter.default, tuple) else parameter.default
            assert documented == actual, parameter.name

    assert f"{PREFIX}{name}" in doc["EXAMPLES"]
    assert "_value" in doc["RETURN"]


def test_no_filter_file_carries_python_documentation():
    for path in FILTER_DIR.glob("*.py"):
        assigned = {target.id for node in ast.parse(path.read_text()).body if isinstance(node, ast.Assign)
                    for target in node.targets if isinstance(target, ast.Name)}
        assert not assigned & {"DOCUMENTATION", "EXAMPLES", "RETURN"}, path.name


def test_every_sidecar_documents_a_registered_filter():
    assert sorted(path.stem for path in FILTER_DIR.glob("*.yml")) == sorted(FILTERS)


def test_every_filter_the_playbooks_and_roles_use_is_registered_and_documented():
    used = set()
    for top in ("playbooks", "roles"):
        for path in (ROOT / top).rglob("*"):
            if path.suffix in (".yml", ".yaml", ".j2") and "molecule" not in path.parts:
                used |= set(USED.findall(path.read_text()))
    # Modules, roles and playbooks share the namespace (a quoted role or module name matches too): keep the rest.
    others = {path.name for path in (ROOT / "roles").iterdir() if path.is_dir()}
    others |= {path.stem for path in (ROOT / "playbooks").glob("*.yml")}
    others |= {path.stem for kind in ("modules", "inventory") for path in (ROOT / "plugins" / kind).glob("*.py")}
    used -= others - set(FILTERS)
    assert used, "no fumidai.vpc filter found in playbooks/ and roles/: the pattern is stale"
    assert used <= set(FILTERS), sorted(used - set(FILTERS))
    for name in used:
        assert (FILTER_DIR / f"{name}.yml").is_file(), name


def test_ansible_doc_shows_each_filter_from_its_sidecar():
    names = [f"{PREFIX}{name}" for name in sorted(FILTERS)]
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"}
    proc = subprocess.run([str(Path(sys.executable).parent / "ansible-doc"), "-t", "filter", "--json", *names],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    shown = json.loads(proc.stdout)
    assert sorted(shown) == names
    for fqcn, entry in shown.items():
        short = fqcn.removeprefix(PREFIX)
        assert entry["doc"]["name"] == short
        assert entry["doc"]["filename"].endswith(f"/plugins/filter/{short}.yml")
        assert entry["doc"]["short_description"] == sidecar(short)["DOCUMENTATION"]["short_description"]
