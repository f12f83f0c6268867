"""What the bastion_ec2 unit tests share: the in-process moto fixture `aws`, run_inventory (the plugin run as
Ansible runs it) and the exact ssh arguments a host is expected to get."""

from __future__ import annotations

import hashlib
import shlex
import sys
from pathlib import Path

import boto3
import pytest
import yaml
from ansible.inventory.data import InventoryData
from ansible.parsing.dataloader import DataLoader
from ansible.plugins.loader import inventory_loader
from ansible_collections.fumidai.vpc.plugins.module_utils import bastion_hop
from moto import mock_aws

from tests.support.aws_seed import REGION, AwsSeed, project_images

HOP = Path(bastion_hop.__file__)


@pytest.fixture
def aws(monkeypatch):
    """In-process moto with dummy credentials; nothing from the caller's environment leaks in."""
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_EC2", "AWS_PROFILE", "FUMIDAI_BASTION_ADDRESS",
                 "FUMIDAI_BASTION_USER", "FUMIDAI_SSH_PRIVATE_KEY", "ANSIBLE_PRIVATE_KEY_FILE",
                 "FUMIDAI_BASTION_MULTIPLEX", "FUMIDAI_KNOWN_HOSTS", "FUMIDAI_PROJECT",
                 "FUMIDAI_PROXY_PUBLIC_HOSTS", "ANSIBLE_SSH_CONTROL_PATH_DIR", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_REGION", REGION)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    # Only the project's images (Debian 12, Amazon Linux 2023): moto's ~1300 stock AMIs take seconds to load per test.
    with project_images(), mock_aws():
        yield AwsSeed(boto3.client("ec2", region_name=REGION))


class Recorder:
    """Stands in for the plugin's Display: keeps warnings (Display itself de-duplicates them per process)."""

    def __init__(self):
        self.warnings: list[str] = []

    def warning(self, msg, *args, **kwargs):
        self.warnings.append(msg)

    def __getattr__(self, name):
        return lambda *args, **kwargs: None


class Result:
    def __init__(self, data: InventoryData, warnings: list[str]):
        self.data = data
        self.warnings = warnings

    def group(self, name: str) -> set[str]:
        return {h.name for h in self.data.groups[name].get_hosts()} if name in self.data.groups else set()

    def vars(self, host: str) -> dict:
        return self.data.hosts[host].get_vars()

    @property
    def hosts(self) -> set[str]:
        return set(self.data.hosts)


def run_inventory(tmp_path: Path, refresh: bool = False, **config) -> Result:
    config.setdefault("control_path_dir", str(tmp_path / "cp"))
    config.setdefault("known_hosts_file", str(tmp_path / "known_hosts"))
    path = tmp_path / "test.bastion_ec2.yml"
    path.write_text(yaml.safe_dump({"plugin": "fumidai.vpc.bastion_ec2", **config}))
    plugin = inventory_loader.get("fumidai.vpc.bastion_ec2")
    recorder = Recorder()
    plugin.display = recorder
    assert plugin.verify_file(str(path))
    data = InventoryData()
    plugin.parse(data, DataLoader(), str(path), cache=not refresh)
    if hasattr(plugin, "_cache"):  # loaded only when caching is configured
        plugin.update_cache_if_changed()  # what InventoryManager does after parse
    data.reconcile_inventory()
    return Result(data, recorder.warnings)


def control_path(tmp_path: Path, address: str, user: str = "admin", port: int = 22) -> str:
    digest = hashlib.sha1(f"{user}@{address}:{port}".encode()).hexdigest()[:12]
    return f"{tmp_path}/cp/fumidai-hop-{digest}"


def key_args(tmp_path: Path, instance_id: str) -> str:
    """The host-key options every host gets: its pinned key under its instance ID, strictly checked."""
    return (f"-o StrictHostKeyChecking=yes -o 'UserKnownHostsFile=\"{tmp_path}/known_hosts\"' "
            f"-o UpdateHostKeys=no -o HostKeyAlias={instance_id}")


def expected_proxy(tmp_path: Path, bastion_address: str, bastion_id: str, key: str | None = None) -> str:
    key_words = f" --identity {key}" if key else ""
    return (f"-o 'ProxyCommand={sys.executable} {HOP} --control-path {control_path(tmp_path, bastion_address)}"
            f" --persist 60s --port 22{key_words} --option StrictHostKeyChecking=yes"
            f" --option '\"'\"'UserKnownHostsFile=\"{tmp_path}/known_hosts\"'\"'\"' --option UpdateHostKeys=no"
            f" --option HostKeyAlias={bastion_id} admin@{bastion_address} %h %p'")


def expected_args(tmp_path: Path, host: dict, bastion: dict | None = None, address: str | None = None) -> str:
    """ansible_ssh_common_args of ``host``: its key options, then the hop through ``bastion`` (at ``address``)."""
    args = key_args(tmp_path, host["id"])
    if bastion:
        args += " " + expected_proxy(tmp_path, address or bastion["public"], bastion["id"])
    return args


def ssh_argv(common_args: str, target_host: str, target_port: int = 22) -> list[str]:
    """What the ProxyCommand really executes: Ansible shlex-splits the common args, ssh expands its
    %-tokens for the target, then sh -c splits the command into argv."""
    words = shlex.split(common_args)
    proxy = [w for w in words if w.startswith("ProxyCommand=")]
    assert len(proxy) == 1 and words[words.index(proxy[0]) - 1] == "-o"
    command, expanded, i = proxy[0][len("ProxyCommand="):], "", 0
    while i < len(command):
        if command[i] == "%":
            token = command[i + 1]
            expanded += {"%": "%", "h": target_host, "p": str(target_port)}[token]
            i += 2
        else:
            expanded += command[i]
            i += 1
    return shlex.split(expanded)
