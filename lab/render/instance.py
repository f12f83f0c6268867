"""Renders an EC2 instance: its boot script (routes, security groups, key pair) and its 'user data' tar."""

from __future__ import annotations

import io
import re
import tarfile
from pathlib import Path

from ansible_collections.fumidai.vpc.plugins.module_utils import login

from lab import config
from lab.podman import network_arg
from lab.proc import LabError
from lab.render import render, text
from lab.render.security_groups import sg_rules

UNIT_NAME = "fumidai-lab-net.service"
# A login user as the generated script spells it (unquoted): login.py's users all have this form.
LOGIN_USER = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
SG_FAMILIES = (
    {"version": 4, "tool": "iptables", "chain": "chain", "jump": "jump_first",
     "title": "Security groups: stateful, allow-lists, default deny."},
    {"version": 6, "tool": "ip6tables", "chain": "chain6", "jump": "jump6_first",
     "title": "The same for IPv6 (the lab's networks are IPv4 only: a v6 rule is enforced, never widened)."},
)


def authorized_key(plan: dict, node: dict) -> str:
    """The public key of the key pair the instance was launched with (what cloud-init installs)."""
    if not node["key_name"]:
        raise LabError(f"instance {node['name']} was launched without a key pair: nobody could log in")
    pair = plan["key_pairs"].get(node["key_name"])
    if pair is None:
        raise LabError(f"instance {node['name']} names key pair {node['key_name']!r}, which moto does not know")
    key = (pair.get("PublicKey") or "").strip()
    if not key:
        # moto returns an imported key with IncludePublicKey (AWS does too); older servers may not.
        key = config.KEY_FILE.with_suffix(".pub").read_text().strip()
    return key


def security_group_rules(plan: dict, node: dict) -> list[dict]:
    """Per address family: the tool, its chain helpers and the node's ingress and egress rule specs."""
    return [{**family, "ingress": sg_rules(plan, node["security_groups"], "in", family["version"]),
             "egress": sg_rules(plan, node["security_groups"], "out", family["version"])}
            for family in SG_FAMILIES]


def login_user(node: dict) -> str:
    user = node.get("login_user") or login.login_user(login.DEFAULT_OS)
    if not LOGIN_USER.fullmatch(user):
        raise LabError(f"instance {node['name']}: login user {user!r} is not a user name")
    return user


def net_script(plan: dict, node: dict) -> str:
    return render("instance-net.sh", plan=plan, node=node, sg=security_group_rules(plan, node),
                  user=login_user(node), key=authorized_key(plan, node))


def unit() -> str:
    return text(UNIT_NAME)


def files(plan: dict, node: dict) -> dict:
    return {"net.sh": (net_script(plan, node), 0o755)}


def run_args(plan: dict, node: dict, files_dir: Path) -> list[str]:
    # -t gives the instance a console (/dev/console): what it prints there is its EC2 console output.
    return ["-t", "--network", network_arg(config.NET_VPC, node["ip"], node["mac"]),
            "--sysctl", "net.ipv4.ip_forward=0", config.IMAGE]


def profile_credentials(node: dict, aws_env: dict[str, str]) -> str | None:
    """The lab's stand-in for an instance profile: on EC2 boto3 on the instance gets the profile's role
    credentials from the instance metadata service; the lab has none, so an instance launched with a profile
    gets the local API's credentials in root's shared credentials file (where boto3 looks before IMDS).
    None for an instance without a profile: it has no credentials at all, as on EC2."""
    if not node.get("instance_profile"):
        return None
    return ("# The lab's stand-in for the instance profile's credentials (python -m lab)\n"
            "[default]\n"
            f"aws_access_key_id = {aws_env['AWS_ACCESS_KEY_ID']}\n"
            f"aws_secret_access_key = {aws_env['AWS_SECRET_ACCESS_KEY']}\n")


def boot_payload(script: str, credentials: str | None = None) -> bytes:
    """A tar of the files the instance gets before it boots (its 'user data'; the profile's credentials)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        def add(path: str, data: str, mode: int) -> None:
            info = tarfile.TarInfo(path)
            info.size, info.mode = len(data.encode()), mode
            tar.addfile(info, io.BytesIO(data.encode()))
        add("usr/local/sbin/fumidai-lab-net", script, 0o755)
        add(f"etc/systemd/system/{UNIT_NAME}", unit(), 0o644)
        link = tarfile.TarInfo(f"etc/systemd/system/multi-user.target.wants/{UNIT_NAME}")
        link.type, link.linkname = tarfile.SYMTYPE, f"/etc/systemd/system/{UNIT_NAME}"
        tar.addfile(link)
        if credentials is not None:
            folder = tarfile.TarInfo("root/.aws")
            folder.type, folder.mode = tarfile.DIRTYPE, 0o700
            tar.addfile(folder)
            add("root/.aws/credentials", credentials, 0o600)
    return buf.getvalue()
