#!/usr/bin/python
# MIT License (see LICENSE)
"""fumidai.vpc.host_keys: pin instances' SSH host keys from their EC2 console output (or unpin them)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: host_keys
short_description: Pin EC2 instances' SSH host keys, read from their console output, by instance ID
description:
  - Reads each instance's console output (EC2 GetConsoleOutput, with C(Latest) where the instance type supports
    it), finds the host public keys cloud-init printed between C(-----BEGIN SSH HOST KEY KEYS-----) and
    C(-----END SSH HOST KEY KEYS-----), and writes them to a known_hosts file keyed by instance ID, so that
    connections that name the instance ID as C(HostKeyAlias) verify exactly that instance.
  - Polls until every instance has printed its keys (first boot takes a minute or two), and fails with the
    instances still missing when I(timeout) runs out.
  - A pinned key is never replaced silently and its instance's console is not read again, unless the instance is
    listed in I(repin) (a legitimately rebuilt instance); then the old and new fingerprints are returned.
  - With I(state=absent) removes the instances' lines (after teardown). Supports check mode (reports, writes nothing).
  - Console output is a channel AWS fills from the instance's serial console, not from the network, so a man in
    the middle cannot forge it; whoever controls the instance can, but then the instance is theirs anyway.
options:
  instance_ids:
    description: The instances to pin (or unpin).
    type: list
    elements: str
    required: true
  names:
    description:
      - Display names by instance ID, for messages only (tag values are untrusted, so anything but
        letters, digits, C(.), C(_) and C(-) is shown as the instance ID).
    type: dict
    default: {}
  known_hosts_file:
    description: The project's known_hosts file (created with mode 0600 in a 0700 directory).
    type: path
    required: true
  key_types:
    description: Key types to pin. The roles never regenerate ed25519 keys; do not pin a type a role regenerates.
    type: list
    elements: str
    default: [ssh-ed25519]
  repin:
    description:
      - Instances whose pinned keys may be replaced by what their console output shows now (a legitimately
        rebuilt instance). C(all) means every instance in I(instance_ids). The old and new fingerprints are returned.
    type: list
    elements: str
    default: []
  timeout:
    description: Seconds to wait for every instance's keys to appear in its console output.
    type: int
    default: 600
  poll_interval:
    description: Seconds between two reads of the console output of instances still without keys.
    type: int
    default: 10
  state:
    description: C(present) pins, C(absent) removes the instances' lines.
    type: str
    choices: [present, absent]
    default: present
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
author: fumidai maintainers (@fumidai)
"""

EXAMPLES = r"""
- name: Pin the bastion's and the web servers' ed25519 host keys
  fumidai.vpc.host_keys:
    instance_ids: [i-0123456789abcdef0, i-0fedcba9876543210]
    names: {i-0123456789abcdef0: bastion, i-0fedcba9876543210: web01}
    known_hosts_file: "{{ known_hosts_file }}"

- name: Re-pin web01 after it was rebuilt (shows old and new fingerprints)
  fumidai.vpc.host_keys:
    instance_ids: [i-0fedcba9876543210]
    known_hosts_file: "{{ known_hosts_file }}"
    repin: [i-0fedcba9876543210]
"""

RETURN = r"""
host_keys:
  description: One entry per instance.
  type: list
  elements: dict
  returned: always
  contains:
    instance_id: {description: The instance., type: str}
    name: {description: "Its display name (safe characters only, else the instance ID).", type: str}
    status: {description: "C(pinned) (new), C(unchanged), C(repinned) or C(removed).", type: str}
    fingerprints: {description: "Pinned keys as C(<type> SHA256:...)", type: list, elements: str}
    previous_fingerprints: {description: What was pinned before (re-pin and removal)., type: list, elements: str}
known_hosts_file:
  description: The file written.
  type: str
  returned: always
"""

import fcntl
import os
import time

from ansible_collections.amazon.aws.plugins.module_utils.botocore import is_boto3_error_code
from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule
from ansible_collections.fumidai.vpc.plugins.module_utils.fumidai_host_keys import (
    DEFAULT_KEY_TYPES,
    KEY_TYPES,
    HostKeyError,
    fingerprints,
    parse_console_host_keys,
    read_known_hosts,
    select_keys,
    valid_instance_id,
    write_known_hosts,
)
from ansible_collections.fumidai.vpc.plugins.module_utils.ssh_args import SAFE_HOST_NAME


def display_name(instance_id: str, names: dict) -> str:
    name = names.get(instance_id)
    return f"{name} ({instance_id})" if isinstance(name, str) and SAFE_HOST_NAME.match(name) else instance_id


class ConsoleReader:
    """GetConsoleOutput, asking for the live serial output first (Nitro types) and the buffer otherwise."""

    def __init__(self, client, module) -> None:
        self.client = client
        self.module = module
        self.latest_supported = True

    def read(self, instance_id: str) -> str:
        if self.latest_supported:
            try:
                return self._call(instance_id, Latest=True)
            except is_boto3_error_code(["UnsupportedOperation", "InvalidParameterCombination", "InvalidParameter"]):
                self.latest_supported = False
        return self._call(instance_id)

    def _call(self, instance_id: str, **extra) -> str:
        response = self.client.get_console_output(InstanceId=instance_id, **extra)
        # boto3 decodes the base64 Output itself; it is absent until the instance has printed something.
        return response.get("Output") or ""


def wait_for_keys(module, reader: ConsoleReader, instance_ids: list[str], key_types: list[str]) -> dict:
    """{instance_id: [(type, key)]} once every instance printed keys of an allowed type."""
    params = module.params
    deadline = time.monotonic() + params["timeout"]
    found: dict[str, list[tuple[str, str]]] = {}
    notes: dict[str, str] = {}
    while True:
        for instance_id in instance_ids:
            if instance_id in found:
                continue
            try:
                text = reader.read(instance_id)
            except is_boto3_error_code("InvalidInstanceID.NotFound"):
                module.fail_json(msg=f"instance {display_name(instance_id, params['names'])} does not exist")
            except Exception as exc:  # noqa: BLE001 - botocore errors become one readable message
                module.fail_json_aws(exc, msg=f"cannot read the console output of "
                                              f"{display_name(instance_id, params['names'])}")
            try:
                keys = parse_console_host_keys(text)
            except HostKeyError as exc:
                module.fail_json(msg=f"{display_name(instance_id, params['names'])}: {exc}. Inspect the console "
                                     "output (EC2 console: Actions > Monitor and troubleshoot > Get system log).")
            wanted = select_keys(keys, key_types)
            if wanted:
                found[instance_id] = wanted
            elif keys:
                notes[instance_id] = (f"printed only {', '.join(sorted({t for t, _k in keys}))} keys, none of "
                                      f"{', '.join(key_types)}")
        missing = [i for i in instance_ids if i not in found]
        if not missing:
            return found
        if time.monotonic() >= deadline:
            shown = "; ".join(display_name(i, params["names"]) + (f" ({notes[i]})" if i in notes else "")
                              for i in missing)
            module.fail_json(
                msg=f"No SSH host keys in the console output of {shown} after {params['timeout']} s. "
                    "cloud-init prints them at the end of the first boot; check that the instance booted "
                    "(EC2 console: Get system log), that cloud-init's ssh.emit_keys_to_console is not false and "
                    "that ssh_key_console_blacklist does not list the pinned key types. Nothing was pinned for them; "
                    "without a pinned key fumidai does not connect.",
                missing=missing)
        time.sleep(params["poll_interval"])


def main() -> None:
    module = AnsibleAWSModule(
        argument_spec={
            "instance_ids": {"type": "list", "elements": "str", "required": True},
            "names": {"type": "dict", "default": {}},
            "known_hosts_file": {"type": "path", "required": True},
            "key_types": {"type": "list", "elements": "str", "default": list(DEFAULT_KEY_TYPES), "no_log": False},
            "repin": {"type": "list", "elements": "str", "default": []},
            "timeout": {"type": "int", "default": 600},
            "poll_interval": {"type": "int", "default": 10},
            "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
        },
        supports_check_mode=True,
    )
    params = module.params
    instance_ids = list(dict.fromkeys(params["instance_ids"]))
    bad = [i for i in instance_ids if not valid_instance_id(i)]
    if bad:
        module.fail_json(msg=f"instance_ids: not instance IDs: {', '.join(repr(i)[:40] for i in bad)}")
    unknown_types = [t for t in params["key_types"] if t not in KEY_TYPES]
    if unknown_types or not params["key_types"]:
        module.fail_json(msg=f"key_types: must be a non-empty list of {', '.join(KEY_TYPES)} (got {unknown_types})")
    repin = set(instance_ids) if "all" in params["repin"] else set(params["repin"])
    path = params["known_hosts_file"]

    try:
        pinned_before = read_known_hosts(path)
    except HostKeyError as exc:
        module.fail_json(msg=f"the known_hosts file cannot be trusted as it is: {exc}")
    # A pinned key stays authoritative until a deliberate re-pin: the console is read only for new instances
    # and re-pins (an old instance's first-boot output may have left the console's 64 KB window long ago).
    to_read = [i for i in instance_ids if i not in pinned_before or i in repin]
    found: dict = {}
    if params["state"] == "present" and to_read:
        reader = ConsoleReader(module.client("ec2"), module)
        found = wait_for_keys(module, reader, to_read, params["key_types"])

    # Under a lock: two runs (a provision and a re-pin) must not lose each other's lines.
    os.makedirs(os.path.dirname(os.path.abspath(path)), mode=0o700, exist_ok=True)
    with open(path + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            pinned = read_known_hosts(path)
        except HostKeyError as exc:
            module.fail_json(msg=f"the known_hosts file cannot be trusted as it is: {exc}")
        results = []
        for instance_id in instance_ids:
            before = pinned.get(instance_id, [])
            entry = {"instance_id": instance_id, "name": display_name(instance_id, params["names"]),
                     "previous_fingerprints": fingerprints(before)}
            if params["state"] == "absent":
                if before:
                    del pinned[instance_id]
                entry.update(status="removed" if before else "unchanged", fingerprints=[])
            else:
                now = found.get(instance_id, before)
                if not before:
                    entry["status"] = "pinned"
                elif sorted(before) == sorted(now):
                    entry["status"] = "unchanged"
                else:
                    entry["status"] = "repinned"
                entry["fingerprints"] = fingerprints(now)
                if entry["status"] in ("pinned", "repinned"):
                    pinned[instance_id] = now
            results.append(entry)
        changed = any(r["status"] in ("pinned", "repinned", "removed") for r in results)
        if changed and not module.check_mode:
            write_known_hosts(path, pinned)
    module.exit_json(changed=changed, host_keys=results, known_hosts_file=path)


if __name__ == "__main__":
    main()
