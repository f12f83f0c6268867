"""plugins/module_utils/bastion_hop.py, the ProxyCommand wrapper, with a fake ssh that records what it is asked to do:
parallel cold hops open the bastion master exactly once, and a failing bastion is tried once, not once
per queued hop. (The same against real sshd: tests/integration/test_inventory.py.)"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

from ansible_collections.fumidai.vpc.plugins.module_utils import bastion_hop

HOP = Path(bastion_hop.__file__)  # run by path, as the inventory's ProxyCommand runs it

FAKE_SSH = r'''#!/usr/bin/env python3
import json, os, socket, sys, time
args = sys.argv[1:]
log = os.environ["FAKE_SSH_LOG"]
control = next(a.split("=", 1)[1] for a in args if a.startswith("ControlPath="))
with open(log, "a") as f:
    f.write(json.dumps(args) + "\n")
if "-O" in args:                      # ssh -O check: is the master there?
    sys.exit(0 if os.path.exists(control) else 255)
if "ControlMaster=yes" in args:       # ssh -M -N -f: open the master
    time.sleep(1)                     # authentication takes a while: the other hops queue meanwhile
    if os.environ.get("FAKE_SSH_FAIL"):
        sys.stderr.write("ssh: connect to host 192.0.2.1 port 22: Connection refused\n")
        sys.exit(255)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(control)            # like ssh -f: the master listens, in the background
    listener.listen(64)
    if os.fork() == 0:
        os.setsid()
        for fd in (0, 1, 2):
            os.close(fd)
        listener.settimeout(5)        # a master with ControlPersist: gone after a while
        try:
            while True:
                listener.accept()[0].close()
        except OSError:
            os._exit(0)
    sys.exit(0)
print("forwarded", args[args.index("-W") + 1])   # ssh -W through the master
'''


def run_hops(tmp_path: Path, count: int, fail: bool = False) -> tuple[list[subprocess.CompletedProcess], list]:
    fake = tmp_path / "ssh"
    fake.write_text(FAKE_SSH)
    fake.chmod(0o755)
    log = tmp_path / "ssh.log"
    control = tmp_path / "cp dir" / "fumidai-hop-abc"
    env = {"FAKE_SSH_LOG": str(log), "PATH": "/usr/bin:/bin", **({"FAKE_SSH_FAIL": "1"} if fail else {})}
    procs = [subprocess.Popen([sys.executable, str(HOP), "--ssh", str(fake), "--control-path", str(control),
                               "--persist", "30s", "--identity", "/k ey", "--option", "StrictHostKeyChecking=no",
                               "admin@192.0.2.1", f"10.0.11.{n}", "22"],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for n in range(count)]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        results.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    return results, calls


def test_parallel_cold_hops_open_one_master(tmp_path):
    results, calls = run_hops(tmp_path, 12)
    assert [r.returncode for r in results] == [0] * 12, [r.stderr for r in results]
    assert sorted(r.stdout.split()[1] for r in results) == sorted(f"10.0.11.{n}:22" for n in range(12))
    masters = [c for c in calls if "ControlMaster=yes" in c]
    assert len(masters) == 1
    master = masters[0]
    assert master[-3:] == ["-N", "-f", "admin@192.0.2.1"]
    assert "ControlPersist=30s" in master and "StrictHostKeyChecking=no" in master
    assert master[master.index("-i") + 1] == "/k ey" and master[master.index("-p") + 1] == "22"
    hops = [c for c in calls if "-W" in c]
    assert len(hops) == 12
    control = f"ControlPath={tmp_path / 'cp dir' / 'fumidai-hop-abc'}"
    assert all(control in c and "ControlMaster=no" in c and c[-1] == "admin@192.0.2.1" for c in hops)


def test_failing_bastion_is_tried_once_and_every_hop_says_why(tmp_path):
    results, calls = run_hops(tmp_path, 6, fail=True)
    assert [r.returncode for r in results] == [255] * 6
    for result in results:
        assert "cannot open the shared connection to admin@192.0.2.1" in result.stderr
        assert "Connection refused" in result.stderr
    assert len([c for c in calls if "ControlMaster=yes" in c]) == 1
    assert not [c for c in calls if "-W" in c]


def test_ipv6_targets_are_bracketed(tmp_path):
    fake = tmp_path / "ssh"
    fake.write_text(FAKE_SSH)
    fake.chmod(0o755)
    control = tmp_path / "m"
    master = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)  # a live master: it listens
    master.bind(str(control))
    master.listen(1)
    out = subprocess.run([sys.executable, str(HOP), "--ssh", str(fake), "--control-path", str(control),
                          "admin@192.0.2.1", "2001:db8::5", "22"],
                         env={"FAKE_SSH_LOG": str(tmp_path / "log"), "PATH": "/usr/bin:/bin"},
                         capture_output=True, text=True, check=True).stdout
    master.close()
    assert out.split()[1] == "[2001:db8::5]:22"


def test_live_master_costs_one_ssh_and_no_check(tmp_path):
    """The per-connection path: the master answers on its socket, so the only ssh started is -W."""
    fake = tmp_path / "ssh"
    fake.write_text(FAKE_SSH)
    fake.chmod(0o755)
    control, log = tmp_path / "m", tmp_path / "log"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as master:
        master.bind(str(control))
        master.listen(1)
        subprocess.run([sys.executable, str(HOP), "--ssh", str(fake), "--control-path", str(control),
                        "admin@192.0.2.1", "10.0.11.5", "22"],
                       env={"FAKE_SSH_LOG": str(log), "PATH": "/usr/bin:/bin"}, capture_output=True, check=True)
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(calls) == 1 and "-W" in calls[0] and "-O" not in calls[0]


def test_socket_of_a_dead_master_is_replaced(tmp_path):
    """A socket file nobody listens on (its master was killed) is stale: the hop opens a new master."""
    control = tmp_path / "cp dir" / "fumidai-hop-abc"
    control.parent.mkdir()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as dead:
        dead.bind(str(control))  # bound, never listening, then closed: the file stays
    results, calls = run_hops(tmp_path, 3)
    assert [r.returncode for r in results] == [0] * 3, [r.stderr for r in results]
    assert len([c for c in calls if "ControlMaster=yes" in c]) == 1
    assert len([c for c in calls if "-W" in c]) == 3


def test_plugin_command_line_is_parsed_without_argparse_and_anything_else_with_it(tmp_path):
    probe = """
import sys
from ansible_collections.fumidai.vpc.plugins.module_utils import bastion_hop as hop
args = hop.parse_args(["--control-path", "/c p", "--persist", "30s", "--port", "2222", "--identity", "/k",
                       "--option", "A=1", "--option", "B=2", "admin@192.0.2.1", "10.0.11.5", "22"])
print("argparse" in sys.modules, args.control_path, args.persist, args.port, args.identity, args.option,
      args.login, args.target_host, args.target_port)
"""
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False /c p 30s 2222 /k ['A=1', 'B=2'] admin@192.0.2.1 10.0.11.5 22"
    usage = subprocess.run([sys.executable, str(HOP), "--help"], capture_output=True, text=True)
    assert usage.returncode == 0 and "--control-path" in usage.stdout
    typo = subprocess.run([sys.executable, str(HOP), "--control-pth", "/c", "a@b", "h", "22"],
                          capture_output=True, text=True)
    assert typo.returncode == 2 and "--control-path" in typo.stderr
