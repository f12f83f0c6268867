"""bastion_hop.py with two bastions (bastion_per_az), against a fake ssh whose every bastion answers as told: the
first that works carries the connection, a failed one is remembered next to its socket and skipped for the
failure memory, and when every bastion fails the message names each one and why."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from ansible_collections.fumidai.vpc.plugins.module_utils import bastion_hop

HOP = Path(bastion_hop.__file__)  # run by path, as the inventory's ProxyCommand runs it
FIRST, SECOND = "192.0.2.1", "192.0.2.2"
FIRST_ID, SECOND_ID = "i-0aaaaaaaaaaaaaaa1", "i-0bbbbbbbbbbbbbbb2"

# How each bastion answers the master's login: FAKE_SSH_PLAN = {"<address>": "ok" | "timeout" | "refuse" | "hostkey"}.
FAKE_SSH = r'''#!/usr/bin/env python3
import json, os, subprocess, sys, time
args = sys.argv[1:]
with open(os.environ["FAKE_SSH_LOG"], "a") as f:
    f.write(json.dumps(args) + "\n")
control = next(a.split("=", 1)[1] for a in args if a.startswith("ControlPath="))
address = args[-1].split("@", 1)[1]
if "ControlMaster=yes" in args:
    answer = json.loads(os.environ["FAKE_SSH_PLAN"]).get(address, "ok")
    if answer == "timeout":
        time.sleep(0.3)
        sys.stderr.write(f"ssh: connect to host {address} port 22: Connection timed out\n")
        sys.exit(255)
    if answer == "refuse":
        sys.stderr.write(f"ssh: connect to host {address} port 22: Connection refused\n")
        sys.exit(255)
    if answer == "hostkey":
        sys.stderr.write("Host key verification failed.\n")
        sys.exit(255)
    # Like ssh -f: the master listens in the background (for a few seconds, as with ControlPersist).
    serve = ("import socket, sys\ns = socket.socket(socket.AF_UNIX)\ns.bind(sys.argv[1])\ns.listen(64)\n"
             "s.settimeout(3)\ntry:\n    while True:\n        s.accept()[0].close()\nexcept OSError:\n    pass\n")
    subprocess.Popen([sys.executable, "-c", serve, control], start_new_session=True, stdin=subprocess.DEVNULL,
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while not os.path.exists(control):
        time.sleep(0.01)
    sys.exit(0)
print("forwarded", args[args.index("-W") + 1], "via", args[-1])
'''


class Hops:
    """Runs the hop as the inventory writes it for two bastions, with the fake ssh; keeps its calls."""

    def __init__(self, tmp_path: Path, memory: int = 300):
        self.tmp = tmp_path
        self.fake = tmp_path / "ssh"
        self.fake.write_text(FAKE_SSH)
        self.fake.chmod(0o755)
        self.log = tmp_path / "ssh.log"
        self.cp = tmp_path / "cp, dir"  # a comma in the directory: the socket path is the --bastion's last field
        self.sockets = {FIRST: self.cp / "fumidai-hop-first", SECOND: self.cp / "fumidai-hop-second"}
        self.memory = memory

    def marker(self, address: str) -> Path:
        return Path(str(self.sockets[address]) + ".failed")

    def run(self, plan: dict, target: str = "10.0.11.5") -> subprocess.CompletedProcess:
        command = [sys.executable, str(HOP), "--ssh", str(self.fake), "--persist", "30s", "--connect-timeout", "4",
                   "--failure-memory", str(self.memory), "--option", "StrictHostKeyChecking=yes",
                   "--bastion", f"admin@{FIRST},22,{FIRST_ID},{self.sockets[FIRST]}",
                   "--bastion", f"admin@{SECOND},2222,{SECOND_ID},{self.sockets[SECOND]}", target, "22"]
        env = {"FAKE_SSH_LOG": str(self.log), "FAKE_SSH_PLAN": json.dumps(plan), "PATH": "/usr/bin:/bin"}
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)

    def calls(self) -> list[list[str]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def masters(self) -> list[str]:
        """The bastions a master login was attempted to, in order."""
        return [c[-1].split("@", 1)[1] for c in self.calls() if "ControlMaster=yes" in c]

    def forwarded(self) -> list[list[str]]:
        return [c for c in self.calls() if "-W" in c]

    def reset_log(self) -> None:
        self.log.unlink(missing_ok=True)


def test_both_up_the_first_carries_the_connection(tmp_path):
    hops = Hops(tmp_path)
    result = hops.run({})
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["forwarded", "10.0.11.5:22", "via", f"admin@{FIRST}"]
    assert hops.masters() == [FIRST]
    master = next(c for c in hops.calls() if "ControlMaster=yes" in c)
    # The bastion's own pin, first (ssh keeps an option's first value), then the shared options.
    assert master[master.index("-o", master.index("BatchMode=yes") + 2) + 1] == f"HostKeyAlias={FIRST_ID}"
    assert "StrictHostKeyChecking=yes" in master and "ConnectTimeout=4" in master
    assert f"ControlPath={hops.sockets[FIRST]}" in master
    assert not hops.marker(FIRST).exists()


def test_first_times_out_marker_written_second_used(tmp_path):
    hops = Hops(tmp_path)
    result = hops.run({FIRST: "timeout"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-1] == f"admin@{SECOND}"
    assert hops.masters() == [FIRST, SECOND]
    second = [c for c in hops.calls() if "ControlMaster=yes" in c][1]
    assert f"HostKeyAlias={SECOND_ID}" in second and second[second.index("-p") + 1] == "2222"
    assert f"ControlPath={hops.sockets[SECOND]}" in second
    forwarded = hops.forwarded()
    assert len(forwarded) == 1 and f"ControlPath={hops.sockets[SECOND]}" in forwarded[0]
    assert "Connection timed out" in hops.marker(FIRST).read_text()
    assert not hops.marker(SECOND).exists()
    # A person's plain ssh sees why (Ansible's ssh with ControlPersist discards a ProxyCommand's stderr).
    assert f"admin@{FIRST} ({FIRST_ID}) failed" in result.stderr
    assert f"going through admin@{SECOND} instead" in result.stderr


def test_a_refusing_first_bastion_falls_back_too(tmp_path):
    hops = Hops(tmp_path)
    result = hops.run({FIRST: "refuse"})
    assert result.returncode == 0 and result.stdout.split()[-1] == f"admin@{SECOND}", result.stderr
    assert "Connection refused" in hops.marker(FIRST).read_text()


def test_a_remembered_failure_is_skipped_without_trying(tmp_path):
    hops = Hops(tmp_path, memory=300)
    assert hops.run({FIRST: "timeout"}).returncode == 0
    hops.reset_log()
    # The first bastion would answer now, but its failure is 0 s old, younger than the memory: not tried.
    for target in ("10.0.11.6", "10.0.12.7"):
        result = hops.run({}, target)
        assert result.returncode == 0, result.stderr
        assert result.stdout.split()[-1] == f"admin@{SECOND}"
    assert hops.masters() == []  # bastion-2's master is up: no login at all, and none to the first
    assert all(f"ControlPath={hops.sockets[SECOND]}" in c for c in hops.forwarded())
    assert len(hops.forwarded()) == 2


def test_an_old_failure_is_tried_again(tmp_path):
    hops = Hops(tmp_path, memory=60)
    assert hops.run({FIRST: "timeout"}).returncode == 0
    marker = hops.marker(FIRST)
    old = time.time() - 120
    os.utime(marker, (old, old))  # older than the memory
    hops.reset_log()
    result = hops.run({})
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-1] == f"admin@{FIRST}"
    assert hops.masters() == [FIRST]
    assert not marker.exists()  # a master that opens clears its failure


def test_every_bastion_failing_names_each_and_why(tmp_path):
    hops = Hops(tmp_path)
    result = hops.run({FIRST: "timeout", SECOND: "hostkey"})
    assert result.returncode == 255
    assert hops.masters() == [FIRST, SECOND] and hops.forwarded() == []
    assert "no bastion could carry the connection to 10.0.11.5 (2 tried, in order)" in result.stderr
    first, second = result.stderr.index(f"admin@{FIRST} ({FIRST_ID})"), result.stderr.index(
        f"admin@{SECOND} ({SECOND_ID})")
    assert first < second
    assert "Connection timed out" in result.stderr[first:second]
    assert "did not present the SSH host key pinned for it" in result.stderr[second:]
    # The one line ssh always shows points to the file with the whole story.
    summary = Path(str(hops.sockets[FIRST]) + ".all-failed")
    assert result.stdout.startswith("SSH-fumidai-hop: no bastion answered; one did not present its pinned host key")
    assert str(summary) in result.stdout and "Connection timed out" in summary.read_text()
    # Both failures are remembered: the next hop tries neither and says so.
    hops.reset_log()
    again = hops.run({})
    assert again.returncode == 255 and hops.masters() == []
    assert "Connection timed out" in again.stderr and "Host key verification failed" in again.stderr


def test_memory_zero_tries_every_bastion_every_time(tmp_path):
    hops = Hops(tmp_path, memory=0)
    assert hops.run({FIRST: "refuse"}).returncode == 0
    hops.reset_log()
    result = hops.run({FIRST: "refuse"}, "10.0.11.9")
    assert result.returncode == 0 and hops.masters() == [FIRST]  # tried again; bastion-2's master is up already


def test_two_bastion_command_line_is_parsed_without_argparse(tmp_path):
    probe = """
import sys
from ansible_collections.fumidai.vpc.plugins.module_utils import bastion_hop as hop
args = hop.parse_args(["--persist", "30s", "--connect-timeout", "5", "--failure-memory", "300", "--option", "A=1",
                       "--bastion", "admin@192.0.2.1,22,i-0aaaaaaaaaaaaaaa1,/c,p/1",
                       "--bastion", "admin@192.0.2.2,22,i-0bbbbbbbbbbbbbbb2,/c p/2", "10.0.11.5", "22"])
print("argparse" in sys.modules, args.bastion, args.connect_timeout, args.failure_memory, args.target_host)
print([(b.login, b.port, b.control_path, b.option) for b in hop.each_bastion(args)])
"""
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.splitlines()
    assert out[0] == ("False ['admin@192.0.2.1,22,i-0aaaaaaaaaaaaaaa1,/c,p/1', "
                      "'admin@192.0.2.2,22,i-0bbbbbbbbbbbbbbb2,/c p/2'] 5 300 10.0.11.5")
    assert out[1] == ("[('admin@192.0.2.1', '22', '/c,p/1', ['HostKeyAlias=i-0aaaaaaaaaaaaaaa1', 'A=1']), "
                      "('admin@192.0.2.2', '22', '/c p/2', ['HostKeyAlias=i-0bbbbbbbbbbbbbbb2', 'A=1'])]")
    # Malformed: argparse explains (a bastion without its instance ID, a bastion and a --control-path).
    for bad in (["--bastion", "admin@192.0.2.1,22,/c", "h", "22"],
                ["--bastion", "admin@192.0.2.1,22,i-0aaaaaaaaaaaaaaa1,/c", "--control-path", "/d", "h", "22"],
                ["--bastion", "admin@192.0.2.1,22,i-0aaaaaaaaaaaaaaa1,/c", "admin@x", "h", "22"]):
        typo = subprocess.run([sys.executable, str(HOP), *bad], capture_output=True, text=True)
        assert typo.returncode == 2 and "--bastion" in typo.stderr, typo.stderr
    # Positive control: the same through argparse when a word forces it (an unknown option is refused there).
    usage = subprocess.run([sys.executable, str(HOP), "--help"], capture_output=True, text=True)
    assert usage.returncode == 0 and "--failure-memory" in usage.stdout and "--bastion" in usage.stdout
