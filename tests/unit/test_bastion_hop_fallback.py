"""bastion_hop.py with two bastions (bastion_per_az), against a fake ssh whose every bastion answers as told: the
first that works carries the connection, a failed one is remembered next to its socket and skipped for the
failure memory, and when every bastion fails the message names each one and why. A bastion that answers while its
forward to the target stays silent or is refused is passed over the same way (per target), and the forward that
answers is relayed byte for byte; with one bastion the hop still execs ssh."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest
from ansible_collections.fumidai.vpc.plugins.module_utils import bastion_hop

HOP = Path(bastion_hop.__file__)  # run by path, as the inventory's ProxyCommand runs it
FIRST, SECOND = "192.0.2.1", "192.0.2.2"
FIRST_ID, SECOND_ID = "i-0aaaaaaaaaaaaaaa1", "i-0bbbbbbbbbbbbbbb2"

# How each bastion answers the master's login: FAKE_SSH_PLAN = {"<address>": "ok" | "timeout" | "refuse" | "hostkey"}.
# How its forward (-W) behaves: FAKE_FORWARD_PLAN = {"<address>" or "<address> <target>": "print" (the default) |
# "silent" (the target's firewall drops: nothing, ever) | "refuse" (PermitOpen) | "echo" (an SSH server: a banner,
# then the client's bytes back, and at the client's EOF how many, exit 3) | "pid" (its own process ID)}.
BANNER = b"SSH-2.0-fake-target\r\n"
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
target = args[args.index("-W") + 1]
plan = json.loads(os.environ.get("FAKE_FORWARD_PLAN", "{}"))
mode = plan.get(f"{address} {target}", plan.get(address, "print"))
if mode == "silent":
    with open(os.environ["FAKE_SSH_LOG"] + ".silent", "a") as f:
        f.write(f"{os.getpid()}\n")
    time.sleep(60)
if mode == "refuse":
    sys.stderr.write("channel 0: open failed: administratively prohibited: open failed\nstdio forwarding failed\n")
    sys.exit(255)
if mode == "pid":
    print(os.getpid())
    sys.exit(0)
if mode == "echo":
    out = sys.stdout.buffer
    out.write(b"SSH-2.0-fake-target\r\n")
    out.flush()
    total = 0
    while data := os.read(0, 1 << 20):
        total += len(data)
        out.write(data)
        out.flush()
    out.write(f"EOF after {total} bytes\n".encode())
    sys.exit(3)
print("forwarded", target, "via", args[-1])
'''


class Hops:
    """Runs the hop as the inventory writes it for two bastions, with the fake ssh; keeps its calls."""

    def __init__(self, tmp_path: Path, memory: int = 300, timeout: int = 4):
        self.tmp = tmp_path
        self.fake = tmp_path / "ssh"
        self.fake.write_text(FAKE_SSH)
        self.fake.chmod(0o755)
        self.log = tmp_path / "ssh.log"
        self.cp = tmp_path / "cp, dir"  # a comma in the directory: the socket path is the --bastion's last field
        self.sockets = {FIRST: self.cp / "fumidai-hop-first", SECOND: self.cp / "fumidai-hop-second"}
        self.memory, self.timeout = memory, timeout

    def marker(self, address: str) -> Path:
        return Path(str(self.sockets[address]) + ".failed")

    def command(self, target: str = "10.0.11.5", bastions: tuple = (FIRST, SECOND)) -> list[str]:
        specs = {FIRST: f"admin@{FIRST},22,{FIRST_ID},{self.sockets[FIRST]}",
                 SECOND: f"admin@{SECOND},2222,{SECOND_ID},{self.sockets[SECOND]}"}
        return [sys.executable, str(HOP), "--ssh", str(self.fake), "--persist", "30s",
                "--connect-timeout", str(self.timeout), "--failure-memory", str(self.memory),
                "--option", "StrictHostKeyChecking=yes",
                *[word for b in bastions for word in ("--bastion", specs[b])], target, "22"]

    def env(self, plan: dict, forward: dict | None = None) -> dict:
        return {"FAKE_SSH_LOG": str(self.log), "FAKE_SSH_PLAN": json.dumps(plan),
                "FAKE_FORWARD_PLAN": json.dumps(forward or {}), "PATH": "/usr/bin:/bin"}

    def run(self, plan: dict, target: str = "10.0.11.5", forward: dict | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(self.command(target), env=self.env(plan, forward), capture_output=True, text=True,
                              timeout=60)

    def relay(self, forward: dict, payload: bytes = b"", target: str = "10.0.11.5") -> tuple[subprocess.Popen, float]:
        """The hop as the outer ssh runs it: ``payload`` written at once (before the target speaks), then EOF."""
        started = time.monotonic()
        proc = subprocess.Popen(self.command(target), env=self.env({}, forward), stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        proc.out, proc.err = proc.communicate(payload, timeout=120)
        return proc, time.monotonic() - started

    def forward_marker(self, address: str, target: str = "10.0.11.5") -> Path:
        return Path(f"{self.sockets[address]}.failed-{target}:22")

    def forwarded_via(self) -> list[str]:
        """The bastions a forward (-W) went through, in order."""
        return [c[-1].split("@", 1)[1] for c in self.forwarded()]

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


# --- the forward behind an answering bastion -------------------------------------------------------------------

def echoed(payload: bytes) -> bytes:
    """What the client reads from an echoing target that got ``payload`` and then the client's EOF."""
    return BANNER + payload + f"EOF after {len(payload)} bytes\n".encode()


def test_a_silent_forward_falls_back_remembered_per_target(tmp_path):
    hops = Hops(tmp_path, timeout=2)
    payload = os.urandom(200_000)  # the client speaks at once: its bytes must wait, unread, for the bastion that works
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc, took = hops.relay({FIRST: "silent", SECOND: "echo"}, payload)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    assert proc.returncode == 3, proc.err  # the forward's own status
    assert proc.out == echoed(payload)
    assert took >= 2 and hops.forwarded_via() == [FIRST, SECOND] and hops.masters() == [FIRST, SECOND]
    # Waiting is not spinning: the hop and the fakes used little CPU over the two seconds.
    assert (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime) < 1.2
    silent = int(Path(str(hops.log) + ".silent").read_text())
    with pytest.raises(ProcessLookupError):  # killed and waited for, not left behind
        os.kill(silent, 0)
    # Remembered for this target through this bastion; the bastion itself is fine.
    marker = hops.forward_marker(FIRST)
    assert "forward timed out (the target sent nothing within 2s)" in marker.read_text()
    assert not hops.marker(FIRST).exists() and not hops.forward_marker(SECOND).exists()
    err = proc.err.decode()
    assert f"admin@{FIRST} ({FIRST_ID}) answered, but its forward to 10.0.11.5:22 failed" in err
    assert f"going through admin@{SECOND} instead" in err

    # Within the memory the first is not asked again for this target (it would answer now): no wait.
    hops.reset_log()
    again, quick = hops.relay({FIRST: "echo", SECOND: "echo"}, b"again")
    assert again.returncode == 3 and again.out == echoed(b"again"), again.err
    assert hops.forwarded_via() == [SECOND] and quick < 2
    # Positive control: another target still goes through the first bastion, which answers for it.
    hops.reset_log()
    other, _ = hops.relay({FIRST: "echo"}, b"other", target="10.0.12.7")
    assert other.returncode == 3 and other.out == echoed(b"other") and hops.forwarded_via() == [FIRST]
    # Once the memory has passed, the first is tried again for this target, and its success clears the marker.
    old = time.time() - 600
    os.utime(marker, (old, old))
    hops.reset_log()
    later, _ = hops.relay({FIRST: "echo"}, b"later")
    assert later.out == echoed(b"later") and hops.forwarded_via() == [FIRST] and not marker.exists()


def test_a_refused_forward_falls_back_at_once(tmp_path):
    hops = Hops(tmp_path, timeout=10)
    proc, took = hops.relay({FIRST: "refuse", SECOND: "echo"}, b"hello")
    assert proc.returncode == 3 and proc.out == echoed(b"hello"), proc.err
    assert hops.forwarded_via() == [FIRST, SECOND] and took < 10  # no waiting for the timeout
    why = hops.forward_marker(FIRST).read_text()
    assert "forward refused (ssh exited 255 before the target spoke)" in why
    assert "administratively prohibited" in why


def test_the_relay_is_exact_both_ways_with_the_clients_half_close(tmp_path):
    hops = Hops(tmp_path)
    payload = os.urandom(3 * 1024 * 1024 + 17)
    proc, _ = hops.relay({FIRST: "echo"}, payload)
    # Every byte back in order, and the trailer the target writes only after the client's EOF reached it.
    assert proc.out == echoed(payload), (len(proc.out), proc.err)
    assert proc.returncode == 3 and hops.forwarded_via() == [FIRST]
    # Positive control for the status: a forward that exits 0 gives 0.
    plain = hops.run({}, forward={FIRST: "print"})
    assert plain.returncode == 0 and plain.stdout.split()[-1] == f"admin@{FIRST}"


def test_one_bastion_execs_ssh_and_two_relay(tmp_path):
    hops = Hops(tmp_path)

    def pid_seen(command: list[str]) -> tuple[int, int]:
        proc = subprocess.Popen(command, env=hops.env({}, {FIRST: "pid", SECOND: "pid"}), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        return proc.pid, int(out)

    single = [sys.executable, str(HOP), "--ssh", str(hops.fake), "--control-path", str(hops.sockets[FIRST]),
              "--persist", "30s", "--port", "22", "--option", f"HostKeyAlias={FIRST_ID}", f"admin@{FIRST}",
              "10.0.11.5", "22"]
    hop, ssh = pid_seen(single)
    assert hop == ssh  # the hop became ssh: no relay in between
    hop, ssh = pid_seen(hops.command(bastions=(FIRST,)))
    assert hop == ssh  # one --bastion: the same
    hop, ssh = pid_seen(hops.command())
    assert hop != ssh  # two: ssh is the hop's child, relayed


def test_every_forward_failing_names_both_bastions_and_why(tmp_path):
    hops = Hops(tmp_path, timeout=1)
    proc, _ = hops.relay({FIRST: "silent", SECOND: "refuse"}, b"lost?")
    err = proc.err.decode()
    assert proc.returncode == 255, err
    assert "no bastion could carry the connection to 10.0.11.5 (2 tried, in order)" in err
    first = err.index(f"admin@{FIRST} ({FIRST_ID}) answered")
    second = err.index(f"admin@{SECOND} ({SECOND_ID}) answered")
    assert first < second
    assert "forward timed out" in err[first:second] and "forward refused" in err[second:]
    assert "administratively prohibited" in err[second:]
    summary = Path(str(hops.sockets[FIRST]) + ".all-failed")
    assert proc.out.decode().startswith(f"SSH-fumidai-hop: no bastion could forward to the target; see {summary}")
    # Both remembered: the next hop tries neither forward and still says why.
    hops.reset_log()
    again, took = hops.relay({FIRST: "echo", SECOND: "echo"})
    assert again.returncode == 255 and hops.forwarded() == [] and took < 1
    assert "forward timed out" in again.err.decode() and "forward refused" in again.err.decode()


def test_one_not_answering_one_refusing_each_named_with_its_reason(tmp_path):
    hops = Hops(tmp_path)
    result = hops.run({FIRST: "refuse"}, forward={SECOND: "refuse"})
    assert result.returncode == 255
    assert result.stdout.startswith("SSH-fumidai-hop: no bastion could forward to the target")
    assert f"admin@{FIRST} ({FIRST_ID}) failed" in result.stderr and "Connection refused" in result.stderr
    assert f"admin@{SECOND} ({SECOND_ID}) answered, but its forward" in result.stderr


def test_a_target_that_is_not_an_address_falls_back_unremembered(tmp_path):
    hops = Hops(tmp_path)
    proc, _ = hops.relay({FIRST: "refuse", SECOND: "echo"}, b"x", target="web01.internal")
    assert proc.returncode == 3 and proc.out == echoed(b"x"), proc.err
    assert hops.forwarded_via() == [FIRST, SECOND]
    assert not [p for p in hops.cp.iterdir() if ".failed-" in p.name]  # no file named after it
    # Positive control: with an address the same failure is remembered.
    hops.relay({FIRST: "refuse", SECOND: "echo"}, b"x", target="10.0.11.8")
    assert hops.forward_marker(FIRST, "10.0.11.8").exists()


def test_relay_throughput_64_mib(tmp_path, capsys):
    """Not a pass mark: the figure for the report, the hop's relay against the fake target reached directly."""
    hops = Hops(tmp_path)
    payload = os.urandom(64 * 1024 * 1024)
    hops.relay({FIRST: "echo"}, b"warm")  # the master is up: what follows is the forward alone
    proc, relayed = hops.relay({FIRST: "echo"}, payload)
    assert proc.out == echoed(payload)
    started = time.monotonic()
    direct = subprocess.run([str(hops.fake), "-o", f"ControlPath={hops.sockets[FIRST]}", "-W", "10.0.11.5:22",
                             f"admin@{FIRST}"], env=hops.env({}, {FIRST: "echo"}), input=payload, capture_output=True)
    alone = time.monotonic() - started
    assert direct.stdout == echoed(payload)
    with capsys.disabled():
        print(f"\nrelay 64 MiB each way: through the hop {relayed:.2f} s, the fake target alone {alone:.2f} s")
