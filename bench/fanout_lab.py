"""The fan-out benchmark on the running lab (bench/fanout_bench.py --lab): the lab's web servers, nothing built."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from bench.fanout_bench import BIN, ROOT, Bench
from lab import podman


class LabBench(Bench):
    """The same measurements on the running lab (python -m lab): nothing is built or seeded."""

    SSHD_CONFIG = "/etc/ssh/sshd_config"
    SSHD_SAVED = "/etc/ssh/sshd_config.fumidai-bench"

    def __init__(self, args: argparse.Namespace) -> None:
        from lab import state as lab_state
        from lab import steps as lab_steps

        state = lab_state.load_state()
        if not state:
            raise SystemExit("the lab is not up: run `bash scripts/lab.sh up --web-count 20` first")
        bastions = [n for n in state["nodes"] if n["kind"] == "instance" and n["role"] == "bastion"]
        webs = [n for n in state["nodes"] if n["kind"] == "instance" and n["role"] == "web"]
        if not bastions or not webs:
            raise SystemExit("the lab has no bastion or no web servers")
        super().__init__(args)
        # self.containers stays empty: the lab's containers are not the bench's to remove.
        self.lab, self.state, self.bastion, self.webs = lab_steps, state, bastions[0], webs
        self.user = self.bastion.get("login_user") or self.user
        self.sshd_changed = False
        self.sg_rule: tuple[str, str] | None = None
        args.hosts = len(self.webs)

    def bastion_ip(self) -> str:
        return self.bastion["ip"]

    def bastion_log(self) -> str:
        return podman.exec_in(self.bastion["container"], "journalctl", "-u", "ssh", "-o", "cat", "--no-pager",
                              check=False).stdout.decode(errors="replace")

    def setup(self) -> None:
        self.env = self.measurement_env(self.lab.ansible_env())
        self.key = Path(self.env["FUMIDAI_SSH_PRIVATE_KEY"])
        listed = subprocess.run([str(BIN / "ansible"), "private", "--list-hosts"], cwd=ROOT, env=self.env,
                                capture_output=True, text=True, timeout=120)
        if listed.returncode != 0 or f"hosts ({len(self.webs)})" not in listed.stdout:
            raise SystemExit(f"the inventory's private group is not the lab's {len(self.webs)} web servers:\n"
                             f"{listed.stdout}{listed.stderr}")
        self.make_bastion_default()
        self.open_direct_ssh()
        self.write_run_files()

    def bastion_exec(self, *command: str, check: bool = True) -> subprocess.CompletedProcess:
        return podman.exec_in(self.bastion["container"], *command, check=check)

    def make_bastion_default(self) -> None:
        """Someone else's bastion: Debian's MaxStartups and MaxSessions, every drop logged."""
        self.bastion_exec("cp", "-p", self.SSHD_CONFIG, self.SSHD_SAVED)
        self.sshd_changed = True
        script = (f"sed -i -e 's/^MaxStartups .*/MaxStartups {self.args.maxstartups}/' "
                  "-e 's/^MaxSessions .*/MaxSessions 10/' -e '/^PerSourceMaxStartups /d' "
                  f"-e 's/^LogLevel .*/LogLevel VERBOSE/' {self.SSHD_CONFIG} && sshd -t && systemctl reload ssh")
        self.bastion_exec("sh", "-c", script)

    def open_direct_ssh(self) -> None:
        """The direct mode's path: the web servers' SG also opens 22 to the office (undone in cleanup)."""
        ec2 = self.ec2()
        group = self.webs[0]["security_groups"][0]
        office = self.state["office_cidr"]
        ec2.authorize_security_group_ingress(GroupId=group, IpPermissions=[{
            "IpProtocol": "tcp", "FromPort": 22, "ToPort": 22,
            "IpRanges": [{"CidrIp": office, "Description": "fanout bench: direct mode (temporary)"}]}])
        self.sg_rule = (group, office)
        self.apply_lab_network()
        self.check_direct_ssh()

    def apply_lab_network(self) -> None:
        proc = subprocess.run([sys.executable, "-m", "lab", "step", "net"], cwd=ROOT,
                              env=self.podman_env, capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            raise SystemExit(f"python -m lab step net failed:\n{proc.stdout}{proc.stderr}")

    def target_ip(self) -> str:
        return self.webs[0]["ip"]

    def cleanup(self) -> None:
        try:
            if self.sg_rule:
                group, office = self.sg_rule
                self.ec2().revoke_security_group_ingress(GroupId=group, IpPermissions=[{
                    "IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": office}]}])
                self.apply_lab_network()
            if self.sshd_changed:
                self.bastion_exec("sh", "-c", f"mv {self.SSHD_SAVED} {self.SSHD_CONFIG} && sshd -t && "
                                  "systemctl reload ssh", check=False)
        finally:
            super().cleanup()
