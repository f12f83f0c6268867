"""Filter that renders the SSH client config people use (playbooks/ssh_config.yml), every value checked.

The entries come from the bastion_ec2 inventory, whose names and addresses started as AWS data; the
rendering and its checks live in module_utils/fumidai_ssh.py, shared with the inventory plugin, so the
ssh_config a person uses and the options Ansible uses are written by the same code.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from ansible.errors import AnsibleFilterError

DOCUMENTATION = r"""
name: fumidai_ssh_config
short_description: Render ssh_config Host blocks with pinned host keys, refusing unsafe values
description:
  - C(fumidai_ssh_config) takes a list of entries (name, address, instance_id, user, port, identity_file,
    known_hosts_file, jump, control, note) and returns the ssh_config text. Fails on a value that cannot be
    written safely (an unsafe Host name, an address that is not an IP, a path with a double quote...).
  - C(fumidai_pinned_instance_ids) reads the project's known_hosts file (a path) and returns the instance IDs
    with a pinned key (empty when the file does not exist; fails when a line is not fumidai's format).
"""


def _load_module_util(name: str):
    path = Path(__file__).resolve().parent.parent / "module_utils" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ssh = _load_module_util("fumidai_ssh")
host_keys = _load_module_util("fumidai_host_keys")


def fumidai_ssh_config(entries):
    try:
        return ssh.render_ssh_config(list(entries))
    except (ssh.SshValueError, KeyError) as exc:
        raise AnsibleFilterError(f"fumidai_ssh_config: refusing to write the SSH config: {exc}") from None


def fumidai_pinned_instance_ids(path):
    try:
        return sorted(host_keys.read_known_hosts(str(path)))
    except host_keys.HostKeyError as exc:
        raise AnsibleFilterError(f"fumidai_pinned_instance_ids: {exc}") from None


class FilterModule:
    def filters(self):
        return {"fumidai_ssh_config": fumidai_ssh_config, "fumidai_pinned_instance_ids": fumidai_pinned_instance_ids}
