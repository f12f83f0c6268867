"""The doctor's registry is the one list of paths: the module's choices and required arguments, its
documentation, and the report all read it; a path registered once is walked and reported."""

from __future__ import annotations

import json

import pytest
import yaml
from ansible.module_utils.testing import patch_module_args
from ansible_collections.fumidai.vpc.plugins.module_utils.doctor import registry
from ansible_collections.fumidai.vpc.plugins.module_utils.doctor.hops import Walk
from ansible_collections.fumidai.vpc.plugins.module_utils.doctor.registry import PATHS, DoctorPath, register, walk
from ansible_collections.fumidai.vpc.plugins.modules import doctor as doctor_module

from tests.unit.doctor.walk_helpers import ADMIN_IP
from tests.unit.fumidai_state import INSTANCES, clean_state


def documented_options() -> dict:
    return yaml.safe_load(doctor_module.DOCUMENTATION)["options"]


def test_the_module_offers_the_registered_paths():
    assert doctor_module.argument_spec()["path"]["choices"] == list(PATHS) == ["ssh", "http", "egress"]
    assert doctor_module.required_if() == [("path", "ssh", ["source_cidr"])]


def test_the_documentation_lists_the_registered_paths():
    """DOCUMENTATION is static YAML (ansible-doc and validate-modules read it): it may not drift."""
    assert documented_options()["path"]["choices"] == list(PATHS)
    assert set(documented_options()) - {"path", "target", "state"} == set(registry.ARGUMENTS)
    description = " ".join(yaml.safe_load(doctor_module.DOCUMENTATION)["description"])
    assert all(f"C({name})" in description for name in PATHS)


def test_every_path_reads_only_known_arguments():
    for entry in PATHS.values():
        assert set(entry.arguments) <= set(registry.ARGUMENTS), entry.name
        assert set(entry.required) <= set(entry.arguments), entry.name


@pytest.fixture
def dummy_path():
    """A path that only checks the target is running: one module's walk function and one registry entry."""

    def walk_running(state, target, arguments) -> Walk:
        result = Walk(state, "running", target)
        result.instance_running("target instance", target, "target")
        return result

    entry = register(DoctorPath("running", walk_running, "the target is running", origin="the console"))
    yield entry
    del PATHS["running"]


def test_a_registered_path_is_offered_walked_and_reported(dummy_path):
    assert "running" in doctor_module.argument_spec()["path"]["choices"]
    report = walk(clean_state(), "running", "web01")
    assert report["path"] == "running" and not report["blocked"]
    assert report["lines"][0] == f"running path to web01 ({INSTANCES['web01'][0]}), from the console, hop by hop:"
    assert report["summary"].endswith("(the console): every hop passes")


def test_a_path_is_registered_once(dummy_path):
    with pytest.raises(ValueError, match="already has a path named running"):
        register(dummy_path)


def run_module(capsys, **args) -> dict:
    with patch_module_args(args), pytest.raises(SystemExit):
        doctor_module.main()
    return json.loads(capsys.readouterr().out)


def test_the_module_walks_facts_it_is_given(capsys):
    """With state given the module reads nothing from AWS (the facts are the unit tests' hand-built ones)."""
    result = run_module(capsys, path="ssh", target="web02", source_cidr=ADMIN_IP, state=clean_state())
    assert result["blocked"] is False and result["target"] == INSTANCES["web02"][0]
    assert result["summary"].startswith(f"ssh path to web02 ({INSTANCES['web02'][0]}) ({ADMIN_IP} via the bastion)")


def test_the_module_refuses_an_unregistered_path(capsys):
    result = run_module(capsys, path="telnet", target="web02", state=clean_state())
    assert result["failed"] and "value of path must be one of: ssh, http, egress, got: telnet" in result["msg"]


def test_the_module_needs_the_source_for_ssh(capsys):
    result = run_module(capsys, path="ssh", target="web02", state=clean_state())
    assert result["failed"] and "source_cidr" in result["msg"]
