"""Podman for the lab and the fan-out bench: networks, and containers recreated only when their definition changes."""

from __future__ import annotations

import hashlib
import json
import subprocess

from lab import config
from lab.proc import out, run

# What every lab container gets: its own routes and firewall (NET_ADMIN), no DNS, IPv4 only, no redirects.
COMMON_RUN = ["--cap-add", "NET_ADMIN", "--security-opt", "unmask=/proc/sys", "--dns", "none",
              "--sysctl", "net.ipv6.conf.all.disable_ipv6=1", "--sysctl", "net.ipv4.conf.all.accept_redirects=0",
              "--sysctl", "net.ipv4.conf.all.send_redirects=0", "--sysctl", "net.ipv4.conf.default.send_redirects=0"]


def podman(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return run(["podman", *args], **kwargs)


def network_arg(network: str, ip: str, mac: str = "") -> str:
    return f"{network}:ip={ip}" + (f",mac={mac}" if mac else "")


def ensure_network(name: str, *args: str, label: str = config.LABEL) -> None:
    if podman("network", "exists", name, check=False).returncode != 0:
        podman("network", "create", "--label", f"{label}=1", *args, name)


def remove_network(name: str) -> bool:
    if podman("network", "exists", name, check=False).returncode != 0:
        return False
    podman("network", "rm", "-f", name)
    return True


def container_state(name: str, label: str = config.LABEL) -> tuple[str | None, str | None]:
    proc = podman("inspect", "--type", "container", "--format",
                  '{{.State.Status}} {{index .Config.Labels "' + label + '.hash"}}', name, check=False)
    if proc.returncode != 0:
        return None, None
    status, _, digest = proc.stdout.decode().strip().partition(" ")
    return status, digest


def ensure_container(node: dict, args: list[str], payload: bytes | None = None, identity: object = None,
                     label: str = config.LABEL) -> bool:
    """Create and start a container unless one with the same definition runs. True when (re)created.

    ``identity``: what defines the container when not all of its arguments and payload do (an instance's
    network script changes in place, see lab.hosts.apply_net_in_place). ``label``: the owner's label
    (the lab's by default; `lab down` removes every container that carries it).
    """
    defined = identity if identity is not None else [args, payload.hex() if payload else ""]
    digest = hashlib.sha256(json.dumps(defined).encode()).hexdigest()[:16]
    status, current = container_state(node["container"], label)
    if status == "running" and current == digest:
        return False
    if status is not None:
        podman("rm", "-f", "-t", "0", node["container"])
    podman("create", "--name", node["container"], "--label", f"{label}=1", "--label", f"{label}.hash={digest}",
           "--label", f"{label}.kind={node['kind']}", *args)
    if payload:
        podman("cp", "-", f"{node['container']}:/", input_bytes=payload)
    podman("start", node["container"])
    return True


def containers(label: str = config.LABEL, kind: str | None = None) -> list[str]:
    """Names of the containers carrying ``label`` (of one kind when given)."""
    selector = f"{label}.kind={kind}" if kind else f"{label}=1"
    return out(["podman", "ps", "-a", "--format", "{{.Names}}", "--filter", f"label={selector}"]).split()


def remove_containers(names: list[str]) -> None:
    if names:
        podman("rm", "-f", "-t", "0", *names)


def remove_labelled(label: str = config.LABEL) -> int:
    ids = out(["podman", "ps", "-a", "-q", "--filter", f"label={label}=1"]).split()
    remove_containers(ids)
    return len(ids)


def logs(container: str, since: str | None = None, stream: str = "stdout", check: bool = True) -> str:
    """What a container printed on ``stream`` (stdout or stderr), since a Unix time when given."""
    proc = podman("logs", *(["--since", since] if since else []), container, check=check)
    return getattr(proc, stream).decode(errors="replace")


def started_at(container: str) -> str:
    return out(["podman", "inspect", "--format", "{{.State.StartedAt.Unix}}", container])


def exec_in(container: str, *command: str, check: bool = True) -> subprocess.CompletedProcess:
    return podman("exec", container, *command, check=check)


def copy_in(source: str, container: str, dest: str) -> None:
    podman("cp", source, f"{container}:{dest}")


def image_exists(image: str) -> bool:
    return podman("image", "exists", image, check=False).returncode == 0

