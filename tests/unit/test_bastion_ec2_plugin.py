"""bastion_ec2 as an Ansible inventory plugin: constructable options, verify_file, the cache, ansible-doc."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from ansible.plugins.loader import inventory_loader

from tests.support.playbook import ROOT
from tests.unit import inventory_helpers as helpers
from tests.unit.inventory_helpers import run_inventory

aws = helpers.aws  # the fixture: in-process moto with the project's images, an AwsSeed


def test_constructable_options_apply_after_the_builtin_groups(aws, tmp_path):
    aws.project()
    result = run_inventory(
        tmp_path,
        compose={"tier_label": "subnet_name ~ '-' ~ ec2_tags.Role"},
        groups={"hopped": "'ProxyCommand' in ansible_ssh_common_args"},
        keyed_groups=[{"key": "instance_type", "prefix": "type"}],
    )
    assert result.vars("web01")["tier_label"] == "private-subnet-1-web"
    assert result.group("hopped") == {"web01", "web02"}
    assert result.group("type_t3_micro") == {"bastion", "nat-instance", "web01", "web02"}


def test_verify_file_accepts_only_bastion_ec2_files(tmp_path):
    plugin = inventory_loader.get("fumidai.vpc.bastion_ec2")
    for name, ok in (("aws.bastion_ec2.yml", True), ("x.bastion_ec2.yaml", True), ("bastion_ec2.yml", True),
                     ("aws_ec2.yml", False), ("hosts.yml", False)):
        (tmp_path / name).write_text("plugin: fumidai.vpc.bastion_ec2\n")
        assert plugin.verify_file(str(tmp_path / name)) is ok, name


# --------------------------------------------------------------------------- cache
def test_cached_run_makes_no_aws_calls(aws, tmp_path, monkeypatch):
    aws.project()
    cache = {"cache": True, "cache_plugin": "jsonfile",
             "cache_connection": str(tmp_path / "cache"), "cache_timeout": 600}
    fresh = run_inventory(tmp_path, **cache)
    plugin_class = type(inventory_loader.get("fumidai.vpc.bastion_ec2"))

    def no_aws(*args, **kwargs):
        raise AssertionError("a cached run must not call AWS")

    monkeypatch.setattr(plugin_class, "_fetch", no_aws)
    cached = run_inventory(tmp_path, **cache)
    assert cached.hosts == fresh.hosts
    for host in fresh.hosts:
        assert cached.vars(host) == fresh.vars(host)
    # refresh (ansible-inventory --flush-cache, meta: refresh_inventory) goes back to AWS
    with pytest.raises(AssertionError, match="cached run"):
        run_inventory(tmp_path, refresh=True, **cache)


def test_ansible_doc_documents_the_plugin():
    import subprocess

    env = {**__import__("os").environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg")}
    proc = subprocess.run([str(Path(sys.executable).parent / "ansible-doc"), "-t", "inventory", "--json",
                           "fumidai.vpc.bastion_ec2"], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    doc = json.loads(proc.stdout)["fumidai.vpc.bastion_ec2"]
    options = doc["doc"]["options"]
    for option in ("regions", "endpoint_url", "aws_profile", "filters", "hostnames", "bastion_tags",
                   "bastion_address", "bastion_user", "private_key_file", "multiplex", "skip_failed_regions",
                   "compose", "keyed_groups", "cache", "cache_plugin", "cache_timeout", "strict"):
        assert option in options, option
    assert options["bastion_address"]["choices"] == ["public_ip", "private_ip"]
    assert "plugin: fumidai.vpc.bastion_ec2" in doc["examples"]
