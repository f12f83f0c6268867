"""Host keys from console output and fumidai's known_hosts file (plugins/module_utils/fumidai_host_keys.py):
the parser against cloud-init's real output shapes, and the file format that decides whom ssh trusts."""

from __future__ import annotations

import subprocess

import pytest
from ansible_collections.fumidai.vpc.plugins.module_utils import fumidai_host_keys as host_keys


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> dict:
    """Real keys made by ssh-keygen: {type: (base64, ssh-keygen's fingerprint)}."""
    made = {}
    directory = tmp_path_factory.mktemp("keys")
    for kind, key_type in (("ed25519", "ssh-ed25519"), ("ecdsa", "ecdsa-sha2-nistp256"), ("rsa", "ssh-rsa")):
        path = directory / kind
        subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-f", str(path)], check=True)
        public = path.with_suffix(".pub").read_text().split()
        assert public[0] == key_type
        fingerprint = subprocess.run(["ssh-keygen", "-l", "-f", str(path.with_suffix(".pub"))], check=True,
                                     capture_output=True, text=True).stdout.split()[1]
        made[key_type] = (public[1], fingerprint)
    return made


def cloud_init_console(keys: dict, prefix: str = "<14>Dec  1 10:00:00 ec2: ", ending: str = "\n") -> str:
    """What Debian 12's cloud-init 22.4 prints through logger --stderr (every line prefixed)."""
    block = ["", "#" * 61, "-----BEGIN SSH HOST KEY FINGERPRINTS-----",
             *(f"256 {fp} root@ip-10-0-11-5 (X)" for _key, fp in keys.values()),
             "-----END SSH HOST KEY FINGERPRINTS-----", "#" * 61, "-----BEGIN SSH HOST KEY KEYS-----",
             *(f"{t} {key} root@ip-10-0-11-5" for t, (key, _fp) in keys.items()), "-----END SSH HOST KEY KEYS-----"]
    return "[    0.000000] Linux version 6.1.0\n" + "".join(prefix + line + ending for line in block)


def test_fingerprint_is_what_ssh_keygen_prints(keys):
    for key, fingerprint in keys.values():
        assert host_keys.fingerprint(key) == fingerprint


def test_parses_prefixed_and_bare_blocks_and_terminal_noise(keys):
    expected = [(t, k) for t, (k, _fp) in keys.items()]
    assert host_keys.parse_console_host_keys(cloud_init_console(keys)) == expected
    assert host_keys.parse_console_host_keys(cloud_init_console(keys, prefix="")) == expected
    assert host_keys.parse_console_host_keys(cloud_init_console(keys, prefix="ec2: ")) == expected
    # A serial console as the lab's pty shows it: CRLF line ends, colour escapes on systemd's lines around it.
    noisy = "\x1b[0;32m  OK  \x1b[0m] Started ssh.service\r\n" + cloud_init_console(keys, ending="\r\n")
    assert host_keys.parse_console_host_keys(noisy) == expected
    # Only ed25519 is pinned by default.
    assert host_keys.select_keys(expected, host_keys.DEFAULT_KEY_TYPES) == [("ssh-ed25519", keys["ssh-ed25519"][0])]


def test_nothing_until_a_complete_block_is_printed(keys):
    whole = cloud_init_console(keys)
    assert host_keys.parse_console_host_keys("") == []
    assert host_keys.parse_console_host_keys("[    0.000000] Linux version 6.1.0\n") == []
    # Cut off before the END line (still being written, or the start fell out of the 64 KB window).
    assert host_keys.parse_console_host_keys(whole[: whole.index("-----END SSH HOST KEY KEYS")]) == []
    assert host_keys.parse_console_host_keys(whole[whole.index("ssh-ed25519"):]) == []


def test_repeated_identical_blocks_are_one_answer_different_ones_are_refused(keys):
    console = cloud_init_console(keys)
    assert len(host_keys.parse_console_host_keys(console + console)) == 3
    forged = console + cloud_init_console({"ssh-ed25519": ("AAAAC3NzaC1lZDI1NTE5AAAAIEn49tojGiHIkOn/+LKpuqtA"
                                                           "Wjt4n6pEStMGiTq6vbo1", "x")})
    with pytest.raises(host_keys.HostKeyError, match="2 different sets of host keys"):
        host_keys.parse_console_host_keys(forged)


def test_a_key_whose_blob_is_not_its_type_is_refused(keys):
    rsa_blob = keys["ssh-rsa"][0]
    console = f"-----BEGIN SSH HOST KEY KEYS-----\nssh-ed25519 {rsa_blob} root@x\n-----END SSH HOST KEY KEYS-----\n"
    with pytest.raises(host_keys.HostKeyError, match="malformed ssh-ed25519 key"):
        host_keys.parse_console_host_keys(console)
    # Lines inside the block that are not keys (another process writing to the console) are ignored.
    mixed = (f"-----BEGIN SSH HOST KEY KEYS-----\n[  12.3] random: crng init done\nssh-ed25519 "
             f"{keys['ssh-ed25519'][0]} root@x\n-----END SSH HOST KEY KEYS-----\n")
    assert host_keys.parse_console_host_keys(mixed) == [("ssh-ed25519", keys["ssh-ed25519"][0])]


def test_known_hosts_round_trip_atomic_and_private(keys, tmp_path):
    path = tmp_path / "new dir" / "known_hosts"
    pinned = {"i-0123456789abcdef0": [("ssh-ed25519", keys["ssh-ed25519"][0])],
              "i-01234567": [("ecdsa-sha2-nistp256", keys["ecdsa-sha2-nistp256"][0])]}
    host_keys.write_known_hosts(str(path), pinned)
    assert host_keys.read_known_hosts(str(path)) == pinned
    assert path.stat().st_mode & 0o777 == 0o600 and path.parent.stat().st_mode & 0o777 == 0o700
    assert [p.name for p in path.parent.iterdir()] == ["known_hosts"]  # no temporary file left behind
    # ssh itself reads it: the key is found under the instance ID (HostKeyAlias), nothing else.
    found = subprocess.run(["ssh-keygen", "-F", "i-0123456789abcdef0", "-f", str(path)], capture_output=True,
                           text=True)
    assert found.returncode == 0 and keys["ssh-ed25519"][0] in found.stdout
    assert host_keys.read_known_hosts(str(tmp_path / "absent")) == {}


@pytest.mark.parametrize("line", [
    "web01 ssh-ed25519 {ed}",                        # a name, not an instance ID
    "i-0123456789abcdef0,10.0.11.5 ssh-ed25519 {ed}",  # a pattern list
    "@cert-authority i-0123456789abcdef0 ssh-ed25519 {ed}",
    "i-0123456789abcdef0 ssh-ed25519 {rsa}",         # blob of another type
    "i-0123456789abcdef0 ssh-ed25519",
    "* ssh-ed25519 {ed}",
])
def test_anything_else_in_the_known_hosts_file_is_refused(keys, tmp_path, line):
    path = tmp_path / "known_hosts"
    path.write_text(host_keys.HEADER + line.format(ed=keys["ssh-ed25519"][0], rsa=keys["ssh-rsa"][0]) + "\n")
    with pytest.raises(host_keys.HostKeyError, match="line 3 is not"):
        host_keys.read_known_hosts(str(path))
