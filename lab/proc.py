"""The lab's error type, its progress log and how it runs commands and writes generated files."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path


class LabError(Exception):
    """A failure with a sentence a person can act on."""


def log(message: str) -> None:
    print(f"    {message}", flush=True)


def run(cmd: list[str], *, check: bool = True, capture: bool = True, input_bytes: bytes | None = None,
        env: dict | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, input=input_bytes, capture_output=capture, env=env, cwd=cwd)
    if check and proc.returncode != 0:
        detail = (proc.stderr or b"").decode(errors="replace").strip() if capture else ""
        raise LabError(f"command failed ({proc.returncode}): {shlex.join(cmd)}\n{detail}")
    return proc


def out(cmd: list[str], **kwargs) -> str:
    return run(cmd, **kwargs).stdout.decode().strip()


def write_file(path: Path, text: str, mode: int = 0o644) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    # The mode before the text: a private key (0600) is never readable by others, not even for a moment.
    path.touch(mode=mode)
    path.chmod(mode)
    path.write_text(text)
    return path
