"""ProxyCommand for the bastion_ec2 inventory: reach a private host through the bastion's one shared
SSH master connection.

    bastion_hop.py --control-path PATH [--persist 60s] [--port 22] [--identity KEY]
                   [--option HostKeyAlias=i-0123... ...] USER@BASTION TARGET_HOST TARGET_PORT

With more than one bastion (bastion_per_az), each one's login, port, pinned instance ID and socket, in order:

    bastion_hop.py [--persist 60s] [--identity KEY] [--option ...] [--connect-timeout 5] [--failure-memory 300]
                   --bastion USER@ADDR,PORT,INSTANCE_ID,CONTROL_PATH [--bastion ...] TARGET_HOST TARGET_PORT

The first bastion whose master is up, or opens within --connect-timeout seconds, carries the connection. One
that fails is skipped (``CONTROL_PATH.failed``, the failure file, says why) and not tried again by any hop for
--failure-memory seconds, so later hosts do not wait for the same timeout. A bastion can also answer while
its forward to the target fails (the target's firewall drops it, or sshd's PermitOpen refuses it): so with two or
more bastions the hop does not exec ``ssh -W`` but relays it (hop_relay.py, beside this file), waiting up to
--connect-timeout for the target's banner, and tries the next bastion when none comes (remembered per target in
``CONTROL_PATH.failed-TARGET:PORT`` for --failure-memory seconds). With one bastion it execs ``ssh -W`` as ever.

Why a wrapper and not ``ControlMaster=auto`` in the ProxyCommand: on a cold start, twenty parallel hops
with ``auto`` all find no master and all log in to the bastion at once; a bastion at Debian's default
``MaxStartups 10:30:100`` drops some of them (measured: 13 of 100 host connections lost). Here the first
hop opens the master under an exclusive lock while the others wait, then every hop is a cheap
``ssh -W`` session multiplexed over that master. The master stays up for ``--persist`` after the last
session (ssh ControlPersist) and is shared with Ansible's own connection to the bastion, which uses the
same ControlPath.

It runs once per host connection, so the usual path (master already up) stays lean: it imports only
os, sys and socket, parses the command line the plugin writes without argparse, and checks the master
by connecting to its socket instead of starting ``ssh -O check``. Anything else (--help, a mistyped
option) goes to argparse.

Standard library only: it runs under whatever python3 runs Ansible.
"""

from __future__ import annotations

import os
import socket
import sys

MASTER_TIMEOUT = 60  # seconds for the master to authenticate before we give up
HOST_KEY_FAILURE = "Host key verification failed"  # what ssh prints when a key does not match its pin
FORWARD_FAILED = "answered, but its forward to"  # a bastion that was up, in the message when every one failed
VALUE_OPTIONS = {"--control-path": "control_path", "--persist": "persist", "--port": "port",
                 "--identity": "identity", "--ssh": "ssh", "--connect-timeout": "connect_timeout",
                 "--failure-memory": "failure_memory"}
LIST_OPTIONS = {"--option": "option", "--bastion": "bastion"}


class HopArgs:
    def __init__(self) -> None:
        self.control_path: str | None = None
        self.persist = "60s"
        self.port = "22"
        self.identity: str | None = None
        self.option: list[str] = []
        self.bastion: list[str] = []
        self.connect_timeout = "15"
        self.failure_memory = "300"
        self.ssh = "ssh"
        self.login = self.target_host = self.target_port = ""


def parse_args_fully(argv: list[str]) -> HopArgs:
    import argparse

    # Defaults live in HopArgs (argparse keeps attributes the namespace already has).
    defaults = HopArgs()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--control-path", required=True, help="socket of the shared master (a literal path)")
    parser.add_argument("--persist", default=defaults.persist, help="ControlPersist of the master")
    parser.add_argument("--port", default=defaults.port, help="bastion SSH port")
    parser.add_argument("--identity", help="private key for the bastion")
    parser.add_argument("--option", action="append", default=[], help="extra ssh -o option for the bastion")
    parser.add_argument("--bastion", action="append", default=[], metavar="USER@ADDR,PORT,INSTANCE_ID,CONTROL_PATH",
                        help="a bastion to try, in order (instead of --control-path, --port and USER@BASTION)")
    parser.add_argument("--connect-timeout", default=defaults.connect_timeout, type=int,
                        help="seconds for a bastion to accept the connection")
    parser.add_argument("--failure-memory", default=defaults.failure_memory, type=int,
                        help="seconds a bastion that failed is skipped (with --bastion)")
    parser.add_argument("--ssh", default=defaults.ssh, help="ssh executable")
    parser.add_argument("words", nargs="+", metavar="[USER@BASTION] TARGET_HOST TARGET_PORT")
    args = parser.parse_args(argv, namespace=defaults)
    if args.bastion:
        if args.control_path or len(args.words) != 2:
            parser.error("with --bastion: no --control-path, and TARGET_HOST TARGET_PORT only")
        for spec in args.bastion:
            if bastion_fields(spec) is None:
                parser.error(f"--bastion {spec!r}: not USER@ADDR,PORT,INSTANCE_ID,CONTROL_PATH")
        args.target_host, args.target_port = args.words
    else:
        if not args.control_path or len(args.words) != 3:
            parser.error("--control-path and USER@BASTION TARGET_HOST TARGET_PORT are required (or --bastion)")
        args.login, args.target_host, args.target_port = args.words
    args.connect_timeout, args.failure_memory = str(args.connect_timeout), str(args.failure_memory)
    return args


def bastion_fields(spec: str) -> list[str] | None:
    """USER@ADDR, PORT, INSTANCE_ID, CONTROL_PATH of one --bastion (the path last: it may hold commas)."""
    fields = spec.split(",", 3)
    if len(fields) != 4 or "@" not in fields[0] or not fields[1].isdigit() or not fields[2].startswith("i-") \
            or not fields[3]:
        return None
    return fields


def parse_args(argv: list[str]) -> HopArgs:
    """The plugin's own command line, without importing argparse (12 ms, once per host connection)."""
    args, positional, index = HopArgs(), [], 0
    while index < len(argv):
        word = argv[index]
        if word in VALUE_OPTIONS or word in LIST_OPTIONS:
            if index + 1 == len(argv):
                return parse_args_fully(argv)
            if word in LIST_OPTIONS:
                getattr(args, LIST_OPTIONS[word]).append(argv[index + 1])
            else:
                setattr(args, VALUE_OPTIONS[word], argv[index + 1])
            index += 2
            continue
        if word.startswith("-"):
            return parse_args_fully(argv)
        positional.append(word)
        index += 1
    if args.bastion:
        if len(positional) != 2 or args.control_path or not all(map(bastion_fields, args.bastion)) \
                or not args.connect_timeout.isdigit() or not args.failure_memory.isdigit():
            return parse_args_fully(argv)
        args.target_host, args.target_port = positional
        return args
    if len(positional) != 3 or not args.control_path:
        return parse_args_fully(argv)
    args.login, args.target_host, args.target_port = positional
    return args


def each_bastion(args: HopArgs) -> list[HopArgs]:
    """One single-bastion HopArgs per --bastion, in order: its login, port and socket, its own pinned instance ID
    (HostKeyAlias first: ssh keeps the first value of an option) and the shared options."""
    bastions = []
    for spec in args.bastion:
        login, port, alias, control_path = bastion_fields(spec)
        one = HopArgs()
        one.__dict__.update(args.__dict__)
        one.bastion = []
        one.login, one.port, one.control_path = login, port, control_path
        one.option = [f"HostKeyAlias={alias}", *args.option]
        bastions.append(one)
    return bastions


def base_command(args: HopArgs) -> list[str]:
    # ssh expands %-tokens in ControlPath: the literal path must not be expanded.
    command = [args.ssh, "-p", str(args.port), "-o", "BatchMode=yes",
               "-o", "ControlPath=" + args.control_path.replace("%", "%%")]
    if args.identity:
        command += ["-i", args.identity, "-o", "IdentitiesOnly=yes"]
    for option in args.option:
        command += ["-o", option]
    return command


def master_alive(args: HopArgs) -> bool:
    """True when a master listens on the socket: what ``ssh -O check`` learns, without starting ssh.

    A socket file whose master died refuses the connection.
    """
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(args.control_path)
    except OSError:
        return False
    finally:
        probe.close()
    return True


def open_master(args: HopArgs) -> tuple[bool, str]:
    """Start the master in the background (-f returns once it is authenticated and listening)."""
    import subprocess
    import tempfile

    if os.path.exists(args.control_path):
        # A socket nobody answers on is left over from a dead master; ssh would refuse to replace it.
        os.unlink(args.control_path)
    command = [*base_command(args), "-o", "ControlMaster=yes", "-o", f"ControlPersist={args.persist}",
               "-o", f"ConnectTimeout={args.connect_timeout}", "-o", "ServerAliveInterval=15",
               "-o", "ServerAliveCountMax=4",
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


def host_key_advice(args: HopArgs) -> str:
    """What to do when the bastion's key is not the pinned one (ssh's own message names only the alias)."""
    options = dict(o.split("=", 1) for o in args.option if "=" in o)
    alias = options.get("HostKeyAlias", args.login)
    known_hosts = options.get("UserKnownHostsFile", "the project's known_hosts file")
    return (f"bastion_hop: the bastion ({alias}) did not present the SSH host key pinned for it in {known_hosts}; "
            "nothing was sent through it. If the instance was legitimately rebuilt, re-pin it: "
            f"ansible-playbook fumidai.vpc.host_keys -e host_keys_repin={alias} (shows old and new "
            "fingerprints); otherwise treat it as a possible man in the middle.\n")


def master_failure(args: HopArgs, memory: float = 0.0) -> str | None:
    """None when the bastion's master is up (opened now if need be), else why not, also kept in the failure file.

    A failure recorded less than ``memory`` seconds ago (or by the hop we waited for under the lock) is
    returned as it is, without trying the bastion again.
    """
    if master_alive(args):
        return None
    import fcntl
    import time

    directory = os.path.dirname(args.control_path) or "."
    os.makedirs(directory, mode=0o700, exist_ok=True)
    failure_file = args.control_path + ".failed"
    waited_since = time.time()
    with open(args.control_path + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if master_alive(args):  # another hop opened it while we waited
            return None
        try:
            failed_at = os.stat(failure_file).st_mtime
            if failed_at >= waited_since - memory:
                # Remembered, or the hop we waited for just failed: do not hammer the bastion with the same attempt.
                with open(failure_file) as reason:
                    return reason.read()
        except FileNotFoundError:
            pass
        ok, text = open_master(args)
        if ok:
            if os.path.exists(failure_file):
                os.unlink(failure_file)
            return None
        message = f"bastion_hop: cannot open the shared connection to {args.login}:\n{text}"
        if HOST_KEY_FAILURE in text:
            message += host_key_advice(args)
        with open(failure_file, "w") as reason:
            reason.write(message)
        return message


def ensure_master(args: HopArgs) -> None:
    message = master_failure(args)
    if message is not None:
        fail(args, message, args.control_path + ".failed")


def usable_bastions(args: HopArgs, reasons: list[str]):
    """Each bastion, in order, whose master is up or opens; why each other one was skipped goes to ``reasons``."""
    memory = float(args.failure_memory)
    for bastion in each_bastion(args):
        message = master_failure(bastion, memory)
        if message is None:
            yield bastion
            continue
        reasons.append(f"bastion_hop: bastion {bastion.login} ({alias_of(bastion)}) failed"
                       f"{age_of(bastion.control_path + '.failed')}, skipped for {args.failure_memory}s:\n"
                       + indented(message))


def first_working_bastion(args: HopArgs) -> HopArgs:
    """The first bastion, in order, whose master is up or opens; exits naming each bastion and why when none does."""
    reasons: list[str] = []
    for bastion in usable_bastions(args, reasons):
        if reasons:
            sys.stderr.write("".join(reasons) + f"bastion_hop: going through {bastion.login} instead\n")
        return bastion
    all_failed(args, reasons)
    raise AssertionError("fail() exits")  # pragma: no cover


def carry_through_first_forward(args: HopArgs) -> None:
    """Two or more bastions: the first whose master is up and whose forward to the target answers (the target's
    SSH banner within --connect-timeout) carries the connection, relayed by hop_relay; exits with its status.

    A forward that times out or is refused is remembered for this target through this bastion
    (``CONTROL_PATH.failed-TARGET:PORT``) and skipped for --failure-memory seconds, like a bastion that failed.
    """
    relay = hop_relay_module()
    memory, reasons, target = float(args.failure_memory), [], target_word(args)
    for bastion in usable_bastions(args, reasons):
        marker = relay.forward_marker(bastion.control_path, bastion.target_host, bastion.target_port)
        why = relay.remembered_failure(marker, memory)
        age = age_of(marker) if why else ""
        if why is None:
            child, first, why = relay.start_forward(forward_command(bastion, target), float(args.connect_timeout))
            if child is not None:
                if reasons:
                    sys.stderr.write("".join(reasons) + f"bastion_hop: going through {bastion.login} instead\n")
                if marker and os.path.exists(marker):
                    os.unlink(marker)
                raise SystemExit(relay.relay(child, first))
            if marker:
                with open(marker, "w") as written:
                    written.write(why + "\n")
        memo = f"skipped for {target} for {args.failure_memory}s" if marker else "not remembered (not an IP address)"
        reasons.append(f"bastion_hop: bastion {bastion.login} ({alias_of(bastion)}) {FORWARD_FAILED} "
                       f"{target} failed{age}, {memo}:\n" + indented(why))
    all_failed(args, reasons)


def hop_relay_module():
    try:
        from . import hop_relay  # imported as part of the collection
    except ImportError:
        import hop_relay  # run by path, as the ProxyCommand runs it: this file's directory is on sys.path
    return hop_relay


def alias_of(bastion: HopArgs) -> str:
    return bastion.option[0].split("=", 1)[1]


def age_of(path: str) -> str:
    import time

    try:
        return f" ({int(time.time() - os.stat(path).st_mtime)}s ago)"
    except OSError:
        return ""


def indented(message: str) -> str:
    return "  " + message.strip().replace("\n", "\n  ") + "\n"


def all_failed(args: HopArgs, reasons: list[str]) -> None:
    first = each_bastion(args)[0]
    summary = first.control_path + ".all-failed"
    message = (f"bastion_hop: no bastion could carry the connection to {args.target_host} "
               f"({len(reasons)} tried, in order):\n" + "".join(reasons))
    with open(summary, "w") as written:
        written.write(message)
    fail(first, message, summary)


def fail(args: HopArgs, message: str, failure_file: str) -> None:
    """Report why the bastion cannot be used, where the person running Ansible will see it, and exit.

    With ControlPersist (Ansible's default) ssh sends a ProxyCommand's stderr to /dev/null, so the full
    message on stderr reaches only plain ssh users. The one line ssh always shows is what it received instead
    of an SSH version string: ``Bad remote protocol version identification: '<first 100 characters>'``.
    So the gist goes there, pointing to the file that holds the whole message.
    """
    sys.stderr.write(message)
    alias = dict(o.split("=", 1) for o in args.option if "=" in o).get("HostKeyAlias", args.login)
    gist = (f"bastion {alias} did not present its pinned host key" if HOST_KEY_FAILURE in message
            else f"cannot reach the bastion {args.login}")
    if failure_file.endswith(".all-failed"):
        gist = ("no bastion could forward to the target" if FORWARD_FAILED in message else "no bastion answered") \
            + ("; one did not present its pinned host key" if HOST_KEY_FAILURE in message else "")
    sys.stdout.write(f"SSH-fumidai-hop: {gist}; see {failure_file}\r\n")
    sys.stdout.flush()
    # 255 is what ssh itself exits with when it cannot connect. (A program's exit, not a module's: modules end
    # with exit_json/fail_json, which is what ansible-test's check for sys.exit in module_utils guards.)
    raise SystemExit(255)


def target_word(args: HopArgs) -> str:
    host = args.target_host
    return f"[{host}]:{args.target_port}" if ":" in host else f"{host}:{args.target_port}"


def forward_command(args: HopArgs, target: str) -> list[str]:
    # ControlMaster=no: use the master; if it vanished meanwhile, ssh falls back to a direct login.
    return [*base_command(args), "-o", "ControlMaster=no", "-W", target, args.login]


def main(argv: list[str] | None = None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if len(args.bastion) > 1:
        carry_through_first_forward(args)
    if args.bastion:
        args = first_working_bastion(args)
    else:
        ensure_master(args)
    command = forward_command(args, target_word(args))
    os.execvp(command[0], command)


if __name__ == "__main__":
    main()
