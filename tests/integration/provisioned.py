"""The integration suite's one provisioned stack: provision.yml run twice on a moto server of its own.

provision.yml against moto is the suite's most expensive step (two to four minutes). The tests that look at
what provisioning leaves behind (test_provision, the inventory, the doctor and the audit after provisioning,
the seeder's comparison) share one run through the session fixture ``provisioned_stack`` (tests/integration/
conftest.py), on a server that no other test resets, and carry ``pytestmark = XDIST_GROUP`` so that
pytest-xdist runs them on one worker (one provisioning per run).
"""

from __future__ import annotations

import json
import subprocess

import boto3
import pytest

from lab import moto_local
from tests.support.aws_plans import ADMIN_CIDR, REGION
from tests.support.playbook import run_playbook

XDIST_GROUP = pytest.mark.xdist_group("provisioned_stack")


def provisioned_stack(tmp_path_factory):
    """playbooks/provision.yml run twice (create, then a run that must change nothing) on a moto server of
    its own; the key given by its one setting (FUMIDAI_SSH_PRIVATE_KEY), host keys pinned into a file of
    its own. Read-only for its users: none of them changes or resets it."""
    tmp = tmp_path_factory.mktemp("provisioned")
    port = moto_local.free_port()
    endpoint = f"http://127.0.0.1:{port}"
    server = moto_local.spawn(port, tmp / "moto.log")
    try:
        moto_local.wait_until_up(endpoint)
        key = tmp / "id_ed25519"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "fumidai-test", "-f", str(key)],
                       check=True)
        env = {**moto_local.environment(endpoint, REGION), "FUMIDAI_OUTPUTS_FILE": str(tmp / "outputs.yml"),
               "FUMIDAI_SSH_PRIVATE_KEY": str(key), "FUMIDAI_KNOWN_HOSTS": str(tmp / "known_hosts"),
               "ANSIBLE_INVENTORY_CACHE": "false"}
        extra = ["-e", json.dumps({"admin_cidrs": [ADMIN_CIDR]})]
        first = run_playbook("playbooks/provision.yml", *extra, env=env, check=True)
        second = run_playbook("playbooks/provision.yml", *extra, env=env, check=True)
        session = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION)
        yield {"first": first, "second": second, "env": env, "endpoint": endpoint, "admin_cidr": ADMIN_CIDR,
               "outputs": tmp / "outputs.yml", "pub": key.with_suffix(".pub"),
               "known_hosts": tmp / "known_hosts",
               **{name: session.client(name, endpoint_url=endpoint) for name in ("ec2", "elbv2")}}
    finally:
        moto_local.stop_pid(server.pid)
