"""bastion_ec2 ssh arguments: quoting of paths and users, the hop without multiplexing, host keys always checked."""

from __future__ import annotations

import shlex
import sys

import pytest
import yaml
from ansible.errors import AnsibleError
from ansible.inventory.data import InventoryData
from ansible.parsing.dataloader import DataLoader
from ansible.plugins.loader import inventory_loader

from tests.unit import inventory_helpers as helpers
from tests.unit.inventory_helpers import HOP, Recorder, run_inventory, ssh_argv

aws = helpers.aws  # the fixture: in-process moto with the project's images, an AwsSeed


def test_quoting_survives_spaces_quotes_and_percent_signs(aws, tmp_path):
    aws.project()
    key = str(tmp_path / "keys dir" / "it's 100%_key")
    cp_dir = tmp_path / "control dir %r"
    result = run_inventory(tmp_path, private_key_file=key, control_path_dir=str(cp_dir), bastion_user="ops user")
    web = result.vars("web01")
    argv = ssh_argv(web["ansible_ssh_common_args"], web["ansible_host"])
    bastion = result.vars("bastion")
    assert argv[:2] == [sys.executable, str(HOP)]
    assert argv[argv.index("--identity") + 1] == key
    control = argv[argv.index("--control-path") + 1]
    assert control.startswith(str(cp_dir) + "/fumidai-hop-")
    assert argv[-3:] == [f"ops user@{bastion['ansible_host']}", web["ansible_host"], "22"]
    assert web["ansible_ssh_private_key_file"] == key
    assert bastion["ansible_ssh_private_key_file"] == key
    assert bastion["ansible_user"] == "ops user"
    # Ansible %-formats ansible_control_path and ssh expands it again: % is written %%%% to stay literal.
    assert bastion["ansible_control_path"] == control.replace("%", "%%%%")


def test_without_multiplexing_the_hop_is_plain_ssh(aws, tmp_path, monkeypatch):
    hosts = aws.project().hosts
    monkeypatch.setenv("FUMIDAI_BASTION_MULTIPLEX", "false")
    result = run_inventory(tmp_path, bastion_port=2222)
    bastion_ip, bastion_id = hosts["bastion"]["public"], hosts["bastion"]["id"]
    argv = ssh_argv(result.vars("web01")["ansible_ssh_common_args"], "10.0.11.9")
    assert argv == ["ssh", "-p", "2222", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
                    "-o", f'UserKnownHostsFile="{tmp_path}/known_hosts"', "-o", "UpdateHostKeys=no",
                    "-o", f"HostKeyAlias={bastion_id}", "-W", "[10.0.11.9]:22", f"admin@{bastion_ip}"]
    assert result.vars("bastion")["ansible_port"] == 2222


def test_host_keys_are_always_checked_against_the_pinned_file(aws, tmp_path, monkeypatch):
    """No setting turns checking off: Ansible's own switch, options that weaken it, a key file path ssh
    would read differently - all refused or ignored; the hop checks the bastion under its instance ID."""
    hosts = aws.project().hosts
    plugin_module = sys.modules[type(inventory_loader.get("fumidai.vpc.bastion_ec2")).__module__]
    monkeypatch.setattr(plugin_module.C, "HOST_KEY_CHECKING", False)
    known = tmp_path / "pins dir" / "known hosts 100%"
    result = run_inventory(tmp_path, known_hosts_file=str(known))
    web = result.vars("web02")
    words = shlex.split(web["ansible_ssh_common_args"])
    escaped = str(known).replace("%", "%%")
    assert words[:8] == ["-o", "StrictHostKeyChecking=yes", "-o", f'UserKnownHostsFile="{escaped}"',
                         "-o", "UpdateHostKeys=no", "-o", f"HostKeyAlias={hosts['web02']['id']}"]
    argv = ssh_argv(web["ansible_ssh_common_args"], web["ansible_host"])
    options = [argv[i + 1] for i, word in enumerate(argv) if word == "--option"]
    # After the outer ssh's %-expansion the hop gets the path once %-escaped, for the inner ssh's own expansion.
    assert options == ["StrictHostKeyChecking=yes", f'UserKnownHostsFile="{escaped}"',
                       "UpdateHostKeys=no", f"HostKeyAlias={hosts['bastion']['id']}"]
    # The environment variable sets the same file.
    monkeypatch.setenv("FUMIDAI_KNOWN_HOSTS", str(tmp_path / "env_known_hosts"))
    path = tmp_path / "env.bastion_ec2.yml"
    path.write_text(yaml.safe_dump({"plugin": "fumidai.vpc.bastion_ec2", "control_path_dir": str(tmp_path / "cp")}))
    plugin = inventory_loader.get("fumidai.vpc.bastion_ec2")
    plugin.display = Recorder()
    data = InventoryData()
    plugin.parse(data, DataLoader(), str(path))
    words = shlex.split(data.hosts["web01"].get_vars()["ansible_ssh_common_args"])
    assert f'UserKnownHostsFile="{tmp_path}/env_known_hosts"' in words

    for option in ("StrictHostKeyChecking=no", "UserKnownHostsFile=/dev/null", "hostkeyalias=i-0123456789abcdef0",
                   "ProxyCommand=nc %h %p", "LocalCommand=touch x", "KnownHostsCommand=/bin/true"):
        with pytest.raises(AnsibleError, match="cannot be overridden"):
            run_inventory(tmp_path, bastion_ssh_options=[option])
    with pytest.raises(AnsibleError, match="not of the form Key=value"):
        run_inventory(tmp_path, bastion_ssh_options=["ServerAliveInterval=15\nMatch exec touch"])
    with pytest.raises(AnsibleError, match="cannot be written into an ssh config"):
        run_inventory(tmp_path, known_hosts_file=str(tmp_path / 'say "hi"'))
    assert "ServerAliveInterval=15" in run_inventory(
        tmp_path, bastion_ssh_options=["ServerAliveInterval=15"]).vars("web01")["ansible_ssh_common_args"]
