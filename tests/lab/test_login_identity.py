"""One login identity end to end: a lab provisioned with ami_os=al2023 is reached as ec2-user on every host.

Its own lab (steps up to hosts, no configure: the login is what is tested, and configuring would double
the time), built and taken down before the session's lab (tests/lab/conftest.py runs this module first).
The login user comes from each instance's image: the inventory plugin sets ansible_user per host from
it (plugins/module_utils/login.py), and the lab creates that user in the container, as the image would
have it. The host keys are pinned from the consoles by fumidai.vpc.host_keys, as configure would.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lab import config as lab_config
from lab import steps as lab_steps
from tests.lab.lab_helpers import lab_cli

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
ONE_LINE = re.compile(r"^(\S+) \| (\w+)(?:!)?(?: \| rc=(\d+))? .*?(?:\(stdout\) (\S+))?$", re.MULTILINE)


def _ansible(env: dict, *args: str) -> subprocess.CompletedProcess:
    extra = ["-e", f"@{lab_config.LAB_VARS.relative_to(ROOT)}"]
    return subprocess.run([str(BIN / args[0]), *args[1:], *extra], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)


@pytest.fixture(scope="module")
def al2023_lab():
    if os.environ.get("FUMIDAI_LAB_REUSE") == "1":
        pytest.skip("FUMIDAI_LAB_REUSE: the running lab is the session's; this test builds a lab of its own")
    if os.geteuid() != 0:
        pytest.fail("the lab needs root (network interfaces, routes, rootful podman)")
    started = time.monotonic()
    # --no-teardown: moto's state goes with the server; the teardown playbook would double this test's time.
    lab_cli("down", "--no-teardown")
    try:
        lab_cli("up", "--until", "hosts", "--ami-os", "al2023")
        env = lab_steps.ansible_env()
        pinned = _ansible(env, "ansible-playbook", "fumidai.vpc.host_keys")
        assert pinned.returncode == 0, pinned.stdout[-3000:] + pinned.stderr[-2000:]
        yield json.loads(lab_config.STATE_FILE.read_text()), env
    finally:
        lab_cli("down", "--no-teardown")
        print(f"\nal2023 lab (up to hosts, host keys, down): {time.monotonic() - started:.0f}s")


def test_every_host_of_an_al2023_lab_answers_as_ec2_user(al2023_lab):
    state, env = al2023_lab
    instances = {n["name"] for n in state["nodes"] if n["kind"] == "instance"}
    assert {n["login_user"] for n in state["nodes"] if n["kind"] == "instance"} == {"ec2-user"}, \
        "the lab reads the login user from each instance's image"
    proc = _ansible(env, "ansible", "all", "-m", "ansible.builtin.command", "-a", "id -un", "-o")
    answers = {host: (status, user) for host, status, _rc, user in ONE_LINE.findall(proc.stdout)}
    assert "UNREACHABLE" not in proc.stdout, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert set(answers) == instances, (answers, proc.stdout[-3000:], proc.stderr[-2000:])
    assert {user for _status, user in answers.values()} == {"ec2-user"}, answers
    assert "bastion" in answers, "the bastion is reached as the image's user too"
