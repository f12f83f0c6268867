"""Shared pytest fixtures: a moto server per test session, and a way to run
the project's real ansible-playbook against it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import boto3
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

import moto_local  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def pinned_keys_stay_out_of_the_project(tmp_path_factory):
    """Provisioning pins host keys in known_hosts_file: tests pin into a file of their own, never into the
    project's .cache/known_hosts (a test that needs a specific file sets FUMIDAI_KNOWN_HOSTS itself)."""
    saved = os.environ.get("FUMIDAI_KNOWN_HOSTS")
    os.environ["FUMIDAI_KNOWN_HOSTS"] = str(tmp_path_factory.mktemp("pins") / "known_hosts")
    yield
    if saved is None:
        os.environ.pop("FUMIDAI_KNOWN_HOSTS", None)
    else:
        os.environ["FUMIDAI_KNOWN_HOSTS"] = saved


@pytest.fixture(scope="session")
def moto_endpoint(tmp_path_factory):
    """A moto server on 127.0.0.1 (free port) for the whole session."""
    port = moto_local.free_port()
    endpoint = f"http://127.0.0.1:{port}"
    proc = moto_local.spawn(port, tmp_path_factory.mktemp("moto") / "server.log")
    try:
        moto_local.wait_until_up(endpoint)
        yield endpoint
    finally:
        moto_local.stop_pid(proc.pid)


@pytest.fixture
def aws_env(moto_endpoint, monkeypatch):
    """Environment pointing boto3/amazon.aws at a freshly reset moto server."""
    req = urllib.request.Request(f"{moto_endpoint}/moto-api/reset", method="POST")
    urllib.request.urlopen(req, timeout=10).close()
    env = moto_local.environment(moto_endpoint)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


@pytest.fixture
def ec2(aws_env):
    return boto3.client("ec2", region_name=aws_env["AWS_REGION"])


@pytest.fixture
def elbv2(aws_env):
    return boto3.client("elbv2", region_name=aws_env["AWS_REGION"])


@pytest.fixture
def inventory(tmp_path):
    """localhost plus the project's group_vars, without the bastion_ec2 plugin
    (for playbooks that only talk to the AWS API)."""
    # What the implicit localhost would be: local connection, this Python (boto3).
    (tmp_path / "hosts").write_text(f"localhost ansible_connection=local ansible_python_interpreter={sys.executable}\n")
    (tmp_path / "group_vars").symlink_to(ROOT / "inventory" / "group_vars")
    return str(tmp_path / "hosts")


def run_playbook(playbook: str, *args: str, env: dict | None = None, check: bool = False,
                 timeout: int = 900) -> subprocess.CompletedProcess:
    """Run ansible-playbook from the project root with the project's ansible.cfg."""
    full_env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
                "ANSIBLE_FORCE_COLOR": "0", "ANSIBLE_NOCOLOR": "1", **(env or {})}
    cmd = [str(Path(sys.executable).parent / "ansible-playbook"), playbook, *args]
    proc = subprocess.run(cmd, cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def run_report_playbook(playbook: str, output_var: str, report_file: Path, *args: str,
                        **kwargs) -> tuple[subprocess.CompletedProcess, dict]:
    """Run a playbook that writes its JSON report to the file named by ``output_var``
    (doctor.yml's doctor_output, audit.yml's audit_output); return the process and
    the report, or {} when the run stopped before writing one."""
    report_file.unlink(missing_ok=True)
    proc = run_playbook(playbook, *args, "-e", f"{output_var}={report_file}", **kwargs)
    report = json.loads(report_file.read_text()) if report_file.exists() else {}
    return proc, report


def ssh_resolved(config: Path, host: str) -> dict[str, list[str]]:
    """How OpenSSH resolves ``host`` with ``config`` (ssh -G: reads the config, connects to nothing)."""
    out = subprocess.run(["ssh", "-G", "-F", str(config), host], capture_output=True, text=True, check=True).stdout
    settings: dict[str, list[str]] = {}
    for line in out.splitlines():
        key, _, value = line.partition(" ")
        settings.setdefault(key, []).append(value)
    return settings
