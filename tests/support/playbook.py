"""Running the project's own ansible-playbook from tests, and asking OpenSSH how it reads a config."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


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


def plain(value):
    """ansible-inventory writes values that are not trusted as templates as {"__ansible_unsafe": ...}."""
    if isinstance(value, dict):
        if set(value) == {"__ansible_unsafe"}:
            return value["__ansible_unsafe"]
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value
