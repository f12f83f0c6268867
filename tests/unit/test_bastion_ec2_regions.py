"""bastion_ec2 over several regions and its cache's scope: two regions that both answer are merged (each private
host through its own VPC's bastion), and a cache entry is read only by the same endpoint, regions and filters."""

from __future__ import annotations

import boto3
from ansible.parsing.dataloader import DataLoader
from ansible.plugins.loader import inventory_loader

from tests.support.aws_seed import REGION, AwsSeed
from tests.unit import inventory_helpers as helpers
from tests.unit.inventory_helpers import run_inventory

aws = helpers.aws  # the fixture: in-process moto with the project's images, an AwsSeed
OTHER_REGION = "us-east-1"


def seed_other_region() -> dict:
    """fumidai's VPC in us-east-1 too, its hosts named with an -east suffix (names are unique per inventory)."""
    seed = AwsSeed(boto3.client("ec2", region_name=OTHER_REGION), boto3.client("elbv2", region_name=OTHER_REGION))
    return seed.project(suffix="-east").hosts


def test_two_regions_that_both_answer_are_merged_each_host_behind_its_own_bastion(aws, tmp_path):
    tokyo = aws.project().hosts
    virginia = seed_other_region()
    result = run_inventory(tmp_path, regions=[REGION, OTHER_REGION])
    assert result.hosts == {"bastion", "nat-instance", "web01", "web02",
                            "bastion-east", "nat-instance-east", "web01-east", "web02-east"}
    assert result.warnings == []
    for name, bastion in (("web01", tokyo["bastion"]), ("web02-east", virginia["bastion-east"])):
        hostvars = result.vars(name)
        assert hostvars["bastion"]["instance_id"] == bastion["id"], name
        assert f"HostKeyAlias={bastion['id']} admin@{bastion['public']} %h %p'" in hostvars["ansible_ssh_common_args"]
    assert result.vars("web01-east")["region"] == OTHER_REGION and result.vars("web01")["region"] == REGION
    assert result.group("role_bastion") == {"bastion", "bastion-east"}


def counting_fetches(monkeypatch) -> list:
    """Every call the plugin makes to AWS for its data (a cache miss), recorded."""
    plugin_class = type(inventory_loader.get("fumidai.vpc.bastion_ec2"))
    original = plugin_class._fetch
    calls: list = []

    def fetch(self, *args, **kwargs):
        calls.append(args)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(plugin_class, "_fetch", fetch)
    return calls


def test_a_cache_entry_is_read_only_by_the_same_regions_and_filters(aws, tmp_path, monkeypatch):
    aws.project()
    seed_other_region()
    cache = {"cache": True, "cache_plugin": "jsonfile", "cache_connection": str(tmp_path / "cache"),
             "cache_timeout": 600}
    fetches = counting_fetches(monkeypatch)
    tokyo = run_inventory(tmp_path, regions=[REGION], **cache)
    assert len(fetches) == 1
    assert run_inventory(tmp_path, regions=[REGION], **cache).hosts == tokyo.hosts
    assert len(fetches) == 1, "the same file, regions and filters: read from the cache"
    virginia = run_inventory(tmp_path, regions=[OTHER_REGION], **cache)
    assert len(fetches) == 2, "another region: not the first run's entry"
    assert virginia.hosts == {"bastion-east", "nat-instance-east", "web01-east", "web02-east"}
    webs = run_inventory(tmp_path, regions=[REGION], filters={"tag:Role": ["bastion", "web"]}, **cache)
    assert len(fetches) == 3, "other filters: not the first run's entry"
    assert webs.hosts == {"bastion", "web01", "web02"}
    # And each entry still answers for its own scope.
    assert run_inventory(tmp_path, regions=[OTHER_REGION], **cache).hosts == virginia.hosts
    assert len(fetches) == 3


def test_the_cache_key_changes_with_endpoint_regions_and_filters(tmp_path):
    """The endpoint cannot be varied in-process (moto intercepts every endpoint alike): the key is checked."""
    plugin = inventory_loader.get("fumidai.vpc.bastion_ec2")
    path = str(tmp_path / "aws.bastion_ec2.yml")
    (tmp_path / "aws.bastion_ec2.yml").write_text("plugin: fumidai.vpc.bastion_ec2\n")
    plugin.loader = DataLoader()
    plugin._read_config_data(path)
    base = plugin._cache_key(path, [REGION], "http://127.0.0.1:5000", {})
    assert base == plugin._cache_key(path, [REGION], "http://127.0.0.1:5000", {})
    others = {plugin._cache_key(path, [REGION], None, {}),
              plugin._cache_key(path, [REGION], "http://127.0.0.1:5001", {}),
              plugin._cache_key(path, [REGION, OTHER_REGION], "http://127.0.0.1:5000", {}),
              plugin._cache_key(path, [REGION], "http://127.0.0.1:5000", {"tag:Role": ["web"]})}
    assert base not in others and len(others) == 4
