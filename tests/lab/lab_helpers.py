"""Helpers shared by the lab fixture and the lab tests."""

from __future__ import annotations

import contextlib
import http.client
import json
import re
import socket
import subprocess
import sys
from pathlib import Path

from lab import resilience
from lab import state as lab_state
from lab import steps as lab_steps
from tests.support.collection import galaxy

ROOT = Path(__file__).resolve().parents[2]
KNOWN_HOSTS = ROOT / ".cache" / "lab" / "known_hosts"  # the lab's pinned host keys


def egress_source(host, url: str) -> str | None:
    """The source address the lab internet server saw from a testinfra podman host, or None when the request
    got nowhere: the lab's own egress check (lab.steps.egress_source)."""
    return lab_steps.egress_source(host.backend.name, url)


@contextlib.contextmanager
def counting_packets(host, chain: str, match: str):
    """Count the packets matching ``match`` (iptables match options) in ``chain`` (INPUT: what reaches the
    host; OUTPUT: what it sends) with a rule without a target at the top, before the security groups' chains:
    the positive control of a "cannot reach" check, which shows where a probe got to. Yields a dict whose
    "packets" is filled in on exit."""
    spec = f"{match} -m comment --comment fumidai-test-count"
    host.run_expect([0], f"iptables -w -I {chain} 1 {spec}")
    counted = {"packets": 0}
    try:
        yield counted
    finally:
        listing = host.check_output(f"iptables -w -nvxL {chain}")
        counted["packets"] = sum(int(line.split()[0]) for line in listing.splitlines()
                                 if "fumidai-test-count" in line)
        host.run_expect([0], f"iptables -w -D {chain} {spec}")


def counting_arrivals(host, source: str, port: int):
    """The TCP packets from ``source`` to ``port`` that reach ``host`` (see counting_packets)."""
    return counting_packets(host, "INPUT", f"-s {source} -p tcp --dport {port}")


def tcp_open(address: str, port: int, timeout: float = 3.0) -> bool:
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return True
    except OSError:
        return False


# A boto3 client for the lab's moto server (the endpoint the lab's own runs use): the lab's own helper.
moto_client = lab_state.aws_client


def login_user(node: dict) -> str:
    """The node's login user: its image's (lab.json, from plugins/module_utils/login.py)."""
    return node.get("login_user") or "admin"


def fresh_ssh(lab, node: dict, command: str = "hostname", timeout: int = 30):
    """A person's SSH login through the bastion on new TCP connections (no shared master to ride on)."""
    import shlex
    import subprocess

    key = str(ROOT / ".cache" / "lab" / "id_ed25519")
    bastion = lab.by_role("bastion")[0]
    options = ["-i", key, "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", "-o", "ControlPath=none",
               "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={KNOWN_HOSTS}", "-o", "ConnectTimeout=8",
               "-o", "LogLevel=ERROR"]
    # Each host's key is checked against its pin, like every connection fumidai makes.
    hop = shlex.join(["ssh", *options, "-o", f"HostKeyAlias={bastion['resource_id']}", "-W", "%h:%p",
                      f"{login_user(bastion)}@{bastion['ip']}"])
    try:
        return subprocess.run(["ssh", *options, "-o", f"HostKeyAlias={node['resource_id']}",
                               "-o", f"ProxyCommand={hop}", f"{login_user(node)}@{node['ip']}", command],
                              capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        return subprocess.CompletedProcess(exc.cmd, 255, "", f"timed out after {timeout}s")


def wait_for(condition, timeout: float, interval: float = 2.0) -> bool:
    """Poll condition until it holds or timeout seconds pass (a bound on waiting, not a timing check)."""
    return resilience.wait_until(condition, timeout, interval)


def lab_cli(*args: str, timeout: int = 1200) -> None:
    proc = subprocess.run([sys.executable, "-m", "lab", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)
    if proc.returncode != 0:
        # A playbook's output is long: show its failures, then how it ended.
        lines = proc.stdout.splitlines()
        failures = [i for i, line in enumerate(lines)
                    if line.startswith(("fatal:", "failed:")) or "UNREACHABLE!" in line]
        excerpts = "\n...\n".join("\n".join(lines[max(i - 3, 0):i + 25]) for i in failures[:5])
        raise AssertionError(f"python -m lab {' '.join(args)} failed ({proc.returncode}):\n{excerpts}\n...\n"
                             f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")


def alb_get(lab, path: str = "/") -> tuple[int, dict, str]:
    """One request to the ALB by its DNS name (resolved to the lab's HAProxy address)."""
    conn = http.client.HTTPConnection(lab.alb["ip"], 80, timeout=10)
    try:
        conn.request("GET", path, headers={"Host": lab.alb["dns_name"]})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read().decode(errors="replace")
    finally:
        conn.close()


def web_names_in(lab, body: str) -> set[str]:
    return {n["name"] for n in lab.by_role("web") if re.search(rf"\b{re.escape(n['name'])}\b", body)}


def served_by(lab, requests: int = 12) -> list[str]:
    names = []
    for _ in range(requests):
        status, _headers, body = alb_get(lab)
        assert status == 200, f"ALB answered {status}: {body[:200]}"
        found = web_names_in(lab, body)
        assert len(found) == 1, f"the index page should name exactly one web host, got {found}: {body[:200]}"
        names.append(found.pop())
    return names


def server_status(lab, node: dict) -> str:
    stats = lab.host(lab.alb["node"]).run("curl -sf 'http://127.0.0.1:8404/stats;csv'").stdout
    for row in stats.splitlines():
        cols = row.split(",")
        if len(cols) > 17 and cols[1] == node["resource_id"]:
            return cols[17]
    return "missing"


RECAP_RE = re.compile(r"^(\S+)\s+: ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.MULTILINE)
"""One host's line of a PLAY RECAP: name, ok, changed, unreachable, failed."""


def galaxy_version() -> str:
    return galaxy()["version"]


def run_doctor(lab, target: str, path: str, out_dir: Path) -> dict:
    """playbooks/doctor.yml on the lab's local API: its JSON report (the exit status checked against it)."""
    report = out_dir / f"doctor-{target}-{path}.json"
    report.unlink(missing_ok=True)
    proc = subprocess.run([str(ROOT / ".venv" / "bin" / "ansible-playbook"), "playbooks/doctor.yml",
                           "-e", "@lab/vars.yml", "-e", f"target={target}", "-e", f"path={path}",
                           "-e", f"doctor_output={report}"],
                          cwd=ROOT, env=lab.env, capture_output=True, text=True, timeout=300)
    assert report.exists(), f"no report (exit {proc.returncode}):\n{proc.stdout[-3000:]}{proc.stderr[-2000:]}"
    result = json.loads(report.read_text())
    # The exit status is part of the verdict: non-zero exactly when a path is blocked.
    assert (proc.returncode != 0) == result["blocked"], f"exit {proc.returncode} vs report:\n{proc.stdout[-3000:]}"
    return result


def first_blocked(report: dict) -> str | None:
    return next((h["hop"] for h in report["hops"] if h["status"] == "BLOCKED"), None)
