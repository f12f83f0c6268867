#!/usr/bin/env python3
"""Benchmark: fan-out through one bastion, with the real bastion_ec2 inventory.

    .venv/bin/python bench/fanout_bench.py --hosts 20            # forks = hosts, median of 5
    .venv/bin/python bench/fanout_bench.py --hosts 50 --repeat 2
    .venv/bin/python bench/fanout_bench.py --lab                 # the running lab's private hosts

Builds, with the lab's parts (lab.kinds' sshd_host kind, lab.podman, lab.hostnet's prohibit route), on
podman's default network, one bastion container (sshd at Debian's default ``MaxStartups 10:30:100``
unless --maxstartups says otherwise: "someone else's bastion") at 10.88.220.10 and N target containers
(sshd only) at 10.88.221.11.., and seeds a private moto server with the project's seeder
(tests/support/aws_seed.py, lab_plan) with the matching VPC: a public subnet routed to an internet
gateway for the bastion, a private subnet for the targets, instances whose private IPs are the
containers' addresses (tags Project=fumidai, Role, Name). The login user is the image's
(plugins/module_utils/login.py). The inventory is the project's own (inventory/aws.bastion_ec2.yml) with
FUMIDAI_BASTION_ADDRESS=private_ip.

With --lab it builds nothing and uses the lab that is up (``scripts/lab.sh up --web-count 20``): its web
servers behind its bastion (configured by site.yml), reached from the office range through the VPN, as
an admin would. For the run the bastion's sshd is set back to Debian's MaxStartups/MaxSessions (someone
else's bastion) and the web servers' security group also opens 22 to the office range (for the direct
mode, applied with ``python -m lab step net``); both are restored afterwards.

Then, in one run, it times ``ansible private -m ping -f N`` and a small playbook (gather facts, template
a file) in four modes, interleaved per repetition so machine load hits them alike:

  cold     the plugin's multiplexed hop, no bastion master open (every socket closed before the run)
  warm     the plugin's multiplexed hop, bastion master already open (as after configure.yml's first play)
  naive    ProxyJump: every host opens its own connection to the bastion (no shared master)
  direct   the targets reached without a bastion (the lower bound)

Each host's own Ansible master is closed before every run, in every mode, so only the hop differs.
Prints medians, ratios to direct, UNREACHABLE hosts, bastion logins and connections the bastion dropped
past MaxStartups. Asserts nothing: timings are not tests. Every subprocess has a timeout; containers,
the moto server, the masters and the prohibit routes are removed on the way out, also on failure.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import signal
import stat
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from ansible_collections.fumidai.vpc.plugins.module_utils import login

from lab import hostnet, moto_local, podman
from lab.hosts import container_args, write_node_files
from lab.render import sshd_host

ROOT = Path(__file__).resolve().parent.parent

BIN = Path(sys.executable).parent
BENCH_LABEL = "io.fumidai.bench"  # not the lab's label: `python -m lab down` leaves a running bench alone
# Address ranges given to this benchmark on podman's default network (10.88.0.0/16).
PODMAN_CIDR = "10.88.0.0/16"
BASTION_CIDR, TARGET_CIDR = "10.88.220.0/24", "10.88.221.0/24"
BASTION_IP = "10.88.220.10"
MODES = ("cold", "warm", "naive", "direct")
WORKLOADS = ("ping", "playbook")

PLAYBOOK = """---
- name: Fan-out benchmark - gather facts and template a file
  hosts: private
  gather_facts: true
  tasks:
    - name: Template a file from facts
      ansible.builtin.template:
        src: "{{ playbook_dir }}/motd.j2"
        dest: /tmp/fumidai-bench-motd
        mode: "0644"
"""
TEMPLATE = "{{ ansible_facts['hostname'] }} {{ ansible_facts['default_ipv4']['address'] | default('') }}\n"
RECAP = re.compile(r"^(\S+)\s+:\s+ok=\d+\s+changed=\d+\s+unreachable=(\d+)\s+failed=(\d+)", re.M)


def target_ips(count: int) -> list[str]:
    return [f"10.88.221.{11 + n}" for n in range(count)]


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.tag = uuid.uuid4().hex[:6]
        self.work = Path(tempfile.mkdtemp(prefix="fumidai-bench-"))
        # Short: unix socket paths are limited to ~104 bytes.
        self.control_dir = Path(tempfile.mkdtemp(prefix="fb", dir="/tmp"))
        self.key = self.work / "id_ed25519"
        self.containers: list[str] = []
        self.routes: list[str] = []
        self.moto: subprocess.Popen | None = None
        self.podman_env = self._podman_env()
        os.environ.update(self.podman_env)  # lab.podman runs podman in this process's environment
        self.env: dict[str, str] = {}
        # The login user of the image the seeder launches (debian12): what the inventory gives each host.
        self.user = login.login_user(login.DEFAULT_OS)

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def _podman_env() -> dict[str, str]:
        dump = subprocess.run(["bash", "-c", f". {ROOT / 'scripts' / 'podman-env.sh'} && env -0"],
                              capture_output=True, check=True, timeout=30).stdout.decode()
        return dict(item.split("=", 1) for item in dump.split("\0") if "=" in item)

    def bastion_log(self) -> str:
        return podman.logs(self.containers[0], stream="stderr", check=False)

    # ------------------------------------------------------------------ setup
    def setup(self) -> None:
        # A missing bridge route must never send these addresses out of the machine. The prohibit route
        # covers the bridge's own prefix (a narrower one would win over the bridge route, whatever its
        # metric); it is removed afterwards only if this run added it.
        self.routes += hostnet.prohibit_routes([PODMAN_CIDR])
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.key)], check=True, timeout=30)
        pubkey = Path(f"{self.key}.pub").read_text().strip()
        self.start_containers(pubkey)
        self.start_moto()
        self.seed_moto()
        self.pin_container_keys()
        self.check_direct_ssh()
        self.write_run_files()

    def bastion_ip(self) -> str:
        return BASTION_IP

    def target_ip(self) -> str:
        return target_ips(1)[0]

    def instance_id(self, ip: str) -> str:
        found = self.ec2().describe_instances(Filters=[{"Name": "private-ip-address", "Values": [ip]}])
        return found["Reservations"][0]["Instances"][0]["InstanceId"]

    def pin_container_keys(self) -> None:
        """Pin each container's host key under its instance's ID, as provisioning pins an instance's key from its
        console: every mode is measured with the strict host key checking fumidai always uses."""
        lines = []
        for name, ip in zip(self.containers, [BASTION_IP, *target_ips(self.args.hosts)], strict=True):
            key = podman.exec_in(name, "cat", "/etc/ssh/ssh_host_ed25519_key.pub").stdout.decode().split()[:2]
            lines.append(f"{self.instance_id(ip)} {' '.join(key)}\n")
        Path(self.env["FUMIDAI_KNOWN_HOSTS"]).write_text("".join(lines))

    def key_options(self, instance_id: str) -> list[str]:
        return ["-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={self.env['FUMIDAI_KNOWN_HOSTS']}",
                "-o", "UpdateHostKeys=no", "-o", f"HostKeyAlias={instance_id}"]

    def write_run_files(self) -> None:
        (self.work / "fanout.yml").write_text(PLAYBOOK)
        (self.work / "motd.j2").write_text(TEMPLATE)
        self.write_naive_config()

    def write_naive_config(self) -> None:
        # The naive hop: a real ProxyJump. ssh hands -F to the jump ssh, so the key and the "no master"
        # settings for the bastion live in this file; the outer connection keeps Ansible's own options.
        (self.work / "ssh_config").write_text(
            f"Host {self.bastion_ip()}\n  User {self.user}\n  IdentityFile {self.key}\n  IdentitiesOnly yes\n"
            f"  BatchMode yes\n  StrictHostKeyChecking yes\n  UserKnownHostsFile {self.env['FUMIDAI_KNOWN_HOSTS']}\n"
            f"  HostKeyAlias {self.instance_id(self.bastion_ip())}\n  ControlMaster no\n  ControlPath none\n")

    def start_containers(self, pubkey: str) -> None:
        """The bastion and the targets: the lab's sshd_host kind (its renderer and container settings)."""
        def sshd(name: str, ip: str, options: tuple[str, ...], log_level: str = "INFO") -> None:
            node = sshd_host.node(name, f"fumidai-bench-{name}-{self.tag}", ip, self.user, pubkey, options, log_level)
            self.containers.append(node["container"])
            files_dir = write_node_files({}, node, base=self.work / "nodes")
            podman.ensure_container(node, container_args({}, node, files_dir), label=BENCH_LABEL)

        sshd("bastion", BASTION_IP, (f"MaxStartups={self.args.maxstartups}", "AllowTcpForwarding=yes"),
             # At INFO sshd logs only the first drop of a MaxStartups episode; VERBOSE logs each one.
             log_level="VERBOSE")
        for number, ip in enumerate(target_ips(self.args.hosts), start=1):
            sshd(f"web{number:02d}", ip, ())
        deadline = time.monotonic() + 120
        for name in self.containers:
            while "Server listening on 0.0.0.0 port 22" not in podman.logs(name, stream="stderr", check=False):
                if time.monotonic() > deadline:
                    raise SystemExit(f"sshd in {name} did not start")
                time.sleep(0.5)

    def check_direct_ssh(self) -> None:
        """Fail with the reason before timing anything if the host cannot log in to a target."""
        proc = subprocess.run(["ssh", "-i", str(self.key), "-o", "BatchMode=yes",
                               *self.key_options(self.instance_id(self.target_ip())), "-o", "ConnectTimeout=10",
                               f"{self.user}@{self.target_ip()}", "true"], capture_output=True, text=True, timeout=60)
        if proc.returncode != 0:
            raise SystemExit(f"cannot ssh to {self.target_ip()} from this host: {proc.stderr.strip()}")

    def start_moto(self) -> None:
        port = moto_local.free_port()
        endpoint = f"http://127.0.0.1:{port}"
        self.moto = moto_local.spawn(port, self.work / "moto.log")
        moto_local.wait_until_up(endpoint)
        self.env = self.measurement_env({
            **os.environ, **moto_local.environment(endpoint),
            "PATH": f"{BIN}:{os.environ['PATH']}", "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
            "FUMIDAI_BASTION_ADDRESS": "private_ip", "FUMIDAI_SSH_PRIVATE_KEY": str(self.key),
            "FUMIDAI_KNOWN_HOSTS": str(self.work / "known_hosts")})

    def measurement_env(self, base: dict[str, str]) -> dict[str, str]:
        """``base`` (where the hosts and AWS are) plus what every timed Ansible run needs."""
        env = {**base, "ANSIBLE_NOCOLOR": "1", "ANSIBLE_INVENTORY_CACHE": "false",
               # Keep the bench's web01.. facts out of the project's fact cache.
               "ANSIBLE_CACHE_PLUGIN": "ansible.builtin.memory",
               "ANSIBLE_SSH_CONTROL_PATH_DIR": str(self.control_dir)}
        if self.args.ssh_retries is not None:
            env["ANSIBLE_SSH_RETRIES"] = str(self.args.ssh_retries)
        return env

    def ec2(self):
        """A client for the moto server the timed runs use (endpoint and credentials from their environment)."""
        import boto3

        return boto3.client("ec2", endpoint_url=self.env["AWS_ENDPOINT_URL"], region_name=self.env["AWS_REGION"],
                            aws_access_key_id=self.env["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=self.env["AWS_SECRET_ACCESS_KEY"])

    def seed_moto(self) -> None:
        """The bastion and the targets as instances at the containers' addresses (the project's seeder; moto
        gives the bastion a public IP (an EIP): never used, bastion_address=private_ip)."""
        from tests.support.aws_seed import AwsSeed, lab_plan

        AwsSeed(self.ec2()).build(lab_plan(BASTION_IP, target_ips(self.args.hosts), vpc_cidr=PODMAN_CIDR,
                                           public_cidr=BASTION_CIDR, private_cidr=TARGET_CIDR))

    # ------------------------------------------------------------------ masters
    def sockets(self) -> list[Path]:
        return [p for p in self.control_dir.iterdir() if stat.S_ISSOCK(p.lstat().st_mode)]

    def close_masters(self, keep_hop: bool = False) -> None:
        for sock in self.sockets():
            if keep_hop and sock.name.startswith("fumidai-hop-"):
                continue
            subprocess.run(["ssh", "-o", f"ControlPath={sock}", "-O", "exit", "x"], capture_output=True, timeout=30)
            sock.unlink(missing_ok=True)
        if not keep_hop:
            for leftover in self.control_dir.glob("fumidai-hop-*"):
                leftover.unlink(missing_ok=True)

    def prepare(self, mode: str) -> None:
        """Every run starts without per-host masters; only warm keeps (or opens) the bastion master."""
        self.close_masters(keep_hop=(mode == "warm"))
        if mode == "warm":
            # What configure.yml does first: the bastion's own connection opens the shared master.
            self.run_ansible(["ansible", "role_bastion", "-m", "ansible.builtin.ping", "-o"], extra=[])

    # ------------------------------------------------------------------ runs
    def mode_args(self, mode: str) -> list[str]:
        # Every mode checks each host's pinned key (HostKeyAlias from the host's instance_id, templated per host).
        keys = " ".join(self.key_options("{{ instance_id }}"))
        if mode == "naive":
            jump = f"{keys} -F {self.work / 'ssh_config'} -o ProxyJump={self.user}@{self.bastion_ip()}"
            return ["-e", f"ansible_ssh_common_args='{jump}'"]
        if mode == "direct":
            return ["-e", f"ansible_ssh_common_args='{keys}'"]
        return []

    def run_ansible(self, command: list[str], extra: list[str]) -> tuple[float, subprocess.CompletedProcess | None]:
        start = time.monotonic()
        try:
            proc = subprocess.run([str(BIN / command[0]), *command[1:], *extra], cwd=ROOT, env=self.env,
                                  capture_output=True, text=True, timeout=self.args.timeout)
        except subprocess.TimeoutExpired:
            return float("nan"), None
        return time.monotonic() - start, proc

    def measure(self, mode: str, workload: str) -> dict:
        self.prepare(mode)
        forks = str(self.args.forks)
        if workload == "ping":
            command = ["ansible", "private", "-m", "ansible.builtin.ping", "-f", forks, "-o"]
        else:
            command = ["ansible-playbook", str(self.work / "fanout.yml"), "-f", forks]
        log_before = self.bastion_log()
        seconds, proc = self.run_ansible(command, self.mode_args(mode))
        log_after = self.bastion_log()[len(log_before):]
        if proc is None:
            unreachable, ok = self.args.hosts, 0
        elif workload == "ping":
            unreachable = proc.stdout.count("| UNREACHABLE!")
            ok = proc.stdout.count("| SUCCESS")
        else:
            recap = RECAP.findall(proc.stdout)
            unreachable = sum(1 for _, u, _ in recap if int(u))
            ok = sum(1 for _, u, f in recap if not int(u) and not int(f))
        if self.args.verbose and proc is not None and ok != self.args.hosts:
            print(proc.stdout[-3000:], proc.stderr[-2000:], file=sys.stderr)
        return {"seconds": seconds, "unreachable": unreachable, "ok": ok, "timeout": proc is None,
                "logins": log_after.count(f"Accepted publickey for {self.user}"),
                "drops": log_after.count("past MaxStartups")}

    def run(self) -> dict:
        results: dict = {(m, w): [] for m in MODES for w in WORKLOADS}
        for repetition in range(1, self.args.repeat + 1):
            for workload in WORKLOADS:
                for mode in MODES:
                    result = self.measure(mode, workload)
                    results[(mode, workload)].append(result)
                    print(f"  rep {repetition} {workload:8} {mode:6} {result['seconds']:6.1f}s  "
                          f"ok {result['ok']}/{self.args.hosts}  unreachable {result['unreachable']}  "
                          f"bastion logins {result['logins']}  drops {result['drops']}", flush=True)
        return results

    # ------------------------------------------------------------------ teardown
    def cleanup(self) -> None:
        with contextlib.suppress(Exception):
            self.close_masters()
        with contextlib.suppress(Exception):
            podman.remove_containers(self.containers)
        if self.moto is not None:
            moto_local.stop_pid(self.moto.pid)
        for cidr in self.routes:
            hostnet.remove_prohibit_route(cidr)
        shutil.rmtree(self.control_dir, ignore_errors=True)
        shutil.rmtree(self.work, ignore_errors=True)


def report(args: argparse.Namespace, results: dict) -> None:
    print(f"\nFan-out through one bastion: {args.hosts} private hosts, forks {args.forks}, "
          f"bastion MaxStartups {args.maxstartups}, median of {args.repeat}, "
          f"ssh retries {args.ssh_retries if args.ssh_retries is not None else 'from ansible.cfg'}")
    labels = {"cold": "(a) multiplexed hop, cold", "warm": "(a) multiplexed hop, warm",
              "naive": "(b) naive ProxyJump", "direct": "(c) direct, no bastion"}
    medians = {key: statistics.median(r["seconds"] for r in runs) for key, runs in results.items()}
    total = args.hosts * args.repeat
    for workload in WORKLOADS:
        title = "ansible private -m ping" if workload == "ping" else "playbook (facts + template)"
        print(f"\n{title}")
        print(f"  {'mode':28} {'median':>8} {'vs (c)':>7} {'unreachable':>12} {'logins/run':>11} {'drops':>6}")
        floor = medians[("direct", workload)]
        for mode in MODES:
            runs = results[(mode, workload)]
            median = medians[(mode, workload)]
            unreachable = sum(r["unreachable"] for r in runs)
            logins = statistics.median(r["logins"] for r in runs)
            drops = sum(r["drops"] for r in runs)
            print(f"  {labels[mode]:28} {median:7.1f}s {median / floor:6.2f}x {unreachable:>5}/{total:<6} "
                  f"{logins:>11.0f} {drops:>6}")

    print("\nTargets (issue 6; printed, not asserted):")
    for workload in WORKLOADS:
        floor = medians[("direct", workload)]
        for mode, limit in (("warm", 1.1), ("cold", 1.2)):
            ratio = medians[(mode, workload)] / floor
            print(f"  {workload:8} {mode} within {limit}x of direct: {ratio:.2f}x "
                  f"{'met' if ratio <= limit else 'NOT met'}")
    hop_unreachable = sum(r["unreachable"] for m in ("cold", "warm") for w in WORKLOADS for r in results[(m, w)])
    at_scale = args.hosts >= 50 and args.forks >= args.hosts
    scale = "" if at_scale else f" (the target is at forks = N = 50; this is N={args.hosts})"
    print(f"  zero UNREACHABLE through the multiplexed hop: {hop_unreachable} "
          f"{'met' if hop_unreachable == 0 else 'NOT met'}{scale}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hosts", type=int, default=20, help="private hosts (target containers), 1-200")
    parser.add_argument("--forks", type=int, help="ansible forks (default: --hosts)")
    parser.add_argument("--repeat", type=int, default=5, help="repetitions per mode; the median is reported")
    parser.add_argument("--maxstartups", default="10:30:100",
                        help="the bastion sshd's MaxStartups (default: Debian's, i.e. someone else's bastion)")
    parser.add_argument("--ssh-retries", type=int,
                        help="ANSIBLE_SSH_RETRIES (default: the project's ansible.cfg; 0 shows raw drops)")
    parser.add_argument("--timeout", type=float, default=600, help="seconds before one ansible run is abandoned")
    parser.add_argument("--verbose", action="store_true", help="show the output of runs with failed hosts")
    parser.add_argument("--lab", action="store_true",
                        help="measure the running lab's web servers (scripts/lab.sh up --web-count N) "
                             "instead of building containers; --hosts is then the lab's count")
    args = parser.parse_args(argv)
    if not 1 <= args.hosts <= 200:
        parser.error("--hosts must be between 1 and 200 (one /24 for the targets)")
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    if args.lab:
        from bench.fanout_lab import LabBench

        bench = LabBench(args)
    else:
        bench = Bench(args)
    args.forks = args.forks or args.hosts
    # SIGTERM (a CI timeout) must still remove the containers.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        where = (f"the lab's {args.hosts} web servers behind its bastion" if args.lab
                 else f"{args.hosts} targets and a bastion")
        print(f"setting up {where} (MaxStartups {args.maxstartups}) ...", flush=True)
        started = time.monotonic()
        bench.setup()
        print(f"  ready in {time.monotonic() - started:.0f}s", flush=True)
        results = bench.run()
    finally:
        bench.cleanup()
    report(args, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
