"""fumidai.vpc used as a stranger would: built, installed and run from a project of their own.

`ansible-galaxy collection build` makes the tarball; a fresh virtualenv gets ansible, boto3 and netaddr from the
package index and nothing of this checkout; the tarball goes into an empty collections path; from an empty project
directory (its own ansible.cfg naming only that path, its own inventory with a bastion_ec2 source and group_vars,
its own SSH key under its own HOME) a small playbook imports fumidai.vpc.provision against the session's moto
server. Then boto3 checks what was built, `ansible-inventory` lists the hosts through the hop of the installed
collection, and `ansible-doc` shows every module, plugin, filter and role that the checkout has.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import urllib.request
from pathlib import Path

import boto3
import pytest
import yaml

from lab import moto_local
from tests.support import stranger
from tests.support.playbook import plain
from tests.support.stranger import ROOT

NAMESPACE, NAME = stranger.galaxy()["namespace"], stranger.galaxy()["name"]
PREFIX = f"{NAMESPACE}.{NAME}"
REGION = "ap-northeast-1"
PROJECT = "stranger"  # the user's project_name: every tag and name must follow it, not fumidai's default
VPC_NAME = "stranger-net"  # set as a var of the import, over the settings role's "<project_name>-vpc"
ADMIN_CIDR = "198.51.100.0/24"
SUBNETS = {  # Name: (CIDR, AZ), the user's own design
    "public-subnet-1": ("10.42.1.0/24", f"{REGION}a"),
    "public-subnet-2": ("10.42.2.0/24", f"{REGION}c"),
    "private-subnet-1": ("10.42.11.0/24", f"{REGION}a"),
    "private-subnet-2": ("10.42.12.0/24", f"{REGION}c"),
}
INSTANCES = {  # Name: (Role, subnet Name), fumidai's default layout
    "bastion": ("bastion", "public-subnet-1"),
    "nat-instance": ("nat", "public-subnet-2"),
    "web01": ("web", "private-subnet-1"),
    "web02": ("web", "private-subnet-2"),
}
RECAP = re.compile(r"^localhost\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)
# The one warning a first run prints: the user's bastion_ec2 source has no instances yet.
EMPTY_INVENTORY_WARNING = ("[WARNING]: provided hosts list is empty, only localhost is available. "
                           "Note that the implicit localhost does not match 'all'")

USER_PLAYBOOK = f"""\
---
# My project: the two-tier VPC from the {PREFIX} collection, under my own name.
- name: Provision my VPC with {PREFIX}
  ansible.builtin.import_playbook: {PREFIX}.provision
  vars:
    vpc_name: {VPC_NAME}
"""
USER_GROUP_VARS = {
    "project_name": PROJECT,
    "admin_cidrs": [ADMIN_CIDR],
    "vpc_cidr": "10.42.0.0/16",
    "subnets": [
        {"name": "public-subnet-1", "cidr": "10.42.1.0/24", "az": f"{REGION}a", "tier": "public"},
        {"name": "public-subnet-2", "cidr": "10.42.2.0/24", "az": f"{REGION}c", "tier": "public"},
        {"name": "private-subnet-1", "cidr": "10.42.11.0/24", "az": f"{REGION}a", "tier": "private",
         "nat": "nat_gateway"},
        {"name": "private-subnet-2", "cidr": "10.42.12.0/24", "az": f"{REGION}c", "tier": "private",
         "nat": "nat_instance"},
    ],
}
USER_INVENTORY_SOURCE = f"""\
---
# My hosts: the running instances tagged Project={PROJECT}, private ones through the bastion.
plugin: {PREFIX}.bastion_ec2
project_tag_value: {PROJECT}
"""



def warnings_of(text: str) -> list[str]:
    return [line for line in text.splitlines() if re.match(r"^\[(WARNING|DEPRECATION WARNING|ERROR)\]", line)]


def tags(resource: dict) -> dict:
    return {t["Key"]: t["Value"] for t in resource.get("Tags") or []}


# --- the stranger's machine --------------------------------------------------

@pytest.fixture(scope="module")
def user(tmp_path_factory):
    """A fresh virtualenv, a HOME with an SSH key, an empty collections path and an empty project directory."""
    base = tmp_path_factory.mktemp("stranger")
    venv, home, collections, project, dist = (base / d for d in ("venv", "home", "collections", "project", "dist"))
    for directory in (home / ".ssh", collections, project, dist):
        directory.mkdir(parents=True)
    pip = stranger.make_venv(venv)
    assert pip.returncode == 0, f"pip install {stranger.pins()} failed:\n{pip.stdout}\n{pip.stderr}"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "stranger",
                    "-f", str(home / ".ssh" / "id_ed25519")], check=True)
    (project / "ansible.cfg").write_text(
        f"[defaults]\n# Only the path the collection was installed into.\ncollections_path = {collections}\n"
        "inventory = inventory\n")
    return {"venv": venv, "home": home, "collections": collections, "project": project, "dist": dist,
            "env": stranger.clean_env(venv, home)}


@pytest.fixture(scope="module")
def built(user):
    tarball, proc = stranger.build(user["venv"] / "bin" / "ansible-galaxy", user["dist"], user["env"])
    return {"tarball": tarball, "proc": proc}


@pytest.fixture(scope="module")
def installed(user, built):
    """`ansible-galaxy collection install <tarball>` from the project directory (its ansible.cfg decides where)."""
    before = sorted(p.name for p in user["collections"].iterdir())
    proc = stranger.run([user["venv"] / "bin" / "ansible-galaxy", "collection", "install", built["tarball"]],
                        cwd=user["project"], env=user["env"])
    return {"before": before, "proc": proc,
            "path": user["collections"] / "ansible_collections" / NAMESPACE / NAME}


@pytest.fixture(scope="module")
def provisioned(user, installed, moto_endpoint):
    """The user's inventory and playbook, and one ansible-playbook run of it on a freshly reset moto."""
    assert installed["proc"].returncode == 0, installed["proc"].stdout + installed["proc"].stderr
    project = user["project"]
    (project / "inventory" / "group_vars").mkdir(parents=True)
    (project / "inventory" / "group_vars" / "all.yml").write_text(
        "---\n# My settings for fumidai.vpc (its settings role documents each).\n"
        + yaml.safe_dump(USER_GROUP_VARS, sort_keys=False))
    (project / "inventory" / f"{PROJECT}.bastion_ec2.yml").write_text(USER_INVENTORY_SOURCE)
    (project / "site.yml").write_text(USER_PLAYBOOK)
    urllib.request.urlopen(urllib.request.Request(f"{moto_endpoint}/moto-api/reset", method="POST"),
                           timeout=10).close()
    env = {**user["env"], **moto_local.environment(moto_endpoint, REGION)}
    proc = stranger.run([user["venv"] / "bin" / "ansible-playbook", "site.yml"], cwd=project, env=env, timeout=900)
    session = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION)
    return {"proc": proc, "env": env,
            "ec2": session.client("ec2", endpoint_url=moto_endpoint),
            "elbv2": session.client("elbv2", endpoint_url=moto_endpoint)}


def ran(proc: subprocess.CompletedProcess) -> str:
    return f"rc={proc.returncode}\n--- stdout\n{proc.stdout[-6000:]}\n--- stderr\n{proc.stderr[-6000:]}"


# --- the artifact ------------------------------------------------------------

def test_build_makes_the_tarball_outside_the_checkout(built, user):
    proc = built["proc"]
    assert proc.returncode == 0, ran(proc)
    assert proc.stdout.strip().splitlines()[-1] == f"Created collection for {PREFIX} at {built['tarball']}"
    assert built["tarball"].is_file() and built["tarball"].parent == user["dist"]
    assert not list(ROOT.glob(f"{NAMESPACE}-{NAME}-*.tar.gz")), "a tarball was left in the checkout"


def test_tarball_holds_the_collection_and_none_of_the_project_tooling(built):
    files = stranger.tarball_files(built["tarball"])
    # Everything the collection is made of, as the checkout has it.
    wanted = {"MANIFEST.json", "FILES.json", "meta/runtime.yml", "tests/config.yml", "tests/sanity/ignore-2.19.txt",
              stranger.galaxy()["readme"]}
    for kind in ("modules", "inventory", "filter", "module_utils"):
        wanted |= {f"plugins/{kind}/{p.name}" for p in (ROOT / "plugins" / kind).glob("*.py")}
    wanted |= {f"playbooks/{p.name}" for p in (ROOT / "playbooks").glob("*.yml")}
    wanted |= {f"roles/{p.name}/meta/argument_specs.yml" for p in (ROOT / "roles").iterdir() if p.is_dir()}
    assert wanted - files == set()
    # Of tests/, only what ansible-test reads in the installed collection.
    assert {f for f in files if f.startswith("tests/") and not (ROOT / f).is_dir()} == {
        "tests/config.yml", "tests/sanity/ignore-2.19.txt"}
    # Nothing of the lab, benchmarks, the project's own inventory and settings, build tooling or caches.
    project_only = {"lab", "bench", "inventory", "molecule", "scripts", "Makefile", "ansible.cfg", "site.yml",
                    "requirements.txt", "pyproject.toml", ".cache", ".collections", ".venv", ".git", ".ansible"}
    assert {f for f in files if f.split("/")[0] in project_only} == set()
    junk = [f for f in files if re.search(r"(^|/)(__pycache__|\.pytest_cache|\.ruff_cache|molecule)(/|$)|\.pyc$|"
                                          r"\.log$|(^|/)roles/[^/]+/tests(/|$)", f)]
    assert junk == []


# --- the fresh virtualenv ----------------------------------------------------

def test_fresh_virtualenv_has_nothing_of_the_checkout(user):
    python = user["venv"] / "bin" / "python"
    probe = stranger.run([python, "-c", "import json, sys; print(json.dumps(sys.path))"], cwd=user["project"],
                         env=user["env"])
    assert probe.returncode == 0, ran(probe)
    assert [p for p in json.loads(probe.stdout) if p.startswith(str(ROOT))] == []
    site = stranger.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                        cwd=user["project"], env=user["env"]).stdout.strip()
    assert [p.name for p in Path(site).glob("*.pth") if str(ROOT) in p.read_text()] == []
    version = stranger.run([user["venv"] / "bin" / "ansible", "--version"], cwd=user["project"], env=user["env"])
    assert version.returncode == 0, ran(version)
    core = dict(p.split("==") for p in stranger.pins())["ansible-core"]
    assert version.stdout.splitlines()[0] == f"ansible [core {core}]"
    assert f"config file = {user['project'] / 'ansible.cfg'}" in version.stdout
    assert f"ansible collection location = {user['collections']}\n" in version.stdout


# --- installing it -----------------------------------------------------------

def test_install_puts_the_collection_alone_into_the_empty_collections_path(installed, user):
    proc = installed["proc"]
    assert proc.returncode == 0, ran(proc)
    assert installed["before"] == []
    assert f"Installing '{PREFIX}:{stranger.galaxy()['version']}' to '{installed['path']}'" in proc.stdout
    assert f"{PREFIX}:{stranger.galaxy()['version']} was installed successfully" in proc.stdout
    # The dependencies galaxy.yml names come with the ansible package: nothing is fetched.
    for dependency in stranger.galaxy()["dependencies"]:
        assert re.search(rf"^'{re.escape(dependency)}:[0-9.]+' is already installed, skipping\.$", proc.stdout,
                         re.M), f"{dependency} not found installed:\n{proc.stdout}"
    assert warnings_of(proc.stdout + proc.stderr) == []
    namespaces = {p.relative_to(user["collections"]).as_posix()
                  for p in user["collections"].glob("ansible_collections/*/*")}
    assert namespaces == {f"ansible_collections/{NAMESPACE}/{NAME}"}
    assert (installed["path"] / "plugins" / "module_utils" / "bastion_hop.py").is_file()


# --- the user's playbook -----------------------------------------------------

def test_user_playbook_provisions_through_the_collection(provisioned, installed):
    proc = provisioned["proc"]
    assert proc.returncode == 0, ran(proc)
    recap = RECAP.search(proc.stdout)
    assert recap, ran(proc)
    ok, changed, unreachable, failed = map(int, recap.groups())
    assert (unreachable, failed) == (0, 0) and changed > 0
    # The collection's roles did the work, from the installed collection.
    for role in ("settings", "aws_preflight", "aws_network", "aws_instances", "aws_host_keys", "aws_outputs"):
        assert f"TASK [{PREFIX}.{role} : " in proc.stdout, f"role {role} did not run"
    assert str(installed["path"] / "roles") in proc.stdout
    assert warnings_of(proc.stdout + proc.stderr) == [EMPTY_INVENTORY_WARNING]


def test_the_local_api_holds_the_users_vpc(provisioned):
    ec2, elbv2 = provisioned["ec2"], provisioned["elbv2"]
    mine = [{"Name": "tag:Project", "Values": [PROJECT]}]
    vpcs = ec2.describe_vpcs(Filters=mine)["Vpcs"]
    assert [(v["CidrBlock"], tags(v)["Name"]) for v in vpcs] == [("10.42.0.0/16", VPC_NAME)]
    vpc_id = vpcs[0]["VpcId"]
    assert ec2.describe_vpcs(Filters=[{"Name": "tag:Project", "Values": ["fumidai"]}])["Vpcs"] == []
    subnets = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])["Subnets"]
    assert {tags(s)["Name"]: (s["CidrBlock"], s["AvailabilityZone"]) for s in subnets} == SUBNETS
    assert {tags(s)["Project"] for s in subnets} == {PROJECT}
    subnet_names = {s["SubnetId"]: tags(s)["Name"] for s in subnets}
    reservations = ec2.describe_instances(Filters=[*mine, {"Name": "instance-state-name", "Values": ["running"]}])
    instances = {tags(i)["Name"]: i for r in reservations["Reservations"] for i in r["Instances"]}
    assert {name: (tags(i)["Role"], subnet_names[i["SubnetId"]]) for name, i in instances.items()} == INSTANCES
    assert [name for name, i in instances.items() if name.startswith("web") and i.get("PublicIpAddress")] == []
    assert ec2.describe_key_pairs(KeyNames=[PROJECT])["KeyPairs"][0]["KeyName"] == PROJECT
    albs = [lb for lb in elbv2.describe_load_balancers()["LoadBalancers"] if lb["VpcId"] == vpc_id]
    assert [(lb["LoadBalancerName"], lb["Scheme"]) for lb in albs] == [(f"{PROJECT}-alb", "internet-facing")]
    assert {subnet_names[az["SubnetId"]] for az in albs[0]["AvailabilityZones"]} == {"public-subnet-1",
                                                                                     "public-subnet-2"}


def test_outputs_and_pinned_keys_land_in_the_users_project(provisioned, user):
    outputs = yaml.safe_load((user["project"] / ".cache" / "outputs.yml").read_text())
    vpc_id = provisioned["ec2"].describe_vpcs(Filters=[{"Name": "tag:Project", "Values": [PROJECT]}])["Vpcs"][0]
    assert (outputs["project"], outputs["vpc_id"], outputs["stack"]["project"]) == (PROJECT, vpc_id["VpcId"],
                                                                                    PROJECT)
    pinned = {line.split()[0] for line in (user["project"] / ".cache" / "known_hosts").read_text().splitlines()
              if line and not line.startswith("#")}
    expected = {outputs["bastion"]["instance_id"], outputs["nat_instance"]["instance_id"],
                *(w["instance_id"] for w in outputs["web"])}
    assert pinned == expected


# --- the user's inventory ----------------------------------------------------

def test_user_inventory_reaches_private_hosts_through_the_installed_hop(provisioned, installed, user):
    proc = stranger.run([user["venv"] / "bin" / "ansible-inventory", "-i", f"inventory/{PROJECT}.bastion_ec2.yml",
                         "--list"], cwd=user["project"], env=provisioned["env"])
    assert proc.returncode == 0, ran(proc)
    assert warnings_of(proc.stderr) == []
    listing = plain(json.loads(proc.stdout))
    groups = {g: sorted(v.get("hosts", [])) for g, v in listing.items() if g not in ("_meta", "all")}
    assert groups["role_bastion"] == ["bastion"] and groups["role_web"] == ["web01", "web02"]
    assert groups["private"] == ["web01", "web02"] and groups["public"] == ["bastion", "nat-instance"]
    assert groups[f"vpc_{VPC_NAME.replace('-', '_')}"] == sorted(INSTANCES)
    hostvars = listing["_meta"]["hostvars"]
    bastion = hostvars["bastion"]
    hop = installed["path"] / "plugins" / "module_utils" / "bastion_hop.py"
    for host in ("web01", "web02"):
        options = shlex.split(hostvars[host]["ansible_ssh_common_args"])
        proxy = [o.split("=", 1)[1] for o in options if o.startswith("ProxyCommand=")]
        assert len(proxy) == 1, options
        words = shlex.split(proxy[0])
        # The user's own Python runs the hop file of the installed collection.
        assert Path(words[0]).parent == user["venv"] / "bin" and Path(words[0]).name.startswith("python")
        assert words[1] == str(hop)
        assert not words[1].startswith(str(ROOT))
        assert words[-3:] == [f"admin@{bastion['ansible_host']}", "%h", "%p"]
        assert f"HostKeyAlias={hostvars[host]['instance_id']}" in options
        assert f"UserKnownHostsFile=\"{user['project'] / '.cache' / 'known_hosts'}\"" in options
    assert "ansible_ssh_common_args" in bastion and "ProxyCommand" not in bastion["ansible_ssh_common_args"]


# --- ansible-doc -------------------------------------------------------------

@pytest.mark.parametrize("kind", ["module", "inventory", "filter", "role"])
def test_ansible_doc_shows_everything_the_checkout_has(kind, installed, user):
    assert installed["proc"].returncode == 0, ran(installed["proc"])
    doc = user["venv"] / "bin" / "ansible-doc"
    listed = stranger.run([doc, "-t", kind, "-l", PREFIX, "--json"], cwd=user["project"], env=user["env"])
    assert listed.returncode == 0, ran(listed)
    assert warnings_of(listed.stderr) == []
    expected = {f"{PREFIX}.{name}" for name in stranger.checkout_names()[kind]}
    assert set(json.loads(listed.stdout)) == expected
    shown = stranger.run([doc, "-t", kind, "--json", *sorted(expected)], cwd=user["project"], env=user["env"])
    assert shown.returncode == 0, ran(shown)
    assert warnings_of(shown.stderr) == []
    docs = json.loads(shown.stdout)
    assert set(docs) == expected
    for name, entry in docs.items():
        if kind == "role":
            assert entry["path"] == str(installed["path"])
            spec = yaml.safe_load((ROOT / "roles" / name.rsplit(".", 1)[1] / "meta" / "argument_specs.yml")
                                  .read_text())["argument_specs"]
            assert {e: v["short_description"] for e, v in entry["entry_points"].items()} == {
                e: v["short_description"] for e, v in spec.items()}
        else:
            assert entry["doc"]["collection"] == PREFIX
            assert Path(entry["doc"]["filename"]).is_relative_to(installed["path"])
            assert entry["doc"]["short_description"], f"{name} has no short_description"
