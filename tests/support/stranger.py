"""fumidai.vpc as someone else gets it: the tarball `ansible-galaxy collection build` makes, a fresh virtualenv with
packages from the package index only, and the checks Galaxy and ansible-test run on the built collection.

Used by tests/integration/test_collection.py (a user's project) and tests/integration/test_collection_checks.py
(ansible-test sanity, galaxy-importer). Nothing here puts the checkout on a user's sys.path: the virtualenv is made
from the base interpreter, and every command gets an environment built from scratch (no ANSIBLE_CONFIG, no
PYTHONPATH, a HOME of its own).
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
from collections.abc import Iterator
from pathlib import Path

from tests.support.collection import galaxy, requirement_pins

ROOT = Path(__file__).resolve().parents[2]
GET_PIP_OFFLINE = Path(__file__).with_name("get_pip_offline.py")
PROJECT_VENV_BIN = Path(sys.executable).parent
# What a user of the collection installs from the package index: ansible (ansible-core and the collections
# fumidai.vpc depends on), boto3/botocore (the AWS modules and the inventory plugin) and netaddr (ansible.utils'
# ipaddr filters, which the roles' input validation uses). Versions: the project's own pins in requirements.txt.
USER_PACKAGES = ("ansible", "ansible-core", "boto3", "botocore", "netaddr")
# ansible-test keeps its per-test virtual environments under $HOME/.ansible/test/venv, keyed by Python version and
# requirements: a HOME of its own outside the checkout lets later runs (and CI on the same machine) reuse them.
ANSIBLE_TEST_HOME = Path.home() / ".cache" / "fumidai" / "ansible-test-home"


def checkout_names() -> dict[str, set[str]]:
    """What the checkout's collection contains, by ansible-doc plugin type (filters: every name each filter
    plugin file's FilterModule returns)."""
    meta = galaxy()
    filters: set[str] = set()
    for path in (ROOT / "plugins" / "filter").glob("*.py"):
        module = importlib.import_module(f"ansible_collections.{meta['namespace']}.{meta['name']}.plugins.filter."
                                         f"{path.stem}")
        filters |= set(module.FilterModule().filters())
    return {
        "module": {p.stem for p in (ROOT / "plugins" / "modules").glob("*.py")},
        "inventory": {p.stem for p in (ROOT / "plugins" / "inventory").glob("*.py")},
        "filter": filters,
        "role": {p.name for p in (ROOT / "roles").iterdir() if p.is_dir()},
    }


def pins(names: tuple[str, ...] = USER_PACKAGES) -> list[str]:
    """``name==version`` for each of ``names``, as requirements.txt pins it."""
    pinned = requirement_pins()
    missing = [name for name in names if name not in pinned]
    assert not missing, f"requirements.txt pins none of {missing}"
    return [f"{name}=={pinned[name]}" for name in names]


def base_python() -> str:
    """The interpreter the project's venv was made from (so the new venv shares nothing with that venv)."""
    python = Path(sys.base_prefix) / "bin" / f"python{sys.version_info.major}.{sys.version_info.minor}"
    assert python.is_file(), f"no base interpreter at {python}"
    return str(python)


def clean_env(venv: Path, home: Path, **extra: str) -> dict[str, str]:
    """A user's shell: the venv first on PATH, their own HOME, nothing of the project's environment."""
    return {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8",
            "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0", **extra}


def run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)


def make_venv(path: Path) -> subprocess.CompletedProcess:
    """A fresh virtualenv at ``path`` with USER_PACKAGES from the package index; returns pip's process."""
    subprocess.run([base_python(), "-m", "venv", str(path)], check=True, capture_output=True, timeout=300)
    # pip keeps the machine's own configuration (index, certificates); nothing else of this process's environment.
    env = {key: value for key, value in os.environ.items()
           if key.startswith("PIP_") or key in ("HOME", "LANG", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE")}
    env["PATH"] = f"{path / 'bin'}:/usr/bin:/bin"
    return subprocess.run([str(path / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check",
                           *pins()], env=env, capture_output=True, text=True, timeout=1200, check=False)


def build(ansible_galaxy: Path, out_dir: Path, env: dict[str, str]) -> tuple[Path, subprocess.CompletedProcess]:
    """`ansible-galaxy collection build` of the checkout into ``out_dir`` (never into the checkout)."""
    meta = galaxy()
    proc = run([ansible_galaxy, "collection", "build", "--output-path", out_dir, ROOT], cwd=out_dir, env=env)
    return out_dir / f"{meta['namespace']}-{meta['name']}-{meta['version']}.tar.gz", proc


def tarball_files(tarball: Path) -> set[str]:
    """Every path in the artifact (files and directories, without a trailing slash)."""
    with tarfile.open(tarball) as tar:
        return {member.name.rstrip("/") for member in tar.getmembers()}


def dependency_sources(names: list[str]) -> list[Path]:
    """The collections ``names`` as the ``ansible`` package in the project's venv ships them (no Galaxy server is
    reachable here; the package index's ``ansible`` is where users of this project get them too)."""
    root = Path(sysconfig.get_paths()["purelib"]) / "ansible_collections"
    sources = [root.joinpath(*name.split(".")) for name in names]
    missing = [str(path) for path in sources if not (path / "MANIFEST.json").is_file()]
    assert not missing, f"not in the ansible package: {missing}"
    return sources


def ansible_test_pip_version() -> str:
    """The pip version ansible-test bootstraps into its virtual environments (it names the get-pip file after it)."""
    import ansible_test  # the project's venv runs ansible-test

    source = (Path(ansible_test.__file__).parent / "_internal" / "python_requirements.py").read_text()
    match = re.search(r"default_packages = dict\(\s*pip='([0-9.]+)'", source)
    assert match, "ansible-test no longer names its pip version where this helper looks"
    return match.group(1)


@contextlib.contextmanager
def ansible_test_home() -> Iterator[Path]:
    """ANSIBLE_TEST_HOME, with the offline pip bootstrap where ansible-test looks for its download, held under an
    exclusive lock (two ansible-test runs must not build the same cached virtual environment at once)."""
    cache = ANSIBLE_TEST_HOME / ".ansible" / "test" / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    with open(ANSIBLE_TEST_HOME / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        version = ansible_test_pip_version().replace(".", "_")
        shutil.copyfile(GET_PIP_OFFLINE, cache / f"get_pip_{version}.py")
        yield ANSIBLE_TEST_HOME
