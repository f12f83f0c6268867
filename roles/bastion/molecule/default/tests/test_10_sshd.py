"""sshd's effective configuration, host keys, moduli and the ssh-audit policy."""

from __future__ import annotations

import subprocess

from conftest import BASTION_VARS, VENV_BIN, ip_of

POLICY = "Hardened Debian 12 (version 3)"


def sshd_effective(host) -> dict[str, list[str]]:
    out = host.check_output("/usr/sbin/sshd -T")
    values: dict[str, list[str]] = {}
    for line in out.splitlines():
        key, _, value = line.partition(" ")
        values.setdefault(key, []).append(value)
    return values


def test_sshd_effective_values(bastion):
    cfg = sshd_effective(bastion)
    forks = BASTION_VARS["bastion_fanout_forks"]
    expected = {
        "permitrootlogin": "no",
        "pubkeyauthentication": "yes",
        "passwordauthentication": "no",
        "kbdinteractiveauthentication": "no",
        "authenticationmethods": "publickey",
        "permitemptypasswords": "no",
        "hostbasedauthentication": "no",
        "allowtcpforwarding": "local",
        # Computed by the role from the inventory's vpc_id / private_ip_address
        # (molecule.yml host_vars): the private host only, the outsider is in another VPC.
        "permitopen": f"{ip_of('private')}:22",
        "allowagentforwarding": "no",
        "allowstreamlocalforwarding": "no",
        "x11forwarding": "no",
        "permittunnel": "no",
        "gatewayports": "no",
        "maxauthtries": "3",
        "logingracetime": "30",
        "clientaliveinterval": "60",
        "clientalivecountmax": "3",
        "loglevel": "VERBOSE",
        "banner": "/etc/ssh/sshd-banner",
        "maxsessions": str(forks),
        "maxstartups": f"{2 * forks}:30:{4 * forks}",
        "requiredrsasize": "3072",
    }
    actual = {key: cfg[key][0] for key in expected}
    assert actual == expected
    # DebianBanner is not reported by sshd -T; it hides the OS from the version string.
    assert "Debian" not in bastion.check_output("timeout 5 nc -w 2 127.0.0.1 22 </dev/null | head -1")
    assert sorted(cfg["hostkey"]) == ["/etc/ssh/ssh_host_ed25519_key", "/etc/ssh/ssh_host_rsa_key"]


def test_crypto_lists_are_the_policy_lists(bastion):
    cfg = sshd_effective(bastion)
    assert cfg["kexalgorithms"][0].split(",") == [
        "sntrup761x25519-sha512",
        "sntrup761x25519-sha512@openssh.com",
        "curve25519-sha256",
        "curve25519-sha256@libssh.org",
        "diffie-hellman-group16-sha512",
        "diffie-hellman-group18-sha512",
        "diffie-hellman-group-exchange-sha256",
    ]
    assert cfg["macs"][0].split(",") == [
        "hmac-sha2-256-etm@openssh.com",
        "hmac-sha2-512-etm@openssh.com",
        "umac-128-etm@openssh.com",
    ]


def test_sshd_config_is_private_and_reads_no_dropins(bastion):
    config = bastion.file("/etc/ssh/sshd_config")
    assert config.mode == 0o600
    assert not any(line.strip().lower().startswith("include") for line in config.content_string.splitlines())


def test_host_keys(bastion):
    rsa_bits = bastion.check_output("ssh-keygen -l -f /etc/ssh/ssh_host_rsa_key.pub").split()[0]
    assert rsa_bits == "4096"
    assert bastion.file("/etc/ssh/ssh_host_ed25519_key").mode == 0o600


def test_the_pinned_ed25519_host_key_is_the_one_from_before_the_role(bastion):
    """Provisioning pins the ed25519 key from the console output: converging must not replace it."""
    before = bastion.file("/var/tmp/molecule-ed25519-before.pub").content_string
    assert before.startswith("ssh-ed25519 ")
    assert bastion.file("/etc/ssh/ssh_host_ed25519_key.pub").content_string == before
    served = subprocess.run(
        ["ssh-keyscan", "-t", "ed25519", ip_of("bastion")], capture_output=True, text=True, timeout=60, check=False
    ).stdout
    assert before.split()[1] in served


def test_only_ed25519_and_rsa_host_keys_are_offered():
    """Asked for every key type, the server answers with exactly these two."""
    result = subprocess.run(
        ["ssh-keyscan", "-t", "rsa,ecdsa,ed25519", ip_of("bastion")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    offered = sorted(line.split()[1] for line in result.stdout.splitlines() if line and not line.startswith("#"))
    assert offered == ["ssh-ed25519", "ssh-rsa"]


def test_moduli_are_3072_bits_or_more(bastion):
    sizes = [
        int(line.split()[4]) + 1
        for line in bastion.file("/etc/ssh/moduli").content_string.splitlines()
        if line and not line.startswith("#")
    ]
    assert sizes, "moduli must not be empty"
    assert min(sizes) >= 3072


def test_ssh_audit_hardened_debian_12_policy():
    """Run from the controller against the container, as an auditor would."""
    result = subprocess.run(
        [str(VENV_BIN / "ssh-audit"), "-n", "-P", POLICY, ip_of("bastion")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Passed" in result.stdout


def test_sshd_and_banner(bastion):
    assert bastion.service("ssh").is_running
    assert bastion.service("ssh").is_enabled
    assert "Authorised access only" in bastion.file("/etc/ssh/sshd-banner").content_string


# What a real client that offers only a weak algorithm gets, beside a positive control: the same client
# with an algorithm of the policy logs in (the refusals are the policy's, not a broken connection).
WEAK_OFFERS = [
    (("-o", "Ciphers=aes128-cbc"), "cipher"),
    (("-o", "Ciphers=aes256-ctr", "-o", "MACs=hmac-sha1"), "MAC"),  # a MAC is negotiated for non-AEAD ciphers
    (("-o", "KexAlgorithms=diffie-hellman-group14-sha1"), "key exchange method"),
    (("-o", "HostKeyAlgorithms=ssh-rsa"), "host key type"),  # RSA with SHA-1 signatures
]


def test_weak_algorithms_are_refused_to_a_real_client(ssh):
    bastion_ip = ip_of("bastion")
    for options, what in WEAK_OFFERS:
        # "Unable to negotiate ..." is logged at INFO (the scenario's config says ERROR).
        result = ssh("-o", "LogLevel=INFO", *options, bastion_ip, "true")
        assert result.returncode == 255, (options, result.stderr)
        assert f"no matching {what} found" in result.stderr, (options, result.stderr)
    for options in (("-o", "Ciphers=aes256-ctr", "-o", "MACs=hmac-sha2-256-etm@openssh.com"),
                    ("-o", "KexAlgorithms=curve25519-sha256", "-o", "HostKeyAlgorithms=ssh-ed25519")):
        control = ssh(*options, bastion_ip, "true")
        assert control.returncode == 0, (options, control.stderr)
