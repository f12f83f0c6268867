"""The forward fallback bastion_hop.py uses with two or more bastions: ``ssh -W`` through one bastion runs as a child,
the target must speak first within the connect timeout, and only then are the client's bytes relayed; a forward that
failed is remembered for that target through that bastion.

Why not exec ``ssh -W`` as with one bastion: a bastion can answer while the forward behind it fails (the target's
firewall drops the bastion's packets: the bastion's own connect() takes minutes to give up; or the bastion's sshd
refuses the forward). An SSH server sends its banner first, so no bytes within the timeout, or the child exiting
first, means "try the next bastion"; the client's bytes are still unread in our stdin, so nothing of them is lost.

Once the target has spoken, each direction is copied by its own thread with blocking os.read/os.write: one
direction waiting on a slow reader never holds up the other (a single loop with blocking writes can deadlock
against a peer that writes before it reads), and no O_NONBLOCK is set on descriptors we share with the caller.

Standard library only: it runs under whatever python3 runs Ansible.
"""

from __future__ import annotations

import ipaddress
import os
import selectors
import subprocess
import threading
import time

CHUNK = 1 << 20  # bytes per read: a pipe holds 64 KiB, a socket may hold more


def forward_marker(control_path: str, host: str, port: str) -> str | None:
    """Where a failed forward to host:port through the bastion of ``control_path`` is remembered, next to its
    socket; a file name, so only for an IP address (what the inventory writes) and a port number."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    return f"{control_path}.failed-{address}:{int(port)}" if port.isdigit() else None


def remembered_failure(path: str | None, memory: float) -> str | None:
    """Why the forward failed, when that was less than ``memory`` seconds ago."""
    try:
        if path and time.time() - os.stat(path).st_mtime < memory:
            with open(path) as reason:
                return reason.read()
    except FileNotFoundError:
        pass
    return None


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def copy(source: int, destination: int) -> None:
    """Copy until EOF on ``source`` or until ``destination`` is closed by its reader."""
    try:
        while data := os.read(source, CHUNK):
            write_all(destination, data)
    except (BrokenPipeError, ConnectionResetError):
        pass


def start_forward(command: list[str], timeout: float) -> tuple[subprocess.Popen | None, bytes, str]:
    """Start ``command`` (``ssh -W``) and wait up to ``timeout`` seconds for the target's first bytes.

    Returns (child, first bytes, "") when the target spoke; else the child is killed and (None, b"", why) says
    whether the forward timed out or was refused, with what ssh printed. Reads nothing of our stdin.
    """
    child = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    said, deadline = b"", time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        selector.register(child.stdout, selectors.EVENT_READ)
        selector.register(child.stderr, selectors.EVENT_READ)
        while (left := deadline - time.monotonic()) > 0:
            events = selector.select(left)
            for key, _mask in events:
                data = os.read(key.fd, CHUNK)
                if key.fileobj is child.stderr:
                    said += data
                    if not data:
                        selector.unregister(child.stderr)
                elif data:
                    write_all(2, said)  # ssh's own notes, kept for the person who runs it
                    return child, data, ""
                else:
                    code = stop(child, grace=1.0)  # its exit status and its last words
                    return None, b"", f"forward refused (ssh exited {code} before the target spoke)" + \
                        quoted(said + drain(child))
    stop(child)
    return None, b"", f"forward timed out (the target sent nothing within {timeout:g}s)" + quoted(said + drain(child))


def stop(child: subprocess.Popen, grace: float = 0.0) -> int:
    """The child's exit status, killing it unless it exits within ``grace`` seconds."""
    try:
        return child.wait(grace)
    except subprocess.TimeoutExpired:
        child.kill()
        return child.wait()


def drain(child: subprocess.Popen) -> bytes:
    """What the dead child left on its stderr, without waiting for a process that may still hold the pipe."""
    fd, said = child.stderr.fileno(), b""
    os.set_blocking(fd, False)
    try:
        while data := os.read(fd, CHUNK):
            said += data
    except BlockingIOError:
        pass
    return said


def quoted(said: bytes) -> str:
    text = said.decode(errors="replace").strip()
    return ":\n" + text if text else ""


def relay(child: subprocess.Popen, first: bytes) -> int:
    """Pass ``first`` on, then the client's stdin to the child and the child's stdout and stderr to ours.

    EOF on our stdin closes the child's stdin (half-close); EOF on the child's stdout ends the relay. Returns the
    child's exit status (255, as ssh, when it was killed or our stdout's reader went away).
    """
    try:
        write_all(1, first)
    except BrokenPipeError:
        stop(child)
        return 255
    upstream = threading.Thread(target=pass_stdin, args=(child,), daemon=True)
    errors = threading.Thread(target=copy, args=(child.stderr.fileno(), 2), daemon=True)
    upstream.start()
    errors.start()
    try:
        while data := os.read(child.stdout.fileno(), CHUNK):
            write_all(1, data)
    except BrokenPipeError:
        child.kill()  # the client is gone: so is the connection
    code = child.wait()
    errors.join(2)  # ssh's last words; its stderr closes when it exits
    return code if code >= 0 else 255


def pass_stdin(child: subprocess.Popen) -> None:
    copy(0, child.stdin.fileno())
    child.stdin.close()  # the client's half-close, passed on (nothing is buffered in the file object)
