"""playbooks/ssh_config.yml with a bastion per zone (bastion_per_az): a private host's ProxyCommand is the inventory's
own fallback hop through both bastions (its zone's first), each bastion has its Host entry sharing the hop's master,
checked with ssh -G (no connection)."""

from __future__ import annotations

import shlex

import boto3
import pytest
from ansible_collections.fumidai.vpc.plugins.module_utils import ssh_args

from tests.support.aws_seed import AwsSeed
from tests.support.playbook import run_playbook
from tests.support.playbook import ssh_resolved as resolved


def hop_bastions(proxycommand: list[str]) -> list[list[str]]:
    words = shlex.split(" ".join(proxycommand))
    return [words[i + 1].split(",", 3) for i, word in enumerate(words) if word == "--bastion"]


def test_ssh_config_writes_the_fallback_hop_and_an_entry_per_bastion(aws_env, tmp_path):
    hosts = AwsSeed(boto3.client("ec2")).project(bastion_per_az=True).hosts
    config = tmp_path / "ssh_config"
    control_dir = tmp_path / "cp"
    env = {"ANSIBLE_INVENTORY_CACHE": "false", "FUMIDAI_KNOWN_HOSTS": str(tmp_path / "known_hosts"),
           "ANSIBLE_SSH_CONTROL_PATH_DIR": str(control_dir)}
    run_playbook("playbooks/ssh_config.yml", "-e", f"ssh_config_path={config}", env=env, check=True)
    assert config.read_text().count("\nHost ") == 5

    sockets = {}
    for name in ("bastion", "bastion-2"):
        bastion = resolved(config, name)
        assert bastion["hostname"] == [hosts[name]["public"]]
        assert bastion["hostkeyalias"] == [hosts[name]["id"]]
        assert bastion["controlmaster"] == ["auto"]
        assert "proxycommand" not in bastion and "proxyjump" not in bastion
        sockets[name] = bastion["controlpath"][0]
    assert sockets["bastion"] != sockets["bastion-2"]

    for name, order in (("web01", ["bastion", "bastion-2"]), ("web02", ["bastion-2", "bastion"]),
                        ("nat-instance", ["bastion-2", "bastion"])):
        host = resolved(config, name)
        assert host["hostname"] == [hosts[name]["private"]]
        assert host["hostkeyalias"] == [hosts[name]["id"]]
        assert "proxyjump" not in host
        # In order, each bastion pinned under its own ID, over the same socket as its Host entry (one master for
        # the person's ssh and Ansible alike).
        assert [(b[0], b[2], b[3]) for b in hop_bastions(host["proxycommand"])] == [
            (f"admin@{hosts[b]['public']}", hosts[b]["id"], sockets[b]) for b in order]

    again = run_playbook("playbooks/ssh_config.yml", "-e", f"ssh_config_path={config}", env=env, check=True)
    assert "changed=0" in again.stdout


def test_a_proxy_command_with_a_control_character_is_refused():
    entry = {"name": "web01", "address": "10.0.11.5", "instance_id": "i-0123456789abcdef0",
             "known_hosts_file": "/k", "jump": "bastion"}
    good = ssh_args.ssh_config_entry({**entry, "proxy_args": "-o 'ProxyCommand=/hop --bastion x %h %p'"})
    assert "    ProxyCommand /hop --bastion x %h %p" in good and not [line for line in good if "ProxyJump" in line]
    assert "    ProxyJump bastion" in ssh_args.ssh_config_entry({**entry, "proxy_args": ""})
    with pytest.raises(ssh_args.SshValueError, match="control characters"):
        ssh_args.ssh_config_entry({**entry, "proxy_args": "-o 'ProxyCommand=/hop %h\nMatch exec x'"})
