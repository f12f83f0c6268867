"""The one writer of ssh options and ssh_config entries (plugins/module_utils/ssh_args.py): what it writes
is read back by OpenSSH itself (ssh -G, no connection), and what it cannot write safely is refused."""

from __future__ import annotations

from pathlib import Path

import pytest
from ansible_collections.fumidai.vpc.plugins.module_utils import ssh_args as ssh

from tests.support.playbook import ssh_resolved as ssh_g

INSTANCE = "i-0123456789abcdef0"


def entry(tmp_path: Path, **changes) -> dict:
    return {"name": "web01", "address": "10.0.11.5", "instance_id": INSTANCE, "user": "admin", "port": 22,
            "identity_file": str(tmp_path / "keys dir" / "id 100%"), "known_hosts_file": str(tmp_path / "pins %d"),
            "jump": "bastion", **changes}


def test_entries_read_back_by_openssh_exactly(tmp_path):
    bastion = entry(tmp_path, name="bastion", address="203.0.113.7", instance_id="i-0fedcba9876543210", jump="",
                    control={"dir": str(tmp_path / "cp dir"), "persist": "10m"})
    config = tmp_path / "ssh_config"
    config.write_text(ssh.render_ssh_config([entry(tmp_path), bastion]))
    web = ssh_g(config, "web01")
    assert web["hostname"] == ["10.0.11.5"]
    assert web["hostkeyalias"] == [INSTANCE]
    assert web["stricthostkeychecking"] == ["true"]
    assert web["updatehostkeys"] == ["false"]
    # ssh -G shows the known_hosts path expanded (%% is one literal %, not the %d token), the identity
    # file before its expansion.
    assert web["userknownhostsfile"] == [str(tmp_path / "pins %d")]
    assert web["identityfile"] == [str(tmp_path / "keys dir" / "id 100%%")]
    assert web["proxyjump"] == ["bastion"]
    jump = ssh_g(config, "bastion")
    assert jump["controlpath"] == [ssh.control_path_for(str(tmp_path / "cp dir"), "admin", "203.0.113.7", 22)]
    assert jump["hostkeyalias"] == ["i-0fedcba9876543210"]


@pytest.mark.parametrize(("changes", "message"), [
    ({"name": "0 *"}, "not safe as an ssh Host pattern"),
    ({"name": "web01\nMatch exec \"touch /tmp/x\""}, "not safe as an ssh Host pattern"),
    ({"name": "localhost"}, "not safe as an ssh Host pattern"),
    ({"address": "10.0.11.5 extra"}, "is not an IP address"),
    ({"address": "example.com"}, "is not an IP address"),
    ({"instance_id": "i-0123 HostName evil"}, "is not an instance ID"),
    ({"user": "root\n  ProxyCommand x"}, "is not a user name"),
    ({"port": "22 x"}, "is not a TCP port"),
    ({"jump": "bastion *"}, "is not a safe Host name"),
    ({"known_hosts_file": '/tmp/a"b'}, "cannot be written into an ssh config"),
    ({"identity_file": "/tmp/${HOME}/k"}, "cannot be written into an ssh config"),
    ({"identity_file": "/tmp/a\nHost *"}, "cannot be written into an ssh config"),
    ({"note": "a\nHost *"}, "holds control characters"),
    ({"control": {"dir": "/tmp", "persist": "10m\nHost *"}}, "is not a duration"),
])
def test_unsafe_values_are_refused_not_written(tmp_path, changes, message):
    with pytest.raises(ssh.SshValueError, match=message):
        ssh.render_ssh_config([entry(tmp_path, **changes)])


def test_safe_host_names():
    for good in ("web01", "bastion", "db_01.example-x", "a" * 63, "i-0123456789abcdef0", "_x"):
        assert ssh.safe_host_name(good), good
    for bad in ("", "a" * 64, "-oProxyCommand=x", ".hidden", "0 *", "a b", "web%h", "ウェブ", "LocalHost", "all",
                None, 12):
        assert not ssh.safe_host_name(bad), bad


def test_user_options_cannot_weaken_host_key_checking():
    assert ssh.check_user_options(["ServerAliveInterval=15", "ConnectTimeout 10"]) == \
        ["ServerAliveInterval=15", "ConnectTimeout 10"]
    for option in ("StrictHostKeyChecking=no", "userknownhostsfile=/dev/null", "HostKeyAlias=x",
                   "ProxyCommand=nc %h %p", "ProxyJump=evil", "PermitLocalCommand=yes", "Include=/tmp/x"):
        with pytest.raises(ssh.SshValueError, match="cannot be overridden"):
            ssh.check_user_options([option])
    with pytest.raises(ssh.SshValueError, match="not of the form"):
        ssh.check_user_options(["ServerAliveInterval"])


def test_shown_values_are_escaped_and_short():
    assert ssh.shown("a\nb") == "'a\\nb'"
    assert ssh.shown("x" * 100).endswith("...") and len(ssh.shown("x" * 100)) < 50
    assert ssh.shown("ウェブ") == "'\\u30a6\\u30a7\\u30d6'"


def test_ansible_control_path_survives_ansible_then_ssh():
    """Ansible %-formats ansible_control_path (``%(directory)s``), then ssh expands %-tokens: a literal % in the
    socket path is escaped for both, so ssh reads the same literal path as the hop and the ssh_config."""
    path = "/tmp/cp 100%/fumidai-hop-0123456789ab"
    formatted = ssh.ansible_control_path(path) % {"directory": "unused"}
    assert formatted == ssh.ssh_percent_escape(path) == "/tmp/cp 100%%/fumidai-hop-0123456789ab"
