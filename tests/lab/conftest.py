"""The lab, brought up once per session, in the order an admin would see it.

The lab's own steps observe what must be seen *before* configuration (web02
has no egress until the nat_instance role has run): keys, moto, provision,
hosts, egress (recorded in .cache/lab/egress-before-configure.json) ->
configure (site.yml) -> ssh-config. The lab is taken down at the end of the session (and before, so a
leftover lab never masks a failure).

FUMIDAI_LAB_KEEP=1 leaves the lab up after the session (for debugging);
FUMIDAI_LAB_REUSE=1 uses a lab that is already up instead of building one.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import testinfra

from lab import config as lab_config
from lab import steps as lab_steps
from tests.lab.lab_helpers import galaxy_version, lab_cli

ROOT = Path(__file__).resolve().parents[2]
STATE_FILE = lab_config.STATE_FILE
EGRESS_FILE = lab_config.EGRESS_FILE




def pytest_collection_modifyitems(items):
    """test_login_identity builds and removes a lab of its own: it runs before the session's lab is up.
    test_resilience turns the session's lab into one with a bastion per zone and a standby NAT instance: last."""
    items.sort(key=lambda item: (item.module.__name__ != "tests.lab.test_login_identity",
                                 item.module.__name__ == "tests.lab.test_resilience"))


@dataclass
class Lab:
    state: dict
    pre_configure: dict

    def node(self, name: str) -> dict:
        return next(n for n in self.state["nodes"] if n["name"] == name)

    def by_kind(self, kind: str) -> list[dict]:
        return [n for n in self.state["nodes"] if n["kind"] == kind]

    def by_role(self, role: str) -> list[dict]:
        return [n for n in self.state["nodes"] if n["role"] == role]

    def host(self, name: str):
        """testinfra host for a lab node (podman exec, no SSH involved)."""
        return testinfra.get_host(f"podman://{self.node(name)['container']}")

    @property
    def alb(self) -> dict:
        return self.state["albs"][0]

    @property
    def internet_url(self) -> str:
        return f"http://{self.state['internet_server_ip']}/"

    @property
    def env(self) -> dict:
        """The environment the lab's own ansible runs get (moto endpoint, bastion address mode, key)."""
        return lab_steps.ansible_env()


def _egress_before_configure() -> dict:
    """What the lab's egress step saw (web host -> source address, or None); {} when it never ran."""
    return json.loads(EGRESS_FILE.read_text()) if EGRESS_FILE.exists() else {}


@pytest.fixture(scope="session")
def lab() -> Lab:
    if os.environ.get("FUMIDAI_LAB_REUSE") == "1" and STATE_FILE.exists():
        yield Lab(json.loads(STATE_FILE.read_text()), pre_configure=_egress_before_configure())
        return
    if os.geteuid() != 0:
        pytest.fail("the lab needs root (network interfaces, routes, rootful podman)")
    lab_cli("down")
    try:
        # Every step in order; the egress step records each web host's way out before site.yml runs.
        lab_cli("up")
        yield Lab(json.loads(STATE_FILE.read_text()), pre_configure=_egress_before_configure())
    finally:
        if os.environ.get("FUMIDAI_LAB_KEEP") != "1":
            lab_cli("down")


@pytest.fixture(scope="session")
def ee_image() -> str:
    """The EE image, built by scripts/build-ee.sh (a no-op when nothing changed since the last build)."""
    started = time.monotonic()
    proc = subprocess.run([str(ROOT / "scripts" / "build-ee.sh")], cwd=ROOT, capture_output=True, text=True,
                          timeout=1800)
    assert proc.returncode == 0, f"scripts/build-ee.sh failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n" \
                                 f"{proc.stderr[-4000:]}"
    image = f"localhost/fumidai-ee:{galaxy_version()}"
    assert re.search(rf"image {re.escape(image)} \(\w+\) is up to date|built {re.escape(image)} ", proc.stdout), \
        proc.stdout[-2000:]
    print(f"\nscripts/build-ee.sh: {time.monotonic() - started:.0f}s ({proc.stdout.strip().splitlines()[-1]})")
    return image
