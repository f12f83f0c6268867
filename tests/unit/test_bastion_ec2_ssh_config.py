"""playbooks/ssh_config.yml rendered from the real inventory (ansible-playbook + bastion_ec2 against a
moto server), checked by asking OpenSSH itself how it resolves each host (ssh -G, no connection)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import boto3
from conftest import run_playbook
from test_bastion_ec2 import Topology


def resolved(config: Path, host: str) -> dict[str, list[str]]:
    out = subprocess.run(["ssh", "-G", "-F", str(config), host], capture_output=True, text=True, check=True).stdout
    settings: dict[str, list[str]] = {}
    for line in out.splitlines():
        key, _, value = line.partition(" ")
        settings.setdefault(key, []).append(value)
    return settings


def test_ssh_config_jumps_private_hosts_through_their_bastion(aws_env, tmp_path):
    topology = Topology(boto3.client("ec2"))
    hosts = topology.project()["hosts"]
    key = tmp_path / "keys dir" / "fumidai 100%"
    config = tmp_path / "out" / "ssh_config"
    env = {"FUMIDAI_SSH_PRIVATE_KEY": str(key), "ANSIBLE_INVENTORY_CACHE": "false"}
    proc = run_playbook("playbooks/ssh_config.yml", "-e", f"ssh_config_path={config}", env=env, check=True)
    assert "WARNING" not in proc.stderr, proc.stderr
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

    # The NAT instance is public, but its SG opens 22 to the bastion's SG only:
    # the project's inventory (proxy_public_hosts: true) sends it through the
    # bastion at its private IP, like the web servers.
    for name in ("web01", "web02", "nat-instance"):
        web = resolved(config, name)
        assert web["hostname"] == [hosts[name]["private"]]
        assert web["user"] == ["admin"]
        assert web["proxyjump"] == ["bastion"]
        assert web["identityfile"] == key_setting
        assert web["stricthostkeychecking"] == ["accept-new"]
    assert text.count("\nHost ") == 4

    # Idempotent: the same inventory writes the same file.
    again = run_playbook("playbooks/ssh_config.yml", "-e", f"ssh_config_path={config}", env=env, check=True)
    assert "changed=0" in again.stdout


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
