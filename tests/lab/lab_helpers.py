"""Helpers shared by the lab fixture and the lab tests."""

from __future__ import annotations

import socket
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def egress_source(host, url: str) -> str | None:
    """The source address the lab internet server saw, or None when the request got nowhere."""
    result = host.run(f"curl -sS --max-time 5 {url}")
    return result.stdout.strip() if result.rc == 0 else None


def tcp_open(address: str, port: int, timeout: float = 3.0) -> bool:
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return True
    except OSError:
        return False
