"""ssh arguments and ssh_config entries: the one place fumidai escapes values for ssh and names control sockets.

Values that reach ssh come partly from AWS (instance IDs, addresses, Name tags) and are untrusted: a Name
tag such as ``0 *`` would become a ``Host`` pattern matching every alias, one with a newline followed by
``Match exec "..."`` would run a command on the operator's machine merely by reading the config. So:

* inventory host names are limited to a safe set (``safe_host_name``); anything else is replaced by the
  instance ID before it gets anywhere;
* every value written into an ssh_config line or an ``-o`` option is checked (``ssh_config_entry`` refuses
  what it cannot write safely) and quoted/%-escaped where ssh would split or expand it;
* the host-key options are built here only (``host_key_options``): strict checking against the project's
  pinned known_hosts file, with the instance ID as ``HostKeyAlias``.

* the bastion master's socket is named here only (``control_path_for``), for the hop, Ansible's own connection
  to the bastion and a person's ``ssh -F``: one scheme, so all of them share one master.

Pure Python; used by the inventory plugin, the ``fumidai.vpc.ssh_config`` filter (plugins/filter/ssh_client.py),
the lab and the tests.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import re
import shlex

# Letters, digits, '.', '_' and '-'; 1-63 characters; not starting with '-' or '.' (an ssh argument that
# starts with '-' is an option, a leading '.' reads as a relative name).
SAFE_HOST_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,62}$")
RESERVED_HOST_NAMES = frozenset({"localhost", "all", "ungrouped"})
INSTANCE_ID = re.compile(r"^i-[0-9a-f]{8}(?:[0-9a-f]{9})?$")
LOGIN_USER = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
# -o options that decide whom ssh trusts or what it runs: fumidai sets the first ones itself and never lets a
# setting weaken them.
FORBIDDEN_OPTIONS = frozenset(o.lower() for o in (
    "StrictHostKeyChecking", "UserKnownHostsFile", "GlobalKnownHostsFile", "HostKeyAlias", "KnownHostsCommand",
    "UpdateHostKeys", "VerifyHostKeyDNS", "CheckHostIP", "ProxyCommand", "ProxyJump", "LocalCommand",
    "PermitLocalCommand", "RemoteCommand", "Match", "Include", "Host", "ControlPath", "ControlMaster"))
_OPTION = re.compile(r"^([A-Za-z][A-Za-z0-9]*)[= ](\S(?:.*\S)?)$")


class SshValueError(ValueError):
    """A value that cannot be written into an ssh option or config safely."""


def safe_host_name(name: object) -> bool:
    return isinstance(name, str) and bool(SAFE_HOST_NAME.match(name)) and name.lower() not in RESERVED_HOST_NAMES


def shown(value: object, limit: int = 40) -> str:
    """An untrusted value as it may appear in a message: ASCII-escaped, quoted, cut to ``limit`` characters."""
    text = str(value)
    cut = text[:limit]
    return ascii(cut) + ("..." if len(text) > limit else "")


def ssh_percent_escape(text: str) -> str:
    """ssh expands %-tokens in ProxyCommand, ControlPath, UserKnownHostsFile...: a literal % must be written %%."""
    return str(text).replace("%", "%%")


def proxy_word(text: str) -> str:
    """One literal word of a ProxyCommand: shell-quoted (ssh runs it with sh -c) and %-escaped."""
    return ssh_percent_escape(shlex.quote(str(text)))


def config_path(path: str) -> str:
    """A file path as an ssh_config / -o value: double-quoted (paths may hold spaces), %-escaped.

    ssh_config has no escape for a double quote, and expands ${VAR} in some path options: refuse both,
    and control characters, rather than write something ssh would read differently.
    """
    text = str(path)
    if not text or '"' in text or "${" in text or any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise SshValueError(f"path {shown(text)} cannot be written into an ssh config (quote, ${{, control character)")
    return '"' + ssh_percent_escape(text) + '"'


def pinned_key_options(known_hosts_file: str) -> list[str]:
    """ssh -o options that trust the pinned known_hosts file only, strictly (the HostKeyAlias is per host)."""
    return ["StrictHostKeyChecking=yes", "UserKnownHostsFile=" + config_path(known_hosts_file), "UpdateHostKeys=no"]


def host_key_alias(instance_id: str) -> str:
    """The HostKeyAlias option naming ``instance_id``, the name its key is pinned under."""
    if not INSTANCE_ID.match(str(instance_id)):
        raise SshValueError(f"{shown(instance_id)} is not an instance ID")
    return f"HostKeyAlias={instance_id}"


def host_key_options(instance_id: str, known_hosts_file: str) -> list[str]:
    """ssh -o options that verify ``instance_id``'s pinned host key and nothing else."""
    alias = host_key_alias(instance_id)
    return pinned_key_options(known_hosts_file) + [alias]


def check_user_options(options: list[str]) -> list[str]:
    """User-supplied -o options, refusing any that would weaken host key checking or run commands."""
    checked = []
    for option in options or []:
        match = _OPTION.match(str(option))
        if not match or any(ord(c) < 32 for c in str(option)):
            raise SshValueError(f"ssh option {shown(option)} is not of the form Key=value")
        if match.group(1).lower() in FORBIDDEN_OPTIONS:
            raise SshValueError(f"ssh option {match.group(1)} is set by fumidai and cannot be overridden "
                                "(host keys are always checked against the pinned known_hosts file)")
        checked.append(str(option))
    return checked


def control_path_for(directory: str, user: str, address: str, port: int) -> str:
    """The shared master's socket for one bastion login: the same literal path for the hop, Ansible's own
    connection to the bastion and a person's ``ssh -F`` (so all three share one connection), short enough
    for a unix socket, with no token for ssh to expand per target."""
    digest = hashlib.sha1(f"{user}@{address}:{port}".encode()).hexdigest()[:12]
    return os.path.join(os.path.expanduser(directory), f"fumidai-hop-{digest}")


def ansible_control_path(path: str) -> str:
    """A literal socket path as ``ansible_control_path``: Ansible %-formats the value (``%(directory)s``)
    before ssh expands its own %-tokens, so a literal % is escaped for both."""
    return ssh_percent_escape(path).replace("%", "%%")


def common_args(options: list[str]) -> str:
    """``-o`` options as ansible_ssh_common_args (Ansible shlex-splits it; ssh takes each word as one option)."""
    return " ".join("-o " + shlex.quote(option) for option in options)


# --------------------------------------------------------------------------- ssh_config entries
def _address(value: object) -> str:
    try:
        return str(ipaddress.ip_address(str(value)))
    except ValueError:
        raise SshValueError(f"HostName {shown(value)} is not an IP address") from None


def proxy_command_of(common_args: str) -> str | None:
    """The ProxyCommand of an ``ansible_ssh_common_args`` (the inventory's hop, as ssh reads it), or None."""
    try:
        words = shlex.split(str(common_args))
    except ValueError:
        raise SshValueError(f"ssh arguments {shown(common_args)} are not shell words") from None
    for index, word in enumerate(words):
        if index and words[index - 1] == "-o" and word.startswith("ProxyCommand="):
            return word[len("ProxyCommand="):]
    return None


def ssh_config_entry(entry: dict) -> list[str]:
    """The lines of one ``Host`` block, every value checked; raises SshValueError on anything unsafe.

    ``entry``: name, address, instance_id, user, port, identity_file, known_hosts_file, jump (a Host name or
    empty), proxy_args (the host's ansible_ssh_common_args: its ProxyCommand, the hop through several bastions,
    replaces jump), control (dict with dir, persist; for the bastion), note (a comment line without control
    characters).
    """
    name = entry["name"]
    if not safe_host_name(name):
        raise SshValueError(f"host name {shown(name)} is not safe as an ssh Host pattern")
    lines = []
    if entry.get("note"):
        note = str(entry["note"])
        if any(ord(c) < 32 for c in note):
            raise SshValueError(f"comment {shown(note)} holds control characters")
        lines.append(f"# {note}")
    lines += [f"Host {name}", f"    HostName {_address(entry['address'])}"]
    user = entry.get("user")
    if user:
        if not LOGIN_USER.match(str(user)):
            raise SshValueError(f"login user {shown(user)} is not a user name")
        lines.append(f"    User {user}")
    port = entry.get("port")
    if port not in (None, ""):
        if not str(port).isdigit() or not 0 < int(port) < 65536:
            raise SshValueError(f"port {shown(port)} is not a TCP port")
        lines.append(f"    Port {int(port)}")
    if entry.get("identity_file"):
        lines += [f"    IdentityFile {config_path(entry['identity_file'])}", "    IdentitiesOnly yes"]
    for option in host_key_options(entry["instance_id"], entry["known_hosts_file"]):
        key, value = option.split("=", 1)
        lines.append(f"    {key} {value}")
    jump = entry.get("jump")
    proxy = proxy_command_of(entry["proxy_args"]) if entry.get("proxy_args") else None
    if proxy:
        if any(ord(c) < 32 or ord(c) == 127 for c in proxy):
            raise SshValueError(f"ProxyCommand {shown(proxy)} holds control characters")
        lines += ["    # Through the first bastion that answers, its own zone's first (bastion_per_az).",
                  f"    ProxyCommand {proxy}"]
    elif jump:
        if not safe_host_name(jump):
            raise SshValueError(f"jump host {shown(jump)} is not a safe Host name")
        lines.append(f"    ProxyJump {jump}")
    control = entry.get("control")
    if control:
        persist = str(control["persist"])
        if not re.match(r"^(yes|no|\d+[smhdw]?)$", persist):
            raise SshValueError(f"ControlPersist {shown(persist)} is not a duration")
        path = control_path_for(control["dir"], user or "", _address(entry["address"]), int(port or 22))
        lines += ["    # Every session and every jump through the bastion share one connection (Ansible's too).",
                  "    ControlMaster auto", f"    ControlPath {config_path(path)}",
                  f"    ControlPersist {persist}", "    ServerAliveInterval 15"]
    return lines


def render_ssh_config(entries: list[dict]) -> str:
    blocks = ["\n".join(ssh_config_entry(entry)) for entry in entries]
    return "\n\n".join(blocks) + "\n"
