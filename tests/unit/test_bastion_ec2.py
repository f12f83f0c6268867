"""bastion_ec2 against moto in-process (mock_aws), on several VPC topologies built with boto3.

The plugin runs exactly as Ansible runs it (loaded by the inventory plugin loader, parsing a
*.bastion_ec2.yml file into InventoryData); the assertions are on groups, ansible_host and the exact
ProxyCommand of each host.
"""

from __future__ import annotations

import hashlib
import json
import shlex
import sys
from pathlib import Path

import boto3
import pytest
import yaml
from ansible.errors import AnsibleError
from ansible.inventory.data import InventoryData
from ansible.parsing.dataloader import DataLoader
from ansible.plugins.loader import inventory_loader
from ansible_collections.fumidai.vpc.plugins.module_utils import bastion_hop
from moto import mock_aws
from moto.core import set_initial_no_auth_action_count

from tests.support.aws_seed import REGION, AwsSeed, project_images
from tests.support.hostile_names import HOSTILE_NAMES
from tests.support.playbook import ROOT

HOP = Path(bastion_hop.__file__)


# --------------------------------------------------------------------------- fixtures and helpers
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




# --------------------------------------------------------------------------- topologies
def test_project_topology_groups_hosts_and_hops(aws, tmp_path):
    project = aws.project()
    hosts = project.hosts
    bastion_ip = hosts["bastion"]["public"]
    result = run_inventory(tmp_path)

    assert result.hosts == {"bastion", "nat-instance", "web01", "web02"}
    assert result.group("public") == {"bastion", "nat-instance"}
    assert result.group("private") == {"web01", "web02"}
    assert result.group("subnet_public_subnet_1") == {"bastion"}
    assert result.group("subnet_public_subnet_2") == {"nat-instance"}
    assert result.group("subnet_private_subnet_1") == {"web01"}
    assert result.group("subnet_private_subnet_2") == {"web02"}
    assert result.group("role_bastion") == {"bastion"}
    assert result.group("role_nat") == {"nat-instance"}
    assert result.group("role_web") == {"web01", "web02"}
    assert result.group("az_ap_northeast_1a") == {"bastion", "web01"}
    assert result.group("az_ap_northeast_1c") == {"nat-instance", "web02"}
    assert result.group("vpc_fumidai_vpc") == {"bastion", "nat-instance", "web01", "web02"}
    assert result.warnings == []

    bastion = result.vars("bastion")
    assert bastion["ansible_host"] == bastion_ip
    assert bastion["ansible_user"] == "admin"
    # The bastion's own connection uses the hop's socket, so pinging it first opens the shared master.
    assert bastion["ansible_control_path"] == control_path(tmp_path, bastion_ip)
    # Every host, the bastion and direct hosts included, is checked against its pinned key.
    assert bastion["ansible_ssh_common_args"] == key_args(tmp_path, hosts["bastion"]["id"])
    nat = result.vars("nat-instance")
    assert nat["ansible_host"] == hosts["nat-instance"]["public"]
    assert nat["ansible_ssh_common_args"] == key_args(tmp_path, hosts["nat-instance"]["id"])

    for name in ("web01", "web02"):
        web = result.vars(name)
        assert web["ansible_host"] == hosts[name]["private"]
        assert web["ansible_ssh_common_args"] == expected_args(tmp_path, hosts[name], hosts["bastion"])
        assert web["bastion"] == {"name": "bastion", "instance_id": hosts["bastion"]["id"],
                                  "address": bastion_ip, "user": "admin", "port": 22}
        assert ssh_argv(web["ansible_ssh_common_args"], web["ansible_host"])[-3:] == [
            f"admin@{bastion_ip}", hosts[name]["private"], "22"]

    web01 = result.vars("web01")
    assert web01["instance_id"] == hosts["web01"]["id"]
    assert web01["instance_type"] == "t3.micro"
    assert web01["private_ip_address"] == hosts["web01"]["private"]
    assert web01["public_ip_address"] is None
    assert web01["subnet_id"] == hosts["web01"]["subnet"]
    assert web01["subnet_name"] == "private-subnet-1"
    assert web01["vpc_id"] == project.vpc_id
    assert web01["vpc_name"] == "fumidai-vpc"
    assert web01["availability_zone"] == "ap-northeast-1a"
    assert web01["state"] == "running"
    assert web01["image_id"] == aws.ami
    assert web01["ec2_tags"] == {"Name": "web01", "Project": "fumidai", "Role": "web"}
    assert web01["security_groups"] == [{"group_id": project.sgs["web"], "group_name": "fumidai-web"}]
    assert web01["security_groups"][0]["group_id"].startswith("sg-")
    assert web01["region"] == REGION
    json.dumps(web01)  # every fact is plain data (cacheable, printable by ansible-inventory)


def test_private_ip_mode_uses_private_addresses_everywhere(aws, tmp_path, monkeypatch):
    hosts = aws.project().hosts
    monkeypatch.setenv("FUMIDAI_BASTION_ADDRESS", "private_ip")
    result = run_inventory(tmp_path)
    bastion_ip = hosts["bastion"]["private"]
    assert result.vars("bastion")["ansible_host"] == bastion_ip
    assert result.vars("bastion")["ansible_control_path"] == control_path(tmp_path, bastion_ip)
    # On the VPN the NAT instance is reached on its private IP, directly; moto's public IPs are never used.
    assert result.vars("nat-instance")["ansible_host"] == hosts["nat-instance"]["private"]
    assert result.vars("nat-instance")["ansible_ssh_common_args"] == key_args(tmp_path, hosts["nat-instance"]["id"])
    for name in ("web01", "web02"):
        assert result.vars(name)["ansible_host"] == hosts[name]["private"]
        assert result.vars(name)["ansible_ssh_common_args"] == \
            expected_args(tmp_path, hosts[name], hosts["bastion"], bastion_ip)


def test_two_vpcs_each_hop_through_their_own_bastion(aws, tmp_path):
    first = aws.project("fumidai-vpc", "10.0").hosts
    second = aws.project("fumidai-dr", "10.1", suffix="-dr").hosts
    result = run_inventory(tmp_path)
    assert result.group("vpc_fumidai_vpc") == {"bastion", "nat-instance", "web01", "web02"}
    assert result.group("vpc_fumidai_dr") == {"bastion-dr", "nat-instance-dr", "web01-dr", "web02-dr"}
    assert result.group("role_bastion") == {"bastion", "bastion-dr"}
    assert result.group("private") == {"web01", "web02", "web01-dr", "web02-dr"}
    for suffix, hosts in (("", first), ("-dr", second)):
        for name in ("web01", "web02"):
            assert result.vars(name + suffix)["ansible_ssh_common_args"] == \
                expected_args(tmp_path, hosts[name + suffix], hosts["bastion" + suffix])
    assert first["bastion"]["public"] != second["bastion-dr"]["public"]
    assert result.warnings == []


def test_vpc_without_bastion_lists_hosts_without_proxy_and_warns(aws, tmp_path):
    aws.project()
    lonely = aws.vpc("lonely-vpc", "10.2.0.0/16")
    subnet = aws.subnet(lonely, "lonely-private", "10.2.1.0/24")
    app = aws.instance(subnet, "app01", "web")
    result = run_inventory(tmp_path)
    assert "app01" in result.group("private")
    assert "app01" in result.group("vpc_lonely_vpc")
    assert result.vars("app01")["ansible_host"] == app["private"]
    assert result.vars("app01")["ansible_ssh_common_args"] == key_args(tmp_path, app["id"])
    assert "bastion" not in result.vars("app01")
    assert len(result.warnings) == 1
    assert lonely in result.warnings[0] and "lonely-vpc" in result.warnings[0]
    assert "ProxyCommand" in result.vars("web01")["ansible_ssh_common_args"]  # the other VPC is unaffected


def test_stopped_instances_are_excluded_by_default(aws, tmp_path):
    hosts = aws.project().hosts
    aws.ec2.stop_instances(InstanceIds=[hosts["web02"]["id"]])
    assert "web02" not in run_inventory(tmp_path).hosts
    # Dropping the default state filter lists it again, stopped.
    result = run_inventory(tmp_path, filters={"instance-state-name": None})
    assert "web02" in result.hosts
    assert result.vars("web02")["state"] == "stopped"


def test_other_projects_are_filtered_out_server_side(aws, tmp_path):
    aws.project()
    subnet = aws.ec2.describe_subnets()["Subnets"][0]["SubnetId"]
    aws.instance(subnet, "someone-else", project="other")
    aws.instance(subnet, "untagged", project=None)
    assert run_inventory(tmp_path).hosts == {"bastion", "nat-instance", "web01", "web02"}
    assert "someone-else" in run_inventory(tmp_path, project_tag_value="other").hosts


def test_public_and_private_are_decided_by_route_tables_not_names(aws, tmp_path):
    vpc_id = aws.vpc("routes-vpc", "10.3.0.0/16")
    igw_id = aws.igw(vpc_id)
    # Named "private" but explicitly associated with an IGW table: public.
    explicit_public = aws.subnet(vpc_id, "private-looking", "10.3.1.0/24")
    aws.route_table(vpc_id, [explicit_public], GatewayId=igw_id)
    # No association: governed by the main table, which only has the local route -> private.
    by_main = aws.subnet(vpc_id, "public-looking", "10.3.2.0/24")
    bastion = aws.instance(explicit_public, "jump", "bastion", public=True)
    db01 = aws.instance(by_main, "db01", "db")
    result = run_inventory(tmp_path)
    assert result.group("public") == {"jump"}
    assert result.group("private") == {"db01"}
    assert result.vars("db01")["ansible_ssh_common_args"] == expected_args(tmp_path, db01, bastion)

    # Once the main table routes 0.0.0.0/0 to the IGW, the unassociated subnet is public.
    aws.ec2.create_route(RouteTableId=aws.main_table(vpc_id), DestinationCidrBlock="0.0.0.0/0", GatewayId=igw_id)
    result = run_inventory(tmp_path)
    assert result.group("public") == {"jump", "db01"}
    assert "subnet_public_looking" in result.data.groups


def test_public_host_without_public_ip_goes_through_the_bastion(aws, tmp_path):
    hosts = aws.project().hosts
    subnet = hosts["bastion"]["subnet"]
    quiet = aws.instance(subnet, "quiet", "web", public=False)
    result = run_inventory(tmp_path)
    assert "quiet" in result.group("public")
    assert result.vars("quiet")["ansible_host"] == quiet["private"]
    assert result.vars("quiet")["ansible_ssh_common_args"] == expected_args(tmp_path, quiet, hosts["bastion"])


def test_duplicate_and_missing_names(aws, tmp_path):
    hosts = aws.project().hosts
    subnet = hosts["web01"]["subnet"]
    twin = aws.instance(subnet, "web01", "web")
    nameless = aws.instance(subnet, None, "web")
    result = run_inventory(tmp_path)
    first, second = sorted([hosts["web01"]["id"], twin["id"]])
    assert f"web01_{first}" in result.hosts and f"web01_{second}" in result.hosts
    assert "web01" not in result.hosts
    assert nameless["id"] in result.hosts
    assert result.group("role_web") == {f"web01_{first}", f"web01_{second}", "web02", nameless["id"]}
    assert len(result.warnings) == 1 and "web01" in result.warnings[0] and twin["id"] in result.warnings[0]
    # Stable: the same names on the next run, whatever order EC2 lists them in.
    assert run_inventory(tmp_path).hosts == result.hosts




def test_hostile_names_fall_back_to_the_instance_id_with_a_warning(aws, tmp_path):
    hosts = aws.project().hosts
    subnet = hosts["web01"]["subnet"]
    hostile = {name: aws.instance(subnet, name, "web") for name in HOSTILE_NAMES}
    # A name that is another instance's ID would let one host answer to the other's pin.
    impostor = aws.instance(subnet, hosts["web02"]["id"], "web")
    result = run_inventory(tmp_path)
    expected = {"bastion", "nat-instance", "web01", "web02", impostor["id"]} | {h["id"] for h in hostile.values()}
    assert result.hosts == expected
    assert result.group("role_web") == expected - {"bastion", "nat-instance"}
    assert len(result.warnings) == len(HOSTILE_NAMES) + 1
    for name, host in {**hostile, hosts["web02"]["id"]: impostor}.items():
        warning = next(w for w in result.warnings if host["id"] in w)
        assert "not a safe host name" in warning
        # Shown escaped and cut short: no control characters or newlines reach the operator's terminal.
        assert "\n" not in warning and "\t" not in warning and len(warning) < 300
        assert result.vars(host["id"])["ec2_tags"]["Name"] == name  # the raw tag stays data, never a name
        assert result.vars(host["id"])["ansible_ssh_common_args"].startswith(
            key_args(tmp_path, host["id"]) + " -o 'ProxyCommand=")


def test_safe_names_are_kept_and_collisions_stay_within_63_characters(aws, tmp_path):
    hosts = aws.project().hosts
    subnet = hosts["web01"]["subnet"]
    long_name = "a" * 63
    first = aws.instance(subnet, long_name, "web")
    second = aws.instance(subnet, long_name, "web")
    kept = aws.instance(subnet, "db_01.example-x", "db")
    result = run_inventory(tmp_path)
    assert "db_01.example-x" in result.hosts and result.vars("db_01.example-x")["instance_id"] == kept["id"]
    twins = {h for h in result.hosts if h.endswith((first["id"], second["id"]))}
    assert len(twins) == 2 and all(len(h) <= 63 and h.startswith("a" * 30) for h in twins)


def test_only_a_project_tagged_bastion_is_used(aws, tmp_path):
    """Anyone who can tag an instance Role=bastion in the VPC must not become the way in."""
    hosts = aws.project().hosts
    # A rogue "bastion" with a lower instance ID would have won before: untagged for the project, it is ignored.
    rogue = aws.instance(hosts["bastion"]["subnet"], "bastion-rogue", "bastion", public=True, project="other")
    result = run_inventory(tmp_path)
    assert result.vars("web01")["bastion"]["instance_id"] == hosts["bastion"]["id"]
    # Also when filters leave the bastion out and the plugin looks it up separately.
    result = run_inventory(tmp_path, filters={"tag:Role": "web"})
    assert result.vars("web01")["bastion"]["instance_id"] == hosts["bastion"]["id"]
    # With the project tag too, there are two candidates: an error naming both, never a silent pick.
    aws.ec2.create_tags(Resources=[rogue["id"]], Tags=[{"Key": "Project", "Value": "fumidai"}])
    for filters in ({}, {"tag:Role": "web"}):
        with pytest.raises(AnsibleError, match="more than one running instance is tagged as the bastion") as err:
            run_inventory(tmp_path, filters=filters)
        assert hosts["bastion"]["id"] in str(err.value) and rogue["id"] in str(err.value)
    # A stopped second bastion is no candidate.
    aws.ec2.stop_instances(InstanceIds=[rogue["id"]])
    result = run_inventory(tmp_path, filters={"instance-state-name": None})
    assert result.vars("web01")["bastion"]["instance_id"] == hosts["bastion"]["id"]


def test_filters_that_leave_out_the_bastion_still_hop_through_it(aws, tmp_path):
    hosts = aws.project().hosts
    result = run_inventory(tmp_path, filters={"tag:Role": "web"})
    assert result.hosts == {"web01", "web02"}
    assert result.vars("web01")["ansible_ssh_common_args"] == \
        expected_args(tmp_path, hosts["web01"], hosts["bastion"])


# --------------------------------------------------------------------------- quoting and options
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


def test_proxy_public_hosts_sends_the_nat_instance_through_the_bastion(aws, tmp_path):
    hosts = aws.project().hosts
    result = run_inventory(tmp_path, proxy_public_hosts=True)
    nat = result.vars("nat-instance")
    assert nat["ansible_host"] == hosts["nat-instance"]["private"]
    assert nat["ansible_ssh_common_args"] == expected_args(tmp_path, hosts["nat-instance"], hosts["bastion"])
    assert "ProxyCommand" not in result.vars("bastion")["ansible_ssh_common_args"]


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


def test_hostnames_option(aws, tmp_path):
    hosts = aws.project().hosts
    result = run_inventory(tmp_path, hostnames=["private-ip-address"])
    assert result.hosts == {h["private"] for h in hosts.values()}
    with pytest.raises(AnsibleError, match="unknown hostnames entry 'nonsense'"):
        run_inventory(tmp_path, hostnames=["nonsense"])


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


# --------------------------------------------------------------------------- errors
def test_unknown_region_is_one_clear_error(aws, tmp_path):
    with pytest.raises(AnsibleError, match=r"unknown region 'xx-nowhere-9'"):
        run_inventory(tmp_path, regions=["xx-nowhere-9"])
    with pytest.raises(AnsibleError, match=r"unknown region 'Tokyo': not a region name"):
        run_inventory(tmp_path, regions=["Tokyo"])


def test_region_resolution(aws, tmp_path, monkeypatch):
    aws.project()
    monkeypatch.delenv("AWS_REGION")
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    with pytest.raises(AnsibleError, match="no region configured"):
        run_inventory(tmp_path)
    assert "web01" in run_inventory(tmp_path, fallback_region=REGION).hosts
    # AWS_REGION wins over the fallback (as in amazon.aws modules): an empty region, no hosts.
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    assert run_inventory(tmp_path, fallback_region=REGION).hosts == set()


def test_endpoint_down_names_the_endpoint(aws, tmp_path):
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    endpoint = f"http://127.0.0.1:{port}"
    with pytest.raises(AnsibleError) as err:
        run_inventory(tmp_path, endpoint_url=endpoint, retries=1)
    assert f"cannot reach the EC2 endpoint {endpoint} for region {REGION}" in str(err.value)


@set_initial_no_auth_action_count(0)
def test_bad_credentials_and_missing_permission(aws, tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIANOTAREALKEY00000")
    with pytest.raises(AnsibleError, match=r"bad AWS credentials for region ap-northeast-1 .*AuthFailure"):
        run_inventory(tmp_path)


def test_missing_permission_names_the_action(tmp_path, monkeypatch):
    @set_initial_no_auth_action_count(2)
    @mock_aws
    def scenario():
        iam = boto3.client("iam", region_name="us-east-1")
        iam.create_user(UserName="reader")
        key = iam.create_access_key(UserName="reader")["AccessKey"]
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", key["AccessKeyId"])
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", key["SecretAccessKey"])
        monkeypatch.setenv("AWS_REGION", REGION)
        monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
        for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_EC2", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
            monkeypatch.delenv(name, raising=False)
        with pytest.raises(AnsibleError, match=r"missing permission ec2:Describe\w+ in region ap-northeast-1"):
            run_inventory(tmp_path)

    scenario()


def _inject(monkeypatch, decide):
    """Make some EC2 calls answer with an error, the rest reach moto."""
    import boto3.session
    from botocore.awsrequest import AWSResponse

    original = boto3.session.Session.client

    def client(self, *args, **kwargs):
        made = original(self, *args, **kwargs)
        region = kwargs.get("region_name")

        def before_send(request, **_):
            code = decide(region, request)
            if code:
                body = (f"<Response><Errors><Error><Code>{code}</Code><Message>injected</Message></Error></Errors>"
                        "<RequestID>x</RequestID></Response>").encode()
                return AWSResponse(request.url, 400, {}, _Raw(body))
            return None

        made.meta.events.register_first("before-send.ec2", before_send)
        return made

    monkeypatch.setattr(boto3.session.Session, "client", client)


class _Raw:
    def __init__(self, body: bytes):
        self.body = body

    def stream(self, **_):
        yield self.body


def test_throttling_is_retried(aws, tmp_path, monkeypatch):
    aws.project()
    seen = []

    def throttle_first_two(region, request):
        body = request.body or b""
        if b"DescribeInstances" in (body if isinstance(body, bytes) else body.encode()) and len(seen) < 2:
            seen.append(1)
            return "RequestLimitExceeded"
        return None

    _inject(monkeypatch, throttle_first_two)
    result = run_inventory(tmp_path)
    assert len(seen) == 2
    assert result.hosts == {"bastion", "nat-instance", "web01", "web02"}


def test_a_failing_region_is_an_error_unless_skipped(aws, tmp_path, monkeypatch):
    aws.project()
    _inject(monkeypatch, lambda region, request: "UnauthorizedOperation" if region == "us-east-1" else None)
    with pytest.raises(AnsibleError, match=r"missing permission ec2:Describe\w+ in region us-east-1"):
        run_inventory(tmp_path, regions=[REGION, "us-east-1"])
    result = run_inventory(tmp_path, regions=[REGION, "us-east-1"], skip_failed_regions=True)
    assert result.hosts == {"bastion", "nat-instance", "web01", "web02"}
    assert len(result.warnings) == 1 and "skipping region us-east-1" in result.warnings[0]


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
