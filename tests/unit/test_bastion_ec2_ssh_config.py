"""playbooks/ssh_config.yml rendered from the real inventory (ansible-playbook + bastion_ec2 against a
moto server), checked by asking OpenSSH itself how it resolves each host (ssh -G, no connection)."""

from __future__ import annotations

import boto3

from tests.support.aws_seed import AwsSeed
from tests.support.hostile_names import HOSTILE_NAMES
from tests.support.playbook import run_playbook
from tests.support.playbook import ssh_resolved as resolved


def test_ssh_config_jumps_private_hosts_through_their_bastion(aws_env, tmp_path):
    topology = AwsSeed(boto3.client("ec2"))
    hosts = topology.project().hosts
    key = tmp_path / "keys dir" / "fumidai 100%"
    config = tmp_path / "out" / "ssh_config"
    known_hosts = tmp_path / "pins" / "known_hosts"
    env = {"FUMIDAI_SSH_PRIVATE_KEY": str(key), "ANSIBLE_INVENTORY_CACHE": "false",
           "FUMIDAI_KNOWN_HOSTS": str(known_hosts)}
    proc = run_playbook("playbooks/ssh_config.yml", "-e", f"ssh_config_path={config}", env=env, check=True)
    assert "WARNING" not in proc.stderr, proc.stderr
    # Nothing is pinned in this test: the playbook says ssh will refuse every host until it is.
    assert proc.stdout.count("ssh will refuse to connect to it") == 4
    text = config.read_text()
    assert oct(config.stat().st_mode & 0o777) == "0o600"

    # ssh -G shows IdentityFile before ssh's own %-expansion, which turns %% back into %.
    key_setting = [str(key).replace("%", "%%")]
    bastion_ip = hosts["bastion"]["public"]
    bastion = resolved(config, "bastion")
    assert bastion["hostname"] == [bastion_ip]
    assert bastion["user"] == ["admin"]
    assert bastion["identityfile"] == key_setting
    assert bastion["controlmaster"] == ["auto"]
    assert bastion["controlpersist"] == ["600"]
    assert "proxyjump" not in bastion
    # Host keys: strictly checked against the pinned file, under the instance ID.
    assert bastion["stricthostkeychecking"] == ["true"]
    assert bastion["userknownhostsfile"] == [str(known_hosts)]
    assert bastion["hostkeyalias"] == [hosts["bastion"]["id"]]
    assert bastion["updatehostkeys"] == ["false"]

    # The NAT instance is public, but its SG opens 22 to the bastion's SG only:
    # the project's inventory (proxy_public_hosts: true) sends it through the
    # bastion at its private IP, like the web servers.
    for name in ("web01", "web02", "nat-instance"):
        web = resolved(config, name)
        assert web["hostname"] == [hosts[name]["private"]]
        assert web["user"] == ["admin"]
        assert web["proxyjump"] == ["bastion"]
        assert web["identityfile"] == key_setting
        assert web["stricthostkeychecking"] == ["true"]
        assert web["userknownhostsfile"] == [str(known_hosts)]
        assert web["hostkeyalias"] == [hosts[name]["id"]]
    assert text.count("\nHost ") == 4

    # Idempotent: the same inventory writes the same file.
    again = run_playbook("playbooks/ssh_config.yml", "-e", f"ssh_config_path={config}", env=env, check=True)
    assert "changed=0" in again.stdout


def test_hostile_names_cannot_redirect_aliases_or_run_commands(aws_env, tmp_path):
    """Names an attacker chose become instance IDs before they reach the config; ssh -G (which only reads
    the config) resolves every alias to its own address, and nothing is executed while reading it."""
    topology = AwsSeed(boto3.client("ec2"))
    hosts = topology.project().hosts
    marker = tmp_path / "pwned"
    subnet = hosts["web01"]["subnet"]
    names = [n.replace("/tmp/fumidai-pwned", str(marker)).replace("/tmp/x", str(marker)) for n in HOSTILE_NAMES]
    hostile = [topology.instance(subnet, name, "web") for name in names]
    config = tmp_path / "ssh_config"
    env = {"ANSIBLE_INVENTORY_CACHE": "false", "FUMIDAI_KNOWN_HOSTS": str(tmp_path / "known_hosts")}
    run_playbook("playbooks/ssh_config.yml", "-e", f"ssh_config_path={config}", env=env, check=True)
    text = config.read_text()
    assert "Match" not in text and "*" not in text and "<script>" not in text and "$(" not in text
    assert text.count("\nHost ") == 4 + len(hostile)
    for host in hostile:
        settings = resolved(config, host["id"])
        assert settings["hostname"] == [host["private"]]
        assert settings["hostkeyalias"] == [host["id"]]
        assert settings["proxyjump"] == ["bastion"]
    for name in ("bastion", "web01", "web02", "nat-instance"):
        settings = resolved(config, name)
        assert settings["hostname"] == [hosts[name]["public"] if name == "bastion" else hosts[name]["private"]]
        assert settings["hostkeyalias"] == [hosts[name]["id"]]
    # A name matching no Host block is left alone (a "0 *" entry would have captured it).
    assert resolved(config, "elsewhere.example")["hostname"] == ["elsewhere.example"]
    assert not marker.exists()


def test_ssh_config_refuses_an_empty_inventory(aws_env, tmp_path):
    config = tmp_path / "ssh_config"
    proc = run_playbook("playbooks/ssh_config.yml", "-e", f"ssh_config_path={config}",
                        env={"ANSIBLE_INVENTORY_CACHE": "false"})
    assert proc.returncode != 0
    assert "lists no hosts" in proc.stdout
    assert not config.exists()


def test_syntax_check_needs_no_aws(tmp_path):
    """ansible-playbook --syntax-check (and so ansible-lint) must not fail for want of AWS."""
    env = {"AWS_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "ap-northeast-1", "ANSIBLE_INVENTORY_CACHE": "false"}
    proc = run_playbook("playbooks/ssh_config.yml", "--syntax-check", env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # Without --syntax-check the same environment is one clear inventory error, not a traceback.
    proc = run_playbook("playbooks/ssh_config.yml", env=env)
    assert proc.returncode != 0
    assert "bastion_ec2: cannot reach the EC2 endpoint http://127.0.0.1:9 for region ap-northeast-1" \
        in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
