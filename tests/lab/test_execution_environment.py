"""fumidai's execution environment, used as AWX/AAP uses it.

scripts/build-ee.sh builds the image (execution-environment.yml; cached when its inputs did not change).
Then, against the lab:
* inside the image, ``ansible-inventory --list --export`` with the project's inventory source gives the
  same groups, host variables and ProxyCommands as on the controller, except for the two paths that
  legitimately differ: the Python interpreter that runs the hop and the hop's file in the installed
  collection (the image's /usr/share/ansible/collections copy, the controller's checkout);
* ``ansible-navigator run site.yml`` (ansible-navigator.yml: podman, pull policy never, the EE image)
  runs on every lab host through the bastion with nothing failed or unreachable; it is site.yml's second
  run on the lab (the lab's configure step was the first), so it must also change nothing: the roles and
  the provisioning are idempotent, and the EE runs them as the controller did.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import yaml
from packaging.specifiers import SpecifierSet

from tests.lab.lab_helpers import RECAP_RE, galaxy_version
from tests.support import collection
from tests.support.collection import requirement_pins

ROOT = Path(__file__).resolve().parents[2]
NAVIGATOR = str(Path(sys.executable).parent / "ansible-navigator")
INVENTORY_SOURCE = "inventory/aws.bastion_ec2.yml"
# Where the image has what the controller has elsewhere.
EE_COLLECTIONS = "/usr/share/ansible/collections"
EE_HOP = f"{EE_COLLECTIONS}/ansible_collections/fumidai/vpc/plugins/module_utils/bastion_hop.py"
EE_PYTHON = "/usr/bin/python3"
HOP_TAIL = "/ansible_collections/fumidai/vpc/plugins/module_utils/bastion_hop.py"
# "ProxyCommand=<python> <hop script> --control-path ..." in a host's ansible_ssh_common_args.
PROXY_RE = re.compile(r"ProxyCommand=(\S+) (\S+) --control-path ")
# ansible-navigator's stdout mode interleaves ansible-runner's encoded events (\e[K<base64>\e[<n>D\e[K).
RUNNER_EVENT_RE = re.compile(r"\x1b\[K[A-Za-z0-9+/=]*\x1b\[\d+D\x1b\[K")
ANSI_RE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def podman(*args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout)


def navigator(lab, *args: str, timeout: int) -> subprocess.CompletedProcess:
    """ansible-navigator from the checkout (its ansible-navigator.yml), with the lab's ansible environment."""
    return subprocess.run([NAVIGATOR, *args], cwd=ROOT, env=lab.env, capture_output=True, text=True,
                          timeout=timeout)


def test_navigator_settings_name_the_built_image(ee_image):
    settings = yaml.safe_load((ROOT / "ansible-navigator.yml").read_text())["ansible-navigator"]
    ee = settings["execution-environment"]
    assert (ee["enabled"], ee["container-engine"], ee["pull"]["policy"], ee["image"]) == \
        (True, "podman", "never", ee_image)
    assert settings["mode"] == "stdout"


def test_image_carries_the_pinned_ansible_and_collections(ee_image):
    """What AWX would run: the image's default user (1000), the controller's pins, fumidai.vpc from the
    tarball and the bundled collections satisfying galaxy.yml's dependencies."""
    definition = yaml.safe_load((ROOT / "execution-environment.yml").read_text())
    deps = definition["dependencies"]
    ee_pins = dict(spec.split("==") for spec in [deps["ansible_core"]["package_pip"], *deps["python"]])
    controller = requirement_pins()
    assert ee_pins == {name: controller[name] for name in ("ansible-core", "ansible", "boto3", "botocore", "netaddr")}

    script = ("import importlib.metadata as m, json, os, sys; "
              "print(json.dumps({'uid': os.getuid(), 'versions': {p: m.version(p) for p in sys.argv[1:]}}))")
    proc = podman("run", "--rm", ee_image, "python3", "-c", script, *sorted(ee_pins))
    assert proc.returncode == 0, proc.stderr
    found = json.loads(proc.stdout)
    assert found == {"uid": 1000, "versions": ee_pins}

    proc = podman("run", "--rm", ee_image, "ansible-galaxy", "collection", "list", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    listing = json.loads(proc.stdout)
    assert listing[f"{EE_COLLECTIONS}/ansible_collections"] == {"fumidai.vpc": {"version": galaxy_version()}}
    installed = {name: info["version"] for path, collections in listing.items() for name, info in collections.items()}
    galaxy = collection.galaxy()
    for name, wanted in galaxy["dependencies"].items():
        assert name in installed, f"{name} (galaxy.yml dependency) is not in the image"
        assert installed[name] in SpecifierSet(wanted), f"{name} {installed[name]} does not satisfy {wanted}"


def _inventory(proc: subprocess.CompletedProcess, where: str) -> dict:
    assert proc.returncode == 0, f"ansible-inventory ({where}) failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return json.loads(proc.stdout)


def _hop_words(inventory: dict) -> dict[str, tuple[str, str]]:
    """host -> (python, hop script) of its ProxyCommand, for every host reached through a bastion."""
    words = {}
    for host, hostvars in inventory["_meta"]["hostvars"].items():
        args = hostvars.get("ansible_ssh_common_args", {})
        args = args.get("__ansible_unsafe", "") if isinstance(args, dict) else args
        match = PROXY_RE.search(args)
        if match:
            words[host] = (match[1], match[2])
    return words


def test_inventory_in_the_ee_matches_the_controller(lab, ee_image):
    """AWX's inventory update: the project's inventory source, listed inside the EE."""
    command = ["ansible-inventory", "--list", "--export", "-i", INVENTORY_SOURCE]
    controller = _inventory(subprocess.run(command, cwd=ROOT, env=lab.env, capture_output=True, text=True,
                                           timeout=120), "controller")
    in_ee = _inventory(navigator(lab, "exec", "--", *command, timeout=300), "execution environment")

    web = sorted(node["name"] for node in lab.by_role("web"))
    for inventory in (controller, in_ee):
        assert sorted(inventory["role_web"]["hosts"]) == web
        assert sorted(inventory["private"]["hosts"]) == web

    # Every host but the bastion goes through the bastion (proxy_public_hosts: true): in the EE with the
    # image's Python and the hop of the collection installed in the image.
    hopped = sorted(node["name"] for node in lab.by_kind("instance") if node["role"] != "bastion")
    ee_words = _hop_words(in_ee)
    assert sorted(ee_words) == hopped
    assert set(ee_words.values()) == {(EE_PYTHON, EE_HOP)}
    controller_words = _hop_words(controller)
    assert sorted(controller_words) == hopped
    assert len(set(controller_words.values())) == 1
    controller_python, controller_hop = next(iter(controller_words.values()))
    assert controller_hop.endswith(HOP_TAIL) and controller_hop.startswith(str(ROOT)), controller_hop

    # Modulo those two paths, the two listings are the same: groups, hosts, every host variable, and the
    # rest of each ProxyCommand (bastion address, control path, key, pinned known_hosts, host key aliases).
    def normalized(inventory: dict, python: str, hop: str) -> dict:
        return json.loads(json.dumps(inventory).replace(f"ProxyCommand={python} {hop} ", "ProxyCommand=PY HOP "))

    assert normalized(in_ee, EE_PYTHON, EE_HOP) == normalized(controller, controller_python, controller_hop)


def test_navigator_runs_site_in_the_ee_through_the_bastion_and_changes_nothing(lab, ee_image):
    """What an AWX job template does with site.yml, as the lab's own configure step runs it: the second run."""
    extra = ["-e", "@lab/vars.yml"]
    if (ROOT / ".cache" / "lab" / "web_instances.yml").exists():
        extra += ["-e", "@.cache/lab/web_instances.yml"]
    extra += ["-e", f"aws_alb_ready_url=http://{lab.alb['ip']}/"]
    proc = navigator(lab, "run", "site.yml", *extra, timeout=1500)
    output = ANSI_RE.sub("", RUNNER_EVENT_RE.sub("", proc.stdout))
    assert proc.returncode == 0, f"ansible-navigator run site.yml failed ({proc.returncode}):\n" \
                                 f"{output[-5000:]}\n{proc.stderr[-3000:]}"
    recap = {m[1]: {"ok": int(m[2]), "changed": int(m[3]), "unreachable": int(m[4]), "failed": int(m[5])}
             for m in RECAP_RE.finditer(output.split("PLAY RECAP")[-1])}
    expected = sorted([*(node["name"] for node in lab.by_kind("instance")), "localhost"])
    assert sorted(recap) == expected, output[-3000:]
    for host, counts in recap.items():
        assert counts["failed"] == 0 and counts["unreachable"] == 0 and counts["ok"] > 0, (host, counts)
    changed_tasks = re.findall(r"^TASK \[(.+?)\][ *]*\n(?:(?!TASK ).*\n)*?changed: \[(\S+)\]", output, re.M)
    assert all(counts["changed"] == 0 for counts in recap.values()), f"{recap}\nchanged: {changed_tasks}"
    assert "The site answers through the ALB from every web host" in output
