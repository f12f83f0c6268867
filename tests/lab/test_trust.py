"""Trust, on real hosts: every host's key is pinned from the console it printed at first boot; a man in the
middle is refused by site.yml, ad-hoc Ansible and a person's ssh -F before anything runs; a legitimately
rebuilt host is re-pinned with both fingerprints shown; a rogue bastion is never used; an instance whose Name
an attacker chose is harmless from the inventory to the web page. Runs last among the lab tests (it rotates
keys and adds and removes an instance), and leaves the lab as it found it."""

from __future__ import annotations

import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.lab.lab_helpers import KNOWN_HOSTS, ROOT, moto_client

BIN = ROOT / ".venv" / "bin"
SSH_CONFIG = ROOT / ".cache" / "ssh_config"
KEYS_BLOCK = "-----BEGIN SSH HOST KEY KEYS-----"


def run(lab, *command: str, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run(list(command), cwd=ROOT, env=lab.env, capture_output=True, text=True, timeout=timeout)


def ansible(lab, pattern: str) -> subprocess.CompletedProcess:
    return run(lab, str(BIN / "ansible"), pattern, "-m", "ansible.builtin.ping", "-o", timeout=300)


def ansible_refused(lab, pattern: str) -> str:
    """An ad-hoc run that must be refused; its output. Without pipelining: a pipelined run writes the module
    to ssh's stdin, and when ssh has just exited Ansible sometimes reports that write's broken pipe instead
    of what ssh said."""
    proc = subprocess.run([str(BIN / "ansible"), pattern, "-m", "ansible.builtin.ping", "-o"], cwd=ROOT,
                          env={**lab.env, "ANSIBLE_PIPELINING": "False"}, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0, proc.stdout
    return proc.stdout + proc.stderr


def playbook(lab, name: str, *extra: str) -> subprocess.CompletedProcess:
    lab_vars = ["-e", "@lab/vars.yml"]
    if (ROOT / ".cache" / "lab" / "web_instances.yml").exists():
        lab_vars += ["-e", "@.cache/lab/web_instances.yml"]
    return run(lab, str(BIN / "ansible-playbook"), name, *lab_vars, *extra)


def person_ssh(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["ssh", "-F", str(SSH_CONFIG), "-o", "BatchMode=yes", *args], capture_output=True,
                          text=True, timeout=120)


def lab_step(name: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "lab", "step", name], cwd=ROOT, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]


def pinned() -> dict[str, list[str]]:
    pins: dict[str, list[str]] = {}
    for line in KNOWN_HOSTS.read_text().splitlines():
        if line and not line.startswith("#"):
            instance_id, key_type, key = line.split()
            pins.setdefault(instance_id, []).append(f"{key_type} {key}")
    return pins


def host_ed25519(lab, node: dict) -> str:
    return " ".join(lab.host(node["name"]).check_output("cat /etc/ssh/ssh_host_ed25519_key.pub").split()[:2])


def fingerprint(public_key: str) -> str:
    return subprocess.run(["ssh-keygen", "-l", "-f", "-"], input=public_key, capture_output=True, text=True,
                          check=True).stdout.split()[1]


def close_shared_connections() -> None:
    """Close every multiplexed master, so the next connection meets the host (and its key) afresh."""
    for socket_file in (Path.home() / ".ansible" / "cp").glob("*"):
        if socket_file.is_socket():
            subprocess.run(["ssh", "-o", f"ControlPath={socket_file}", "-O", "exit", "x"], capture_output=True,
                           timeout=30)


def replace_host_key(lab, node: dict) -> str:
    """What a man in the middle presents: another ed25519 key for the same address (nothing on the console)."""
    host = lab.host(node["name"])
    host.check_output("rm -f /etc/ssh/ssh_host_ed25519_key /etc/ssh/ssh_host_ed25519_key.pub && "
                      "ssh-keygen -q -t ed25519 -N '' -f /etc/ssh/ssh_host_ed25519_key")
    return host_ed25519(lab, node)


def reboot_printing_keys(lab, node: dict) -> None:
    """A legitimate rebuild: the instance boots again and prints its (new) keys on its console."""
    lab.host(node["name"]).check_output("rm -f /var/lib/fumidai/keys-printed")
    subprocess.run(["podman", "restart", "-t", "5", node["container"]], check=True, capture_output=True,
                   env=lab.env, timeout=120)
    deadline = time.monotonic() + 120
    while True:
        since = subprocess.run(["podman", "inspect", "--format", "{{.State.StartedAt.Unix}}", node["container"]],
                               capture_output=True, text=True, env=lab.env, check=True).stdout.strip()
        logs = subprocess.run(["podman", "logs", "--since", since, node["container"]], capture_output=True,
                              env=lab.env, check=True).stdout.decode(errors="replace")
        if KEYS_BLOCK in logs and "-----END SSH HOST KEY KEYS-----" in logs:
            return
        assert time.monotonic() < deadline, f"{node['name']} printed no keys after its reboot"
        time.sleep(1)


def test_every_host_key_is_pinned_from_the_console_it_printed(lab):
    ec2 = moto_client(lab.env, "ec2")
    pins = pinned()
    for node in lab.by_kind("instance"):
        key = host_ed25519(lab, node)
        assert pins[node["resource_id"]] == [key], node["name"]
        # The local AWS API returns the console the host printed, in cloud-init's format.
        output = ec2.get_console_output(InstanceId=node["resource_id"], Latest=True)["Output"]
        assert KEYS_BLOCK in output and key.split()[1] in output, node["name"]
        assert re.search(r"<14>\w+ +\d+ [\d:]+ ec2: " + re.escape(key), output), output[-800:]


def test_a_man_in_the_middle_is_refused_everywhere_and_a_rebuilt_host_is_re_pinned(lab):
    bastion, web01 = lab.by_role("bastion")[0], lab.node("web01")
    old = {n["name"]: pinned()[n["resource_id"]][0] for n in (bastion, web01)}
    assert all(host_ed25519(lab, n) == old[n["name"]] for n in (bastion, web01)), "the lab's keys are not pinned"

    # web01 presents another key: site.yml stops before any task runs on any host.
    new = {"web01": replace_host_key(lab, web01)}
    close_shared_connections()
    site = playbook(lab, "site.yml")
    assert site.returncode != 0
    assert (f"web01 ({web01['resource_id']}) did not present the SSH host key pinned for it in {KNOWN_HOSTS}. "
            "Nothing was run on any host.") in " ".join(site.stdout.split())
    assert f"host_keys_repin={web01['resource_id']}" in site.stdout
    for role in ("bastion", "nat_instance", "apache"):
        assert f"TASK [{role} :" not in site.stdout, f"a {role} task ran despite the refused key"
    assert "Host key verification failed" in ansible_refused(lab, "web01")
    person = person_ssh("web01", "true")
    assert person.returncode == 255 and "Host key verification failed" in person.stderr
    assert ansible(lab, "web02").returncode == 0  # the others are unaffected

    # The bastion presents another key too: nothing gets through it.
    new["bastion"] = replace_host_key(lab, bastion)
    close_shared_connections()
    configure = playbook(lab, "playbooks/configure.yml")
    assert configure.returncode != 0
    assert (f"bastion ({bastion['resource_id']}) did not present the SSH host key pinned for it"
            in " ".join(configure.stdout.split()))
    # What ssh shows of the hop's refusal (with ControlPersist it hides a ProxyCommand's stderr)...
    assert (f"Bad remote protocol version identification: 'SSH-fumidai-hop: bastion {bastion['resource_id']} "
            "did not present its pinned host key") in ansible_refused(lab, "web02")
    # ...and the whole message, in the file it names.
    failed = next((Path.home() / ".ansible" / "cp").glob("fumidai-hop-*.failed")).read_text()
    assert f"host_keys_repin={bastion['resource_id']}" in failed and "Host key verification failed" in failed
    assert person_ssh("bastion", "true").returncode == 255
    assert person_ssh("web02", "true").returncode == 255

    # The console still shows the first-boot keys: a re-pin changes nothing and the refusal stands.
    lab_step("consoles")
    unchanged = playbook(lab, "playbooks/host_keys.yml", "-e",
                         f"host_keys_repin={bastion['resource_id']},{web01['resource_id']}")
    assert unchanged.returncode == 0, unchanged.stdout[-3000:]
    assert pinned()[web01["resource_id"]] == [old["web01"]]
    assert ansible(lab, "web01").returncode != 0

    # A legitimate rebuild: the hosts reboot and print the new keys; the re-pin shows old and new.
    for node in (bastion, web01):
        reboot_printing_keys(lab, node)
    lab_step("consoles")
    repin = playbook(lab, "playbooks/host_keys.yml", "-e",
                     f"host_keys_repin={bastion['resource_id']},{web01['resource_id']}")
    assert repin.returncode == 0, repin.stdout[-3000:]
    for node in (bastion, web01):
        # (the YAML callback folds long messages: compare with whitespace normalised)
        assert (f"{node['name']} ({node['resource_id']}): repinned ssh-ed25519 {fingerprint(new[node['name']])} "
                f"(was ssh-ed25519 {fingerprint(old[node['name']])})") in " ".join(repin.stdout.split())
        assert pinned()[node["resource_id"]] == [new[node["name"]]]
    close_shared_connections()
    assert ansible(lab, "role_web").returncode == 0
    person = person_ssh("web01", "hostname")
    assert person.returncode == 0 and person.stdout.strip() == "web01", person.stderr


def test_a_rogue_bastion_is_never_used(lab):
    ec2 = moto_client(lab.env, "ec2")
    bastion = lab.by_role("bastion")[0]
    real = ec2.describe_instances(InstanceIds=[bastion["resource_id"]])["Reservations"][0]["Instances"][0]
    rogue = ec2.run_instances(ImageId=real["ImageId"], MinCount=1, MaxCount=1, SubnetId=real["SubnetId"],
                              TagSpecifications=[{"ResourceType": "instance", "Tags": [
                                  {"Key": "Name", "Value": "bastion"}, {"Key": "Role", "Value": "bastion"}]}],
                              )["Instances"][0]["InstanceId"]
    try:
        host = run(lab, str(BIN / "ansible-inventory"), "--host", "web01", timeout=120)
        assert host.returncode == 0, host.stderr
        assert bastion["resource_id"] in host.stdout and rogue not in host.stdout
        close_shared_connections()
        assert ansible(lab, "web01").returncode == 0
        # Tagged for the project as well: two candidates, an error naming both, never a pick.
        ec2.create_tags(Resources=[rogue], Tags=[{"Key": "Project", "Value": "fumidai"}])
        listing = run(lab, str(BIN / "ansible-inventory"), "--list", timeout=120)
        assert listing.returncode != 0
        assert "more than one running instance is tagged as the bastion" in listing.stderr
        assert rogue in listing.stderr and bastion["resource_id"] in listing.stderr
    finally:
        ec2.terminate_instances(InstanceIds=[rogue])


@pytest.fixture
def hostile_instance(lab):
    """An instance someone launched in private-subnet-1 with a Name chosen to break things, built by the lab
    like any other (and removed afterwards)."""
    ec2 = moto_client(lab.env, "ec2")
    web01 = ec2.describe_instances(InstanceIds=[lab.node("web01")["resource_id"]])["Reservations"][0]["Instances"][0]
    marker = Path("/tmp") / f"fumidai-pwned-{uuid.uuid4().hex[:8]}"
    name = f'0 *\nMatch exec "touch {marker}"\n<script>alert(1)</script> $(touch {marker}) %h'
    instance_id = ec2.run_instances(
        ImageId=web01["ImageId"], MinCount=1, MaxCount=1, SubnetId=web01["SubnetId"], KeyName=web01["KeyName"],
        SecurityGroupIds=[g["GroupId"] for g in web01["SecurityGroups"]], TagSpecifications=[
            {"ResourceType": "instance", "Tags": [{"Key": "Name", "Value": name}, {"Key": "Role", "Value": "web"},
                                                   {"Key": "Project", "Value": "fumidai"}]}],
    )["Instances"][0]["InstanceId"]
    before = {n: container_id(lab, n) for n in ("bastion", "web01", "web02")}
    try:
        lab_step("hosts")
        # Adding an instance to the web group re-applies the others' rules in place: nothing is rebuilt.
        assert {n: container_id(lab, n) for n in before} == before
        yield {"id": instance_id, "marker": marker}
    finally:
        ec2.terminate_instances(InstanceIds=[instance_id])
        lab_step("hosts")
        marker.unlink(missing_ok=True)


def container_id(lab, name: str) -> str:
    return subprocess.run(["podman", "inspect", "--format", "{{.Id}}", lab.node(name)["container"]],
                          capture_output=True, text=True, env=lab.env, check=True).stdout.strip()


def test_a_hostile_name_is_harmless_from_inventory_to_web_page(lab, hostile_instance):
    instance_id, marker = hostile_instance["id"], hostile_instance["marker"]
    container = f"fumidai-lab-{instance_id}"
    # Listed under its instance ID, and not trusted: its key was never pinned, so nothing connects to it (nor
    # may a jump reach it yet: the bastion's PermitOpen lists the hosts it knew when it was last configured).
    inventory = run(lab, str(BIN / "ansible-inventory"), "--graph", "role_web", timeout=120)
    assert inventory.returncode == 0 and instance_id in inventory.stdout, inventory.stderr
    limited = playbook(lab, "playbooks/configure.yml", "--limit", instance_id)
    assert limited.returncode != 0
    assert f"{instance_id} ({instance_id}) has no SSH host key pinned" in " ".join(limited.stdout.split())

    # A person decides to trust it: pinned from its console, then configured like any web host.
    added = playbook(lab, "playbooks/host_keys.yml", "-e", f"host_keys_add={instance_id}")
    assert added.returncode == 0, added.stdout[-3000:]
    site = playbook(lab, "site.yml")
    assert site.returncode == 0, site.stdout[-6000:] + site.stderr[-2000:]
    assert re.search(rf"^{re.escape(instance_id)}\s+: ok=\d+\s+changed=\d+\s+unreachable=0\s+failed=0", site.stdout,
                     re.M), site.stdout[-3000:]
    node_ip = subprocess.run(["podman", "inspect", "--format",
                              "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", container],
                             capture_output=True, text=True, env=lab.env, check=True).stdout.strip()
    body = lab.host(lab.alb["node"]).check_output(f"curl -sS --max-time 5 http://{node_ip}/")
    assert f'<strong id="served-by">{instance_id}</strong>' in body
    assert "<script>" not in body and "Match" not in body

    # The person's ssh config and the doctor take it in their stride.
    config = playbook(lab, "playbooks/ssh_config.yml")
    assert config.returncode == 0, config.stdout[-3000:]
    assert "Match" not in SSH_CONFIG.read_text() and "\nHost 0" not in SSH_CONFIG.read_text()
    person = person_ssh(instance_id, "hostname")
    assert person.returncode == 0 and person.stdout.strip() == instance_id, person.stderr
    doctor = playbook(lab, "playbooks/doctor.yml", "-e", f"target={instance_id}", "-e", "path=ssh")
    assert doctor.returncode == 0, doctor.stdout[-3000:]
    assert not marker.exists(), "reading the config or running the tools executed the Name tag"
