"""bastion_ec2 end to end.

1. After playbooks/provision.yml against a moto server (the shared provisioned stack),
   `ansible-inventory --list` shows the project's hosts in the right groups, with the hop on the private ones.
2. The hop against real sshd (podman containers on podman's default network 10.88.0.0/16): a bastion at
   Debian's default MaxStartups 10:30:100 and twenty private hosts behind it. Twenty parallel cold hops
   must cost exactly one bastion login; the bastion's own Ansible connection must reuse that master; a
   person's `ssh -F .cache/ssh_config web01` must arrive through the bastion, on that same master (and
   Ansible on a master the person's ssh opened).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import boto3
import pytest

from tests.support.aws_seed import AwsSeed, lab_plan
from tests.support.playbook import ROOT, plain, run_playbook, ssh_resolved

VENV_BIN = Path(sys.executable).parent
IMAGE = "localhost/fumidai-debian12:latest"
NETWORK_CIDR = "10.88.0.0/16"  # podman's default network
BASTION_IP = "10.88.201.10"
TARGET_IPS = [f"10.88.202.{n}" for n in range(11, 33)]  # 22 private hosts, served by one container


def ansible_env(**extra: str) -> dict:
    return {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_INVENTORY_CACHE": "false", "PATH": f"{VENV_BIN}:{os.environ['PATH']}", **extra}



def inventory_list(env: dict) -> dict:
    proc = subprocess.run([str(VENV_BIN / "ansible-inventory"), "--list"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return plain(json.loads(proc.stdout))


def members(listing: dict, group: str) -> set[str]:
    return set(listing.get(group, {}).get("hosts", []))


# --------------------------------------------------------------------------- 1. after provisioning
def test_inventory_after_provision(provisioned_stack):
    """The shared provisioned stack (tests/integration/provisioned.py), listed by the inventory."""
    stack_env = provisioned_stack.env
    listing = inventory_list(ansible_env(**stack_env))
    hostvars = listing["_meta"]["hostvars"]
    assert set(hostvars) == {"bastion", "nat-instance", "web01", "web02"}
    assert members(listing, "public") == {"bastion", "nat-instance"}
    assert members(listing, "private") == {"web01", "web02"}
    assert members(listing, "role_bastion") == {"bastion"}
    assert members(listing, "role_nat") == {"nat-instance"}
    assert members(listing, "role_web") == {"web01", "web02"}
    assert members(listing, "subnet_public_subnet_1") == {"bastion"}
    assert members(listing, "subnet_public_subnet_2") == {"nat-instance"}
    assert members(listing, "subnet_private_subnet_1") == {"web01"}
    assert members(listing, "subnet_private_subnet_2") == {"web02"}
    assert members(listing, "vpc_fumidai_vpc") == set(hostvars)
    assert members(listing, "az_ap_northeast_1a") == {"bastion", "web01"}
    assert members(listing, "az_ap_northeast_1c") == {"nat-instance", "web02"}

    bastion = hostvars["bastion"]
    assert bastion["ansible_host"] == bastion["public_ip_address"]
    # The NAT instance is public, but its SG opens 22 to the bastion's SG only:
    # the project's inventory file (proxy_public_hosts: true) sends it through
    # the bastion too. The bastion itself never hops; every host's key is checked under its instance ID.
    assert "ProxyCommand" not in bastion["ansible_ssh_common_args"]
    assert f"HostKeyAlias={bastion['instance_id']}" in bastion["ansible_ssh_common_args"]
    for name in ("web01", "web02", "nat-instance"):
        web = hostvars[name]
        if name != "nat-instance":
            assert web["ansible_host"] == web["private_ip_address"]
        args = web["ansible_ssh_common_args"]
        pins = stack_env["FUMIDAI_KNOWN_HOSTS"]
        assert args.startswith(f"-o StrictHostKeyChecking=yes -o 'UserKnownHostsFile=\"{pins}\"'"
                               f" -o UpdateHostKeys=no -o HostKeyAlias={web['instance_id']} -o 'ProxyCommand=")
        assert args.endswith(f" --option HostKeyAlias={bastion['instance_id']} admin@{bastion['ansible_host']} %h %p'")
        assert bastion["ansible_control_path"] in args
        assert web["bastion"]["instance_id"] == bastion["instance_id"]
    assert members(listing, "web") == {"web01", "web02"}

    # Provisioning pinned each instance's ed25519 key as its console output shows it (the server synthesizes
    # a first boot's console for every instance).
    ec2 = provisioned_stack.client("ec2")
    pins = dict(line.split(" ", 1) for line in Path(stack_env["FUMIDAI_KNOWN_HOSTS"]).read_text().splitlines()
                if line and not line.startswith("#"))
    for host in hostvars.values():
        console = ec2.get_console_output(InstanceId=host["instance_id"], Latest=True)["Output"]
        assert pins[host["instance_id"]].startswith("ssh-ed25519 ")
        assert pins[host["instance_id"]].split()[1] in console


# --------------------------------------------------------------------------- 2. the hop, on real sshd
def podman_env() -> dict:
    """The environment scripts/podman-env.sh sets (project containers.conf and storage)."""
    dump = subprocess.run(["bash", "-c", f". {ROOT / 'scripts' / 'podman-env.sh'} && env -0"],
                          capture_output=True, check=True).stdout.decode()
    return dict(item.split("=", 1) for item in dump.split("\0") if "=" in item)


def podman(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["podman", *args], env=podman_env(), capture_output=True, text=True, check=check,
                          timeout=180)


def sshd_command(pubkey_line: str, extra: str, setup: str = "") -> str:
    return (f"{setup} ssh-keygen -A >/dev/null && mkdir -p /run/sshd && "
            "install -d -o admin -g admin -m 700 /home/admin/.ssh && "
            f"echo '{pubkey_line}' > /home/admin/.ssh/authorized_keys && "
            "chown admin:admin /home/admin/.ssh/authorized_keys && "
            f"exec /usr/sbin/sshd -D -e -o LogLevel=INFO {extra}")


@pytest.fixture
def sshd_lab(tmp_path):
    """A bastion (MaxStartups 10:30:100) and one container answering on 22 private IPs, which accepts
    SSH only from the bastion. Removed afterwards."""
    subprocess.run(["ip", "route", "replace", "prohibit", NETWORK_CIDR, "metric", "4000"], check=False)
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    pubkey = (tmp_path / "id_ed25519.pub").read_text().strip()
    tag = uuid.uuid4().hex[:6]
    bastion, target = f"fumidai-inv-bastion-{tag}", f"fumidai-inv-target-{tag}"
    add_ips = " ".join(f"ip addr add {ip}/16 dev eth0 &&" for ip in TARGET_IPS)
    try:
        podman("run", "-d", "--name", bastion, "--network", "podman", "--ip", BASTION_IP, IMAGE, "sh", "-c",
               sshd_command(pubkey, "-o MaxStartups=10:30:100 -o AllowTcpForwarding=yes"))
        podman("run", "-d", "--name", target, "--network", "podman", "--ip", "10.88.202.10",
               "--cap-add", "NET_ADMIN", IMAGE, "sh", "-c",
               # One sshd stands in for 22 hosts: lift its MaxStartups so only the bastion's limit is tested.
               sshd_command(pubkey, f"-o AllowUsers=admin@{BASTION_IP} -o MaxStartups=200:30:400", setup=add_ips))
        wait_for_sshd(bastion, target)
        yield {"key": key, "bastion": bastion, "target": target}
    finally:
        podman("rm", "-f", "-t", "0", bastion, target, check=False)


def wait_for_sshd(*containers: str, timeout: float = 60) -> None:
    """Host keys are generated at start: wait until every sshd listens."""
    deadline = time.monotonic() + timeout
    for container in containers:
        while "Server listening on 0.0.0.0 port 22" not in podman("logs", container).stderr:
            assert time.monotonic() < deadline, f"sshd in {container} did not start"
            time.sleep(0.5)


def bastion_logins(container: str) -> int:
    return podman("logs", container).stderr.count("Accepted publickey for admin")


def build_lab_topology() -> None:
    """moto's view of the containers: a VPC on podman's network, the bastion in a public subnet, the
    private hosts in a subnet that uses the VPC's main table (local route only)."""
    AwsSeed(boto3.client("ec2")).build(lab_plan(BASTION_IP, TARGET_IPS, vpc_cidr=NETWORK_CIDR, vpc_name="hop-vpc",
                                                 public_cidr="10.88.201.0/24", private_cidr="10.88.202.0/24"))


def pin_container_keys(known_hosts: Path, sshd_lab: dict) -> None:
    """What provisioning reads from each instance's console, read here from the containers standing in for
    them: the bastion's key for the bastion, the one target sshd's key for every private host."""
    def ed25519(container: str) -> str:
        return podman("exec", container, "cat", "/etc/ssh/ssh_host_ed25519_key.pub").stdout.split()[1]

    keys = {"bastion": ed25519(sshd_lab["bastion"]), "web": ed25519(sshd_lab["target"])}
    lines = []
    for reservation in boto3.client("ec2").describe_instances()["Reservations"]:
        for instance in reservation["Instances"]:
            role = next(t["Value"] for t in instance["Tags"] if t["Key"] == "Role")
            lines.append(f"{instance['InstanceId']} ssh-ed25519 {keys[role]}\n")
    known_hosts.write_text("".join(lines))


def close_masters(control_dir: Path) -> None:
    """Stop every ssh master listening in ``control_dir``."""
    for socket_file in control_dir.glob("*"):
        if socket_file.is_socket():
            subprocess.run(["ssh", "-o", f"ControlPath={socket_file}", "-O", "exit", "x"], capture_output=True,
                           timeout=30)


# A valid ed25519 public key that no container has.
OTHER_KEY = "AAAAC3NzaC1lZDI1NTE5AAAAIEn49tojGiHIkOn/+LKpuqtAWjt4n6pEStMGiTq6vbo1"


def pinned_key(known_hosts: Path, name: str) -> str:
    ec2 = boto3.client("ec2")
    found = ec2.describe_instances(Filters=[{"Name": "tag:Name", "Values": [name + "01" if name == "web" else name]}])
    instance_id = found["Reservations"][0]["Instances"][0]["InstanceId"]
    return next(line.split()[2] for line in known_hosts.read_text().splitlines() if line.startswith(instance_id))


def test_parallel_cold_hops_share_one_bastion_login(aws_env, sshd_lab, tmp_path):
    build_lab_topology()
    # A short socket directory: unix socket paths are limited to ~104 bytes.
    control_dir = tempfile.mkdtemp(prefix="fh", dir="/tmp")
    # Host keys pinned by instance ID and strictly checked, as on a real account.
    known_hosts = tmp_path / "known_hosts"
    pin_container_keys(known_hosts, sshd_lab)
    env = ansible_env(**aws_env, FUMIDAI_BASTION_ADDRESS="private_ip", FUMIDAI_SSH_PRIVATE_KEY=str(sshd_lab["key"]),
                      ANSIBLE_SSH_CONTROL_PATH_DIR=control_dir, FUMIDAI_KNOWN_HOSTS=str(known_hosts))
    try:
        listing = inventory_list(env)
        assert len(members(listing, "role_web")) == len(TARGET_IPS)
        assert members(listing, "private") == members(listing, "role_web")
        # A person's SSH config, from the same inventory (it connects to nothing).
        config = tmp_path / "ssh_config"
        playbook_env = {k: v for k, v in env.items() if k not in ("PATH",)}
        run_playbook("playbooks/ssh_config.yml", "-e", f"ssh_config_path={config}",
                     "-e", "ssh_config_control_persist=60s", env=playbook_env, check=True)

        # Cold start: no master yet, every private host connects at once (forks > hosts), nothing first.
        proc = subprocess.run([str(VENV_BIN / "ansible"), "role_web", "-m", "ansible.builtin.ping",
                               "-f", str(len(TARGET_IPS) + 5), "-o"],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert proc.stdout.count("SUCCESS") == len(TARGET_IPS), proc.stdout
        assert bastion_logins(sshd_lab["bastion"]) == 1

        # The bastion's own Ansible connection rides the same master: still one login.
        proc = subprocess.run([str(VENV_BIN / "ansible"), "role_bastion", "-m", "ansible.builtin.ping", "-o"],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0 and "SUCCESS" in proc.stdout, proc.stdout + proc.stderr
        assert bastion_logins(sshd_lab["bastion"]) == 1

        # The private hosts really are behind the bastion: a direct login is refused.
        direct = subprocess.run(["ssh", "-i", str(sshd_lab["key"]), "-o", "BatchMode=yes", "-o",
                                 "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                                 "-o", "ConnectTimeout=10", f"admin@{TARGET_IPS[0]}", "true"],
                                capture_output=True, text=True, timeout=60)
        # Refused by the target's sshd for coming from elsewhere than the bastion (AllowUsers admin@bastion),
        # not lost on the way: the same key and user get in through the bastion just below.
        assert direct.returncode == 255, direct.stderr
        assert f"admin@{TARGET_IPS[0]}: Permission denied (publickey" in direct.stderr, direct.stderr

        # A person's ssh -F (the config written above) goes through the bastion too, over the master Ansible
        # opened: the config names the same control socket (the playbook reads Ansible's control_path_dir, as
        # the inventory does).
        ansible_master = listing["_meta"]["hostvars"]["bastion"]["ansible_control_path"].replace("%%", "%")
        assert ssh_resolved(config, "bastion")["controlpath"] == [ansible_master]
        assert Path(ansible_master).is_socket(), "Ansible's bastion master is not up"
        person = subprocess.run(["ssh", "-F", str(config), "-o", "BatchMode=yes", "web01",
                                 "echo $SSH_CONNECTION"], capture_output=True, text=True, timeout=120)
        assert person.returncode == 0, person.stderr
        assert person.stdout.split()[0] == BASTION_IP  # the target saw the bastion as its client
        assert person.stdout.split()[2] == TARGET_IPS[0]
        assert bastion_logins(sshd_lab["bastion"]) == 1, "the person's ssh did not reuse Ansible's bastion master"
        # And the other way round: Ansible rides a master a person's ssh opened (every master closed first,
        # the targets' own too, so that each Ansible connection goes through the hop).
        close_masters(Path(control_dir))
        person = subprocess.run(["ssh", "-F", str(config), "-o", "BatchMode=yes", "web02", "true"],
                                capture_output=True, text=True, timeout=120)
        assert person.returncode == 0, person.stderr
        assert bastion_logins(sshd_lab["bastion"]) == 2
        proc = subprocess.run([str(VENV_BIN / "ansible"), "role_web", "-m", "ansible.builtin.ping", "-o"],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0 and proc.stdout.count("SUCCESS") == len(TARGET_IPS), proc.stdout + proc.stderr
        assert bastion_logins(sshd_lab["bastion"]) == 2, "Ansible did not reuse the person's bastion master"
        subprocess.run(["ssh", "-F", str(config), "-O", "exit", "bastion"], capture_output=True, timeout=30)

        # A control directory that does not exist yet (as ~/.ssh on a fresh machine): the playbook creates it.
        person_control_dir = Path(control_dir) / "person"
        run_playbook("playbooks/ssh_config.yml", "-e", f"ssh_config_path={tmp_path / 'ssh_config.other'}",
                     "-e", f"ssh_config_control_dir={person_control_dir}", env=playbook_env, check=True)
        assert person_control_dir.is_dir() and person_control_dir.stat().st_mode & 0o777 == 0o700

        # A host whose key is not the pinned one is refused, by Ansible and by a person's ssh alike (on new
        # connections: the open ones were verified when they were made).
        close_masters(Path(control_dir))
        known_hosts.write_text(known_hosts.read_text().replace(pinned_key(known_hosts, "web"), OTHER_KEY))
        # (Ansible without pipelining: a pipelined write to an ssh that has just exited can be reported as a
        # broken pipe instead of what ssh said.)
        for command in ([str(VENV_BIN / "ansible"), "web01", "-m", "ansible.builtin.ping", "-o"],
                        ["ssh", "-F", str(config), "-o", "BatchMode=yes", "web01", "true"]):
            refused = subprocess.run(command, cwd=ROOT, env={**env, "ANSIBLE_PIPELINING": "False"},
                                     capture_output=True, text=True, timeout=120)
            assert refused.returncode != 0
            assert "Host key verification failed" in refused.stdout + refused.stderr
    finally:
        for socket_file in Path(control_dir).glob("fumidai-hop-*"):
            if socket_file.suffix not in (".lock", ".failed"):
                subprocess.run(["ssh", "-o", f"ControlPath={socket_file}", "-O", "exit", "x"],
                               capture_output=True, timeout=30)
        shutil.rmtree(control_dir, ignore_errors=True)
