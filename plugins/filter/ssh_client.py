"""SSH client filters: ssh_config renders the SSH client config people use (playbooks/ssh_config.yml), every
value checked; pinned_instance_ids lists the instances whose host key is pinned in the project's known_hosts.

The entries come from the bastion_ec2 inventory, whose names and addresses started as AWS data; the
rendering, its checks and the bastion's ControlPath live in module_utils/ssh_args.py, shared with the inventory
plugin, so the ssh_config a person uses and the options Ansible uses are written by the same code and share
one bastion master.

Each filter is documented in its sidecar beside this file (ssh_config.yml, pinned_instance_ids.yml), which
ansible-doc reads: ``ansible-doc -t filter fumidai.vpc.ssh_config``.
"""

from __future__ import annotations

from ansible.errors import AnsibleFilterError
from ansible_collections.fumidai.vpc.plugins.module_utils import fumidai_host_keys as host_keys
from ansible_collections.fumidai.vpc.plugins.module_utils import ssh_args as ssh


def fumidai_ssh_config(entries):
    """The ssh_config text for a list of host entries; fails on any value it cannot write safely."""
    try:
        return ssh.render_ssh_config(list(entries))
    except (ssh.SshValueError, KeyError) as exc:
        raise AnsibleFilterError(f"fumidai_ssh_config: refusing to write the SSH config: {exc}") from None


def fumidai_pinned_instance_ids(path):
    """Sorted instance IDs with a pinned key in the known_hosts file at ``path`` ([] when it does not exist)."""
    try:
        return sorted(host_keys.read_known_hosts(str(path)))
    except host_keys.HostKeyError as exc:
        raise AnsibleFilterError(f"fumidai_pinned_instance_ids: {exc}") from None


class FilterModule:
    def filters(self):
        return {"ssh_config": fumidai_ssh_config, "pinned_instance_ids": fumidai_pinned_instance_ids}
