#!/usr/bin/env python3
"""ProxyCommand for the bastion_ec2 inventory: reach a private host through the bastion's one shared
SSH master connection.

    bastion_hop.py --control-path PATH [--persist 60s] [--port 22] [--identity KEY]
                   [--option StrictHostKeyChecking=accept-new ...] USER@BASTION TARGET_HOST TARGET_PORT

Why a wrapper and not ``ControlMaster=auto`` in the ProxyCommand: on a cold start, twenty parallel hops
with ``auto`` all find no master and all log in to the bastion at once; a bastion at Debian's default
``MaxStartups 10:30:100`` drops some of them (measured: 13 of 100 host connections lost). Here the first
hop opens the master under an exclusive lock while the others wait, then every hop is a cheap
``ssh -W`` session multiplexed over that master. The master stays up for ``--persist`` after the last
session (ssh ControlPersist) and is shared with Ansible's own connection to the bastion, which uses the
same ControlPath.

Standard library only: it runs under whatever python3 runs Ansible.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import subprocess
import sys
import tempfile
import time

MASTER_TIMEOUT = 60  # seconds for the master to authenticate before we give up


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--control-path", required=True, help="socket of the shared master (a literal path)")
    parser.add_argument("--persist", default="60s", help="ControlPersist of the master")
    parser.add_argument("--port", default="22", help="bastion SSH port")
    parser.add_argument("--identity", help="private key for the bastion")
    parser.add_argument("--option", action="append", default=[], help="extra ssh -o option for the bastion")
    parser.add_argument("--ssh", default="ssh", help="ssh executable")
    parser.add_argument("login", help="USER@BASTION")
    parser.add_argument("target_host")
    parser.add_argument("target_port")
    return parser.parse_args(argv)


def base_command(args: argparse.Namespace) -> list[str]:
    # ssh expands %-tokens in ControlPath: the literal path must not be expanded.
    command = [args.ssh, "-p", str(args.port), "-o", "BatchMode=yes",
               "-o", "ControlPath=" + args.control_path.replace("%", "%%")]
    if args.identity:
        command += ["-i", args.identity, "-o", "IdentitiesOnly=yes"]
    for option in args.option:
        command += ["-o", option]
    return command


def master_alive(args: argparse.Namespace) -> bool:
    return subprocess.call([*base_command(args), "-O", "check", args.login],
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) == 0


def open_master(args: argparse.Namespace) -> tuple[bool, str]:
    """Start the master in the background (-f returns once it is authenticated and listening)."""
    if os.path.exists(args.control_path):
        # A socket nobody answers on is left over from a dead master; ssh would refuse to replace it.
        os.unlink(args.control_path)
    command = [*base_command(args), "-o", "ControlMaster=yes", "-o", f"ControlPersist={args.persist}",
               "-o", "ConnectTimeout=15", "-o", "ServerAliveInterval=15", "-o", "ServerAliveCountMax=4",
               "-N", "-f", args.login]
    # The backgrounded master must not hold our stdout/stderr: they are the outer ssh's pipes, and
    # Ansible waits for them to close.
    with tempfile.TemporaryFile() as errors:
        try:
            code = subprocess.call(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                   stderr=errors, timeout=MASTER_TIMEOUT)
        except subprocess.TimeoutExpired:
            code, note = 255, f"timed out after {MASTER_TIMEOUT}s\n"
        else:
            note = ""
        errors.seek(0)
        text = errors.read().decode(errors="replace") + note
    return code == 0, text


def ensure_master(args: argparse.Namespace) -> None:
    if master_alive(args):
        return
    directory = os.path.dirname(args.control_path) or "."
    os.makedirs(directory, mode=0o700, exist_ok=True)
    failure_file = args.control_path + ".failed"
    waited_since = time.time()
    with open(args.control_path + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if master_alive(args):  # another hop opened it while we waited
            return
        try:
            if os.stat(failure_file).st_mtime >= waited_since:
                # The hop we waited for just failed: do not hammer the bastion with the same attempt.
                with open(failure_file) as reason:
                    sys.stderr.write(reason.read())
                sys.exit(255)
        except FileNotFoundError:
            pass
        ok, text = open_master(args)
        if ok:
            if os.path.exists(failure_file):
                os.unlink(failure_file)
            return
        message = f"bastion_hop: cannot open the shared connection to {args.login}:\n{text}"
        with open(failure_file, "w") as reason:
            reason.write(message)
        sys.stderr.write(message)
        sys.exit(255)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    ensure_master(args)
    host = args.target_host
    target = f"[{host}]:{args.target_port}" if ":" in host else f"{host}:{args.target_port}"
    # ControlMaster=no: use the master; if it vanished meanwhile, ssh falls back to a direct login.
    command = [*base_command(args), "-o", "ControlMaster=no", "-W", target, args.login]
    os.execvp(command[0], command)


if __name__ == "__main__":
    main()
