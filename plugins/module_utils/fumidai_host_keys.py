"""SSH host keys pinned by instance ID: read from EC2 console output, kept in a project known_hosts file.

At first boot cloud-init prints an instance's host public keys to its serial console, between
``-----BEGIN SSH HOST KEY KEYS-----`` and ``-----END SSH HOST KEY KEYS-----`` (its helper pipes them
through ``logger --stderr``, so each line may carry a syslog prefix such as ``<14>Dec  1 10:00:00 ec2: ``).
EC2 returns that console through GetConsoleOutput: a channel that does not pass through the network
path a man in the middle would sit on. fumidai pins those keys in its own known_hosts file under the
instance ID, and every connection names the instance ID as ``HostKeyAlias``, so an address (or an
Elastic IP) that moves to another instance can never make ssh accept that instance's key.

Pure Python (standard library only): used by the fumidai_host_keys module, the inventory plugin, the
audit, the lab and the tests. Imported as ``ansible_collections.fumidai.vpc.plugins.module_utils.fumidai_host_keys``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
import struct
import tempfile

BEGIN_KEYS = "-----BEGIN SSH HOST KEY KEYS-----"
END_KEYS = "-----END SSH HOST KEY KEYS-----"
# Key types ssh can pin; the roles never regenerate ed25519 keys (the bastion role regenerates weak RSA keys),
# so ed25519 is what fumidai pins by default.
KEY_TYPES = ("ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521", "ssh-rsa",
             "sk-ssh-ed25519@openssh.com", "sk-ecdsa-sha2-nistp256@openssh.com")
DEFAULT_KEY_TYPES = ("ssh-ed25519",)
INSTANCE_ID = re.compile(r"^i-[0-9a-f]{8}(?:[0-9a-f]{9})?$")
# A public key as it appears on a console line: the type, then the base64 blob (anything before it is a prefix).
_KEY_ON_LINE = re.compile(r"(?:^|[\s:])(" + "|".join(re.escape(t) for t in KEY_TYPES)
                          + r") ([A-Za-z0-9+/]+={0,2})(?:\s|$)")
# Console text may contain terminal escapes and carriage returns (a serial console is a terminal).
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")

HEADER = ("# SSH host keys pinned by fumidai, one line per key: <instance-id> <key-type> <key>.\n"
          "# Written from each instance's EC2 console output (playbooks/host_keys.yml); do not edit by hand.\n")


class HostKeyError(Exception):
    """Console output or a known_hosts file that cannot be trusted as it is."""


def valid_instance_id(value: object) -> bool:
    return isinstance(value, str) and bool(INSTANCE_ID.match(value))


def key_blob_type(key_b64: str) -> str | None:
    """The key type encoded inside a public key blob (SSH wire format), or None if it is not one."""
    try:
        blob = base64.b64decode(key_b64, validate=True)
    except (binascii.Error, ValueError):
        return None
    if len(blob) < 4:
        return None
    (length,) = struct.unpack(">I", blob[:4])
    if length == 0 or length > 64 or len(blob) < 4 + length:
        return None
    try:
        return blob[4:4 + length].decode("ascii")
    except UnicodeDecodeError:
        return None


def fingerprint(key_b64: str) -> str:
    """OpenSSH's SHA256 fingerprint of a public key (what ``ssh-keygen -l`` prints)."""
    digest = hashlib.sha256(base64.b64decode(key_b64)).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def _clean(line: str) -> str:
    return _ANSI.sub("", line).replace("\r", "").strip()


def parse_console_host_keys(text: str) -> list[tuple[str, str]]:
    """The host public keys cloud-init printed to the console, as (key_type, base64) pairs.

    Only complete BEGIN/END blocks count (a block cut off by the console's 64 KB window or still being
    written yields nothing yet). A key whose blob does not encode its stated type is refused. The console
    may hold the block more than once (a reboot that prints again): identical blocks are one answer;
    blocks that differ are an error, because something other than first boot printed keys.
    """
    blocks: list[list[tuple[str, str]]] = []
    current: list[tuple[str, str]] | None = None
    for raw in (text or "").splitlines():
        line = _clean(raw)
        if line.endswith(BEGIN_KEYS):
            current = []
            continue
        if current is None:
            continue
        if line.endswith(END_KEYS):
            blocks.append(current)
            current = None
            continue
        match = _KEY_ON_LINE.search(line)
        if not match:
            continue  # another process's console line interleaved with the block
        key_type, key_b64 = match.groups()
        if key_blob_type(key_b64) != key_type:
            raise HostKeyError(f"console output holds a malformed {key_type} key (its blob is not a {key_type} key)")
        if (key_type, key_b64) not in current:
            current.append((key_type, key_b64))
    distinct = []
    for block in blocks:
        if block and sorted(block) not in [sorted(b) for b in distinct]:
            distinct.append(block)
    if len(distinct) > 1:
        shown = "; ".join(", ".join(fingerprint(k) for _t, k in block) for block in distinct)
        raise HostKeyError(f"console output holds {len(distinct)} different sets of host keys ({shown}): "
                           "something other than the first boot printed keys, so none of them is trusted")
    return distinct[0] if distinct else []


def select_keys(keys: list[tuple[str, str]], key_types: list[str] | tuple[str, ...]) -> list[tuple[str, str]]:
    return [(t, k) for t, k in keys if t in key_types]


# --------------------------------------------------------------------------- the known_hosts file
def parse_known_hosts(text: str) -> dict[str, list[tuple[str, str]]]:
    """{instance-id: [(key_type, base64), ...]} from fumidai's known_hosts format.

    Lines that are not ``<instance-id> <type> <key>`` are refused: this file decides whom ssh trusts,
    so anything unexpected in it is a reason to stop, not to skip.
    """
    pinned: dict[str, list[tuple[str, str]]] = {}
    for number, raw in enumerate((text or "").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split()
        if (len(fields) != 3 or not valid_instance_id(fields[0]) or fields[1] not in KEY_TYPES
                or key_blob_type(fields[2]) != fields[1]):
            raise HostKeyError(f"line {number} is not '<instance-id> <key-type> <key>': {line[:80]!r}")
        pinned.setdefault(fields[0], [])
        if (fields[1], fields[2]) not in pinned[fields[0]]:
            pinned[fields[0]].append((fields[1], fields[2]))
    return pinned


def read_known_hosts(path: str) -> dict[str, list[tuple[str, str]]]:
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except FileNotFoundError:
        return {}
    try:
        return parse_known_hosts(text)
    except HostKeyError as exc:
        raise HostKeyError(f"{path}: {exc}") from None


def render_known_hosts(pinned: dict[str, list[tuple[str, str]]]) -> str:
    lines = [f"{instance_id} {key_type} {key}" for instance_id in sorted(pinned)
             for key_type, key in pinned[instance_id]]
    return HEADER + "".join(line + "\n" for line in lines)


def write_known_hosts(path: str, pinned: dict[str, list[tuple[str, str]]]) -> None:
    """Replace the file atomically (a reader never sees half a file), mode 0600, directory 0700."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, mode=0o700, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=".known_hosts.", dir=directory)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(render_known_hosts(pinned))
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def fingerprints(keys: list[tuple[str, str]]) -> list[str]:
    return [f"{key_type} {fingerprint(key)}" for key_type, key in keys]
