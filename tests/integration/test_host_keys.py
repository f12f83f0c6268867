"""Pinning SSH host keys from EC2 console output (roles/aws_host_keys, playbooks/host_keys.yml) against a
moto server whose consoles the test writes, as the lab's hosts (or EC2's hypervisor) would: provisioning waits
for first boot, pins ed25519 keys under each instance ID, never replaces a pin silently, re-pins on request
with both fingerprints, and says clearly what is missing when an instance prints nothing."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from pathlib import Path

import boto3
import pytest

from lab import moto_local
from tests.support.playbook import run_playbook

REGION = "ap-northeast-1"
ADMIN_CIDR = "192.168.250.0/24"
NAMES = ("bastion", "nat-instance", "web01", "web02")


def keypair(directory: Path, kind: str) -> str:
    path = directory / f"{kind}-{time.monotonic_ns()}"
    subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-f", str(path)], check=True)
    return path.with_suffix(".pub").read_text().strip()


def fingerprint(public_line: str) -> str:
    return subprocess.run(["ssh-keygen", "-l", "-f", "-"], input=public_line, capture_output=True, text=True,
                          check=True).stdout.split()[1]


def console(*public_lines: str) -> str:
    """A Debian instance's console after first boot, as cloud-init's keys_to_console prints it."""
    prefix = "<14>Dec  1 10:00:00 ec2: "
    lines = ["", "#" * 61, "-----BEGIN SSH HOST KEY KEYS-----", *public_lines, "-----END SSH HOST KEY KEYS-----"]
    return "[    0.000000] Linux version 6.1.0-28-cloud-amd64\n" + "".join(prefix + line + "\n" for line in lines)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """A stack provisioned without pinning (its instances have not 'booted'), on a server that reads the
    consoles this test publishes."""
    tmp = tmp_path_factory.mktemp("host_keys")
    lab_dir = tmp / "aws"
    (lab_dir / "console").mkdir(parents=True)
    port = moto_local.free_port()
    endpoint = f"http://127.0.0.1:{port}"
    proc = moto_local.spawn(port, tmp / "server.log", lab_dir)
    try:
        moto_local.wait_until_up(endpoint)
        pub = keypair(tmp, "ed25519")
        (tmp / "id.pub").write_text(pub + "\n")
        known_hosts = tmp / "pins" / "known_hosts"
        env = {**moto_local.environment(endpoint), "FUMIDAI_OUTPUTS_FILE": str(tmp / "outputs.yml"),
               "FUMIDAI_KNOWN_HOSTS": str(known_hosts)}
        extra = ["-e", json.dumps({"admin_cidrs": [ADMIN_CIDR], "ssh_public_key_path": str(tmp / "id.pub")})]
        run_playbook("playbooks/provision.yml", *extra, "-e", "aws_host_keys_enabled=false", env=env, check=True)
        ec2 = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing",
                            region_name=REGION).client("ec2", endpoint_url=endpoint)
        reservations = ec2.describe_instances(Filters=[{"Name": "tag:Project", "Values": ["fumidai"]}])
        ids = {next(t["Value"] for t in i["Tags"] if t["Key"] == "Name"): i["InstanceId"]
               for r in reservations["Reservations"] for i in r["Instances"]}
        assert sorted(ids) == sorted(NAMES)
        assert not known_hosts.exists(), "provisioning with aws_host_keys_enabled=false pinned something"
        yield {"tmp": tmp, "env": env, "extra": extra, "ids": ids, "consoles": lab_dir / "console",
               "known_hosts": known_hosts, "ec2": ec2}
    finally:
        moto_local.stop_pid(proc.pid)


def pins(stack) -> dict[str, list[str]]:
    pinned: dict[str, list[str]] = {}
    for line in stack["known_hosts"].read_text().splitlines():
        if line and not line.startswith("#"):
            instance_id, key_type, key = line.split()
            pinned.setdefault(instance_id, []).append(f"{key_type} {key}")
    return pinned


def host_keys(stack, *args: str) -> subprocess.CompletedProcess:
    return run_playbook("playbooks/host_keys.yml", "-e", "aws_host_keys_poll_interval=1", *args, env=stack["env"])


def test_provisioning_waits_for_first_boot_then_pins_ed25519_under_each_instance_id(stack):
    keys = {name: (keypair(stack["tmp"], "ed25519"), keypair(stack["tmp"], "ecdsa")) for name in NAMES}

    def boot_later():
        time.sleep(4)  # the consoles appear while provisioning is already waiting for them
        for name, (ed25519, ecdsa) in keys.items():
            (stack["consoles"] / stack["ids"][name]).write_text(console(ecdsa, ed25519))

    booting = threading.Thread(target=boot_later)
    booting.start()
    started = time.monotonic()
    proc = run_playbook("playbooks/provision.yml", *stack["extra"], "-e", "aws_host_keys_poll_interval=1",
                        env=stack["env"])
    booting.join()
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert time.monotonic() - started > 4
    pinned = pins(stack)
    # Only ed25519 (no role regenerates it), each under its own instance ID.
    assert pinned == {stack["ids"][name]: [" ".join(keys[name][0].split()[:2])] for name in NAMES}
    assert stack["known_hosts"].stat().st_mode & 0o777 == 0o600
    shown = " ".join(proc.stdout.split())  # the YAML callback folds long messages
    for name in NAMES:
        assert f"{name} ({stack['ids'][name]}): pinned ssh-ed25519 {fingerprint(keys[name][0])}" in shown

    # ssh reads the file: the key is known under the instance ID only, not under the address.
    found = subprocess.run(["ssh-keygen", "-F", stack["ids"]["web01"], "-f", str(stack["known_hosts"])],
                           capture_output=True, text=True)
    assert found.returncode == 0

    # Pinning again changes nothing and does not even read the consoles (they may have scrolled away).
    for path in stack["consoles"].iterdir():
        path.unlink()
    again = host_keys(stack, "-e", "aws_host_keys_timeout=1")
    assert again.returncode == 0, again.stdout[-3000:]
    assert "changed=0" in again.stdout.split("PLAY RECAP")[-1]
    assert pins(stack) == pinned
    # Put the consoles back for the next tests.
    for name, (ed25519, ecdsa) in keys.items():
        (stack["consoles"] / stack["ids"][name]).write_text(console(ecdsa, ed25519))


def test_a_pinned_key_changes_only_by_a_deliberate_repin_showing_both_fingerprints(stack):
    web01 = stack["ids"]["web01"]
    before = pins(stack)
    old = before[web01][0]
    new = keypair(stack["tmp"], "ed25519")
    (stack["consoles"] / web01).write_text(console(new))

    kept = host_keys(stack)
    assert kept.returncode == 0, kept.stdout[-3000:]
    assert pins(stack) == before  # never replaced silently

    # Check mode shows what a re-pin would do and writes nothing.
    dry = host_keys(stack, "-e", f"host_keys_repin={web01}", "--check")
    assert dry.returncode == 0, dry.stdout[-3000:]
    assert pins(stack) == before

    repinned = host_keys(stack, "-e", f"host_keys_repin={web01}")
    assert repinned.returncode == 0, repinned.stdout[-3000:]
    assert (f"web01 ({web01}): repinned ssh-ed25519 {fingerprint(new)} "
            f"(was ssh-ed25519 {fingerprint(old)})") in " ".join(repinned.stdout.split())
    assert pins(stack) == {**before, web01: [" ".join(new.split()[:2])]}
    assert "changed=1" in repinned.stdout.split("PLAY RECAP")[-1]


def test_an_instance_that_prints_no_keys_is_named_and_nothing_is_pinned_for_it(stack):
    web02 = stack["ids"]["web02"]
    before = pins(stack)
    # Booted, but cloud-init's ssh_key_console_blacklist left ed25519 out: only an ECDSA key is printed.
    (stack["consoles"] / web02).write_text(console(keypair(stack["tmp"], "ecdsa")))
    proc = host_keys(stack, "-e", f"host_keys_repin={web02}", "-e", "aws_host_keys_timeout=3")
    assert proc.returncode != 0
    shown = " ".join(proc.stdout.split())
    assert f"No SSH host keys in the console output of web02 ({web02}) (printed only ecdsa-sha2-nistp256 keys" \
        in shown
    assert "ssh_key_console_blacklist" in shown
    assert pins(stack) == before

    # Two different key blocks on one console: something other than first boot printed keys.
    (stack["consoles"] / web02).write_text(console(keypair(stack["tmp"], "ed25519"))
                                           + console(keypair(stack["tmp"], "ed25519")))
    proc = host_keys(stack, "-e", f"host_keys_repin={web02}", "-e", "aws_host_keys_timeout=3")
    assert proc.returncode != 0
    assert f"web02 ({web02}): console output holds 2 different sets of host keys" in " ".join(proc.stdout.split())
    assert pins(stack) == before


def test_repin_of_an_instance_outside_the_stack_is_refused(stack):
    before = pins(stack)
    proc = host_keys(stack, "-e", "host_keys_repin=i-0123456789abcdef0")
    assert proc.returncode != 0
    assert "aws_host_keys_repin names i-0123456789abcdef0, which is not a running instance of this stack" \
        in " ".join(proc.stdout.split())
    assert pins(stack) == before


def test_an_instance_provisioning_did_not_launch_is_pinned_only_when_a_person_names_it(stack):
    ec2 = stack["ec2"]
    subnet = ec2.describe_instances(InstanceIds=[stack["ids"]["web01"]])["Reservations"][0]["Instances"][0]["SubnetId"]
    image = ec2.describe_instances(InstanceIds=[stack["ids"]["web01"]])["Reservations"][0]["Instances"][0]["ImageId"]

    def launch(project: str | None) -> str:
        tags = [{"Key": "Name", "Value": "0 *"}] + ([{"Key": "Project", "Value": project}] if project else [])
        return ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1, SubnetId=subnet, TagSpecifications=[
            {"ResourceType": "instance", "Tags": tags}])["Instances"][0]["InstanceId"]

    stranger, outsider = launch("fumidai"), launch(None)
    for instance_id in (stranger, outsider):
        (stack["consoles"] / instance_id).write_text(console(keypair(stack["tmp"], "ed25519")))
    before = pins(stack)
    assert host_keys(stack).returncode == 0
    assert pins(stack) == before  # not one of the stack's instances: never pinned by itself

    refused = host_keys(stack, "-e", f"host_keys_add={outsider}")
    assert refused.returncode != 0
    assert f"aws_host_keys_add names {outsider}, which is not a running instance with the project tag" \
        in " ".join(refused.stdout.split())
    assert pins(stack) == before

    added = host_keys(stack, "-e", f"host_keys_add={stranger}")
    assert added.returncode == 0, added.stdout[-3000:]
    assert set(pins(stack)) == set(before) | {stranger}
    # Its hostile name is never printed: the instance is shown by its ID.
    assert f"{stranger}: pinned ssh-ed25519" in " ".join(added.stdout.split()) and "0 *" not in added.stdout
