"""fumidai.vpc used by someone else's project against the lab, through the bastion.

The project is a temporary directory of its own (an ansible.cfg, an inventory source with
``plugin: fumidai.vpc.bastion_ec2``, group_vars with the user's settings, a playbook), run inside the
execution environment image: ansible, boto3 and the collection installed from its tarball are all it has
(no checkout, no .collections, no venv of ours). The only files of the lab it gets are what any admin of
this VPC has: the SSH key and the pinned host keys. It runs a playbook that imports the collection's
doctor and reads each web host's hostname through the bastion, and an ad-hoc command.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from lab import config as lab_config
from tests.lab.lab_helpers import RECAP_RE, galaxy_version

PROJECT = "/project"

USER_PLAYBOOK = """\
---
# My project: ask fumidai.vpc's doctor about web01, then read every web host's hostname.
- name: Is web01 reachable over SSH, hop by hop?
  ansible.builtin.import_playbook: fumidai.vpc.doctor
  vars:
    target: web01
    path: ssh

- name: Read each web host's hostname through the bastion
  hosts: role_web
  gather_facts: false
  roles:
    - role: fumidai.vpc.settings
  tasks:
    - name: Read the hostname
      ansible.builtin.command: hostname
      register: user_hostname
      changed_when: false

    - name: Show it
      ansible.builtin.debug:
        msg: "{{ inventory_hostname }} says {{ user_hostname.stdout }}"
"""

USER_CFG = """\
[defaults]
inventory = inventory/
host_key_checking = True
interpreter_python = auto_silent
[inventory]
enable_plugins = fumidai.vpc.bastion_ec2
unparsed_is_failed = True
"""


@pytest.fixture(scope="module")
def user_project(tmp_path_factory, lab) -> Path:
    """The user's own project directory: nothing in it comes from the checkout but their settings (the
    lab's, lab/vars.yml, which a user would write themselves)."""
    project = tmp_path_factory.mktemp("user-project")
    (project / "ansible.cfg").write_text(USER_CFG)
    inventory = project / "inventory"
    (inventory / "group_vars").mkdir(parents=True)
    (inventory / "my.bastion_ec2.yml").write_text("---\nplugin: fumidai.vpc.bastion_ec2\nproxy_public_hosts: true\n")
    settings = yaml.safe_load(lab_config.LAB_VARS.read_text())
    (inventory / "group_vars" / "all.yml").write_text(yaml.safe_dump(settings))
    (project / "mine.yml").write_text(USER_PLAYBOOK)
    return project


def in_ee(lab, image: str, project: Path, *command: str, timeout: int = 600) -> subprocess.CompletedProcess:
    """``command`` inside the EE image, in the user's project, with the lab's AWS endpoint and key files."""
    env = lab.env
    key, known_hosts = env["FUMIDAI_SSH_PRIVATE_KEY"], env["FUMIDAI_KNOWN_HOSTS"]
    passed = {name: env[name] for name in env
              if name.startswith("AWS_") or name in ("FUMIDAI_BASTION_ADDRESS", "FUMIDAI_SSH_PRIVATE_KEY",
                                                     "FUMIDAI_KNOWN_HOSTS", "FUMIDAI_OUTPUTS_FILE")}
    args = ["podman", "run", "--rm", "--network", "host", "--user", "0",
            "-v", f"{project}:{PROJECT}:Z", "-w", PROJECT,
            # The admin's SSH key and the pinned host keys, read-only, at the paths the environment names.
            "-v", f"{key}:{key}:ro", "-v", f"{known_hosts}:{known_hosts}:ro",
            "-e", "ANSIBLE_NOCOLOR=1", "-e", "ANSIBLE_FORCE_COLOR=0"]
    for name, value in passed.items():
        args += ["-e", f"{name}={value}"]
    return subprocess.run([*args, image, *command], capture_output=True, text=True, timeout=timeout)


def test_the_image_holds_the_collection_and_nothing_of_the_checkout(lab, ee_image, user_project):
    proc = in_ee(lab, ee_image, user_project, "ansible-galaxy", "collection", "list", "fumidai.vpc", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {
        "/usr/share/ansible/collections/ansible_collections": {"fumidai.vpc": {"version": galaxy_version()}}}
    proc = in_ee(lab, ee_image, user_project, "ls", "-A", PROJECT)
    assert sorted(proc.stdout.split()) == ["ansible.cfg", "inventory", "mine.yml"], proc.stdout


def test_a_users_playbook_runs_the_collection_through_the_bastion(lab, ee_image, user_project):
    proc = in_ee(lab, ee_image, user_project, "ansible-playbook", "mine.yml", timeout=900)
    assert proc.returncode == 0, f"{proc.stdout[-5000:]}\n{proc.stderr[-2000:]}"
    webs = sorted(node["name"] for node in lab.by_role("web"))
    for name in webs:  # each lab host's hostname is its name
        assert f'"msg": "{name} says {name}"' in proc.stdout, proc.stdout[-3000:]
    assert "PASS" in proc.stdout and "BLOCKED" not in proc.stdout, proc.stdout[-3000:]
    recap = {m[1]: (int(m[4]), int(m[5])) for m in RECAP_RE.finditer(proc.stdout.split("PLAY RECAP")[-1])}
    assert sorted(recap) == sorted([*webs, "localhost"]), proc.stdout[-2000:]
    assert set(recap.values()) == {(0, 0)}, recap


def test_an_ad_hoc_command_reaches_every_web_host(lab, ee_image, user_project):
    proc = in_ee(lab, ee_image, user_project, "ansible", "role_web", "-m", "ansible.builtin.command",
                 "-a", "hostname", "-e", "ansible_user=admin")
    assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-2000:]}"
    webs = sorted(node["name"] for node in lab.by_role("web"))
    assert sorted(re.findall(r"^(\S+) \| CHANGED \| rc=0 >>$", proc.stdout, re.M)) == webs, proc.stdout
