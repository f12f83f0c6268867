"""Who gets in, and jumping through the bastion (plain and multiplexed)."""

from __future__ import annotations

import subprocess
from concurrent.futures import ThreadPoolExecutor

from conftest import BASTION_VARS, ip_of

BASTION = ip_of("bastion")
PRIVATE = ip_of("private")
OUTSIDER = ip_of("outsider")
REFUSED_BY_SSHD = "administratively prohibited"
# The client reports a refused channel at INFO (the scenario's config says ERROR).
VERBOSE = ("-o", "LogLevel=INFO")


def test_key_login_works(ssh):
    result = ssh(BASTION, "id -un")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "admin"


def test_password_login_refused(ssh):
    result = ssh(
        "-o", "PubkeyAuthentication=no",
        "-o", "PreferredAuthentications=password,keyboard-interactive",
        BASTION, "true",
    )  # fmt: skip
    assert result.returncode == 255
    # The server offers nothing but publickey.
    assert "Permission denied (publickey)" in result.stderr


def test_root_refused_even_with_an_authorised_key(ssh, bastion):
    # prepare.yml authorised the same key for root: the refusal is PermitRootLogin's.
    assert bastion.file("/root/.ssh/authorized_keys").contains("molecule-bastion")
    result = ssh("-l", "root", BASTION, "true")
    assert result.returncode == 255
    assert "Permission denied" in result.stderr


def test_remote_forwarding_refused(ssh):
    result = ssh("-o", "ExitOnForwardFailure=yes", "-R", "0:127.0.0.1:22", BASTION, "true")
    assert result.returncode != 0


def test_agent_forwarding_not_granted(ssh):
    # With -A the client asks for forwarding; the bastion must not expose a socket.
    result = ssh("-A", BASTION, 'echo "sock=${SSH_AUTH_SOCK:-none}"')
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "sock=none"


def test_proxyjump_to_a_private_host(ssh, private):
    result = ssh("-J", BASTION, PRIVATE, "hostname")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == private.check_output("hostname")


def test_jump_to_a_private_host_with_w(ssh, private):
    """The hop Ansible uses (ssh -W host:22), allowed by PermitOpen."""
    result = ssh("-W", f"{PRIVATE}:22", BASTION)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("SSH-2.0-OpenSSH"), result.stdout  # the private host's sshd answered


def test_jump_to_another_port_of_a_private_host_is_refused_by_sshd(ssh, private):
    """Not a general TCP relay: port 80 of a host in the list is refused by the bastion's sshd.

    Something listens there, so a refusal cannot be a closed port on the target.
    """
    private.check_output("systemd-run --unit=fumidai-mol-listener -- python3 -m http.server 80")
    try:
        assert private.run("timeout 20 sh -c 'until ss -Htln | grep -q :80; do sleep 0.2; done'").rc == 0
        result = ssh(*VERBOSE, "-W", f"{PRIVATE}:80", BASTION)
        assert result.returncode == 255
        assert REFUSED_BY_SSHD in result.stderr, result.stderr
        assert "SSH-2.0" not in result.stdout and "HTTP" not in result.stdout
    finally:
        private.run("systemctl stop fumidai-mol-listener")


def test_jump_to_an_address_not_in_the_list_is_refused_by_sshd(ssh, outsider):
    """Port 22 of a host outside PermitOpen (the outsider, in another VPC), or the bastion itself."""
    assert outsider.service("ssh").is_running
    for target in (f"{OUTSIDER}:22", "127.0.0.1:22", f"{BASTION}:22"):
        result = ssh(*VERBOSE, "-W", target, BASTION)
        assert result.returncode == 255, target
        assert REFUSED_BY_SSHD in result.stderr, (target, result.stderr)
        assert "SSH-2.0" not in result.stdout, target
    # The same through ProxyJump, as a person would try it (the jump ssh reads
    # the scenario's LogLevel ERROR: it says only that its channel was refused).
    result = ssh("-J", BASTION, OUTSIDER, "true")
    assert result.returncode == 255
    assert "stdio forwarding failed" in result.stderr, result.stderr


def test_multiplexed_fanout_from_a_non_admin_source_is_not_limited(outsider, bastion):
    """forks hosts through ONE TCP connection: the per-source rate limit never sees them.

    The outsider is not in admin_cidrs, so it is subject to the rate limit
    (burst 10); the fan-out is wider than that and must still fully succeed.
    """
    forks = BASTION_VARS["bastion_fanout_forks"]
    opts = "-i /root/id_ed25519 -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null"
    socket = "/tmp/bastion-hop"
    outsider.run(f"ssh -S {socket} -O exit admin@{BASTION}")
    outsider.check_output(f"ssh {opts} -M -S {socket} -o ControlPersist=120 -fN admin@{BASTION}")
    try:
        hop = f"-o ProxyCommand='ssh -S {socket} -W %h:%p admin@{BASTION}'"
        cmd = f"ssh {opts} -o LogLevel=ERROR {hop} admin@{PRIVATE} 'echo ok'"
        script = f"for i in $(seq {forks}); do ({cmd}) & done; wait"
        out = outsider.check_output(script)
        assert out.split() == ["ok"] * forks
        # One established TCP connection from the outsider carried all of it.
        conns = bastion.check_output(f"ss -Htn state established '( sport = :22 )' dst {ip_of('outsider')}")
        assert len(conns.splitlines()) == 1
    finally:
        outsider.run(f"ssh -S {socket} -O exit admin@{BASTION}")


def test_max_sessions_fit_the_forks(ssh, ssh_config, tmp_path):
    """forks concurrent session channels (e.g. delegate_to the bastion) on one connection."""
    forks = BASTION_VARS["bastion_fanout_forks"]
    socket = tmp_path / "cm"
    master = ssh("-M", "-S", str(socket), "-o", "ControlPersist=60", "-fN", BASTION)
    assert master.returncode == 0, master.stderr
    try:

        def session(i: int) -> subprocess.CompletedProcess:
            return ssh("-S", str(socket), BASTION, f"sleep 2; echo {i}")

        with ThreadPoolExecutor(max_workers=forks) as pool:
            results = list(pool.map(session, range(forks)))
        assert [r.returncode for r in results] == [0] * forks, [r.stderr for r in results if r.returncode]
    finally:
        ssh("-S", str(socket), "-O", "exit", BASTION)
