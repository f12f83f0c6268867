"""The checks the built fumidai.vpc must pass before anyone installs it: `ansible-test sanity` on the collection as
installed from the tarball, and galaxy-importer (what Galaxy runs on an upload: its ansible-doc, ansible-lint and
content checks).

ansible-test runs with --venv: it makes its own controller virtualenv from the base interpreter (so nothing of the
checkout is on its path) and one cached virtualenv per sanity test (stranger.ANSIBLE_TEST_HOME keeps them between
runs). It sees only the ansible_collections root it runs in, so the collection's dependencies that its plugins'
docs and imports name are installed there beside it, as a collection's CI would (from the ansible package here,
since no Galaxy server is reachable).
"""

from __future__ import annotations

import json
import re
import sys

import pytest
import yaml

from tests.support import stranger
from tests.support.stranger import PROJECT_VENV_BIN, ROOT

NAMESPACE, NAME = stranger.galaxy()["namespace"], stranger.galaxy()["name"]
IGNORE_FILE = ROOT / "tests" / "sanity" / "ignore-2.19.txt"
PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"
# Collections whose doc fragments or module_utils our plugins use (plugins/modules/host_keys.py: amazon.aws).
SANITY_DEPENDENCIES = ["amazon.aws"]


def tool_env(home) -> dict[str, str]:
    """The project's venv tools (ansible-test, galaxy-importer) without the project's environment."""
    return {"PATH": f"{PROJECT_VENV_BIN}:/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8"}


def ran(proc) -> str:
    return f"rc={proc.returncode}\n--- stdout\n{proc.stdout[-8000:]}\n--- stderr\n{proc.stderr[-8000:]}"


@pytest.fixture(scope="module")
def tarball(tmp_path_factory):
    dist = tmp_path_factory.mktemp("dist")
    path, proc = stranger.build(PROJECT_VENV_BIN / "ansible-galaxy", dist, tool_env(dist))
    assert proc.returncode == 0, ran(proc)
    return path


def test_every_sanity_ignore_entry_says_why():
    # ansible-test allows no comment-only lines in an ignore file: the reason follows each entry.
    for line in IGNORE_FILE.read_text().splitlines():
        assert re.fullmatch(r"plugins/\S+\.py [a-z-]+:[a-z0-9-]+  # \S.{20,}", line), line


def test_ansible_test_sanity_passes_on_the_installed_collection(tarball, tmp_path):
    root = tmp_path / "ansible_collections"
    install = stranger.run([PROJECT_VENV_BIN / "ansible-galaxy", "collection", "install", "--no-deps", "--force",
                            "-p", root, tarball, *stranger.dependency_sources(SANITY_DEPENDENCIES)],
                           cwd=tmp_path, env=tool_env(tmp_path))
    assert install.returncode == 0, ran(install)
    collection = root / NAMESPACE / NAME
    ansible_test = PROJECT_VENV_BIN / "ansible-test"
    with stranger.ansible_test_home() as home:
        listed = stranger.run([ansible_test, "sanity", "--list-tests"], cwd=collection, env=tool_env(home))
        assert listed.returncode == 0, ran(listed)
        proc = stranger.run([ansible_test, "sanity", "--venv", "--python", PYTHON, "--color", "no"],
                            cwd=collection, env=tool_env(home), timeout=1800)
    assert proc.returncode == 0, ran(proc)
    assert [line for line in (proc.stdout + proc.stderr).splitlines() if line.startswith(("ERROR", "FATAL"))] == []
    # Every sanity test ran (none skipped for a missing Python, virtualenv or requirement).
    names = re.findall(r'^Running sanity test "([^"]+)"', proc.stdout + proc.stderr, re.M)
    assert sorted(names) == sorted(listed.stdout.split())
    assert "Skipping sanity test" not in proc.stdout + proc.stderr


def test_galaxy_importer_accepts_the_tarball(tarball, tmp_path):
    config = tmp_path / "galaxy-importer.cfg"
    # Galaxy's own checks as galaxy-importer runs them, stated rather than inherited. ansible-test inside the importer
    # needs a container image: the test above runs it instead. Its ansible-lint pass (80 s here) is off: make lint runs
    # ansible-lint's production profile on the whole checkout, of which the artifact is a part.
    config.write_text("[galaxy-importer]\nrun_ansible_doc = True\nrun_ansible_lint = False\n"
                      "offline_ansible_lint = True\ncheck_changelog = True\nrun_ansible_test = False\n"
                      f"ansible_local_tmp = {tmp_path / 'ansible-tmp'}\ntmp_root_dir = {tmp_path}\n")
    env = {**tool_env(tmp_path), "GALAXY_IMPORTER_CONFIG": str(config)}
    proc = stranger.run([PROJECT_VENV_BIN / "python", "-m", "galaxy_importer.main", tarball], cwd=tmp_path,
                        env=env, timeout=900)
    assert proc.returncode == 0, ran(proc)
    lines = proc.stdout.splitlines()
    assert lines[-1] == "Importer processing completed successfully", ran(proc)
    assert [line for line in lines if line.startswith("ERROR")] == []
    ignores = len(IGNORE_FILE.read_text().splitlines())
    # The only warning: that the ignore file has entries (each says why in it).
    assert [line for line in lines if line.startswith("WARNING")] == [
        f"WARNING: Ignore files skip ansible-test sanity tests, found {IGNORE_FILE.name} with {ignores} statement(s)"
    ] * bool(ignores)
    result = json.loads((tmp_path / "importer_result.json").read_text())
    assert result["requires_ansible"] == yaml.safe_load((ROOT / "meta" / "runtime.yml").read_text())[
        "requires_ansible"]
    documented = {(c["content_type"], c["content_name"]) for c in result["docs_blob"]["contents"]
                  if c.get("doc_strings")}
    names = stranger.checkout_names()
    for kind in ("module", "inventory", "filter"):
        assert {(kind, name) for name in names[kind]} - documented == set(), f"{kind}s without docs"
    assert {c["name"] for c in result["contents"] if c["content_type"] == "role"} == names["role"]
