"""The integration suite's shared provisioned stack: provision.yml on a moto server of its own, once per worker.

provision.yml against moto is the suite's most expensive step (about two minutes here). The tests that only look
at what provisioning leaves behind (test_provision, the inventory, the doctor and the audit after provisioning,
the seeder's comparison) share one run per pytest-xdist worker through the session fixture
``provisioned_stack`` (tests/integration/conftest.py), on a server that no other test resets; test_provision's
second run (which must change nothing) is made only when a test asks for it (``second_run``).

Its server passes resources through AWS's pending states (``TRANSITIONS``, lab/moto_transitions.py): instances are
``pending``, the NAT gateway ``pending`` and the ALB ``provisioning`` for a few seconds, so provisioning's waits are
exercised: a task that needs a running instance or an available gateway and does not wait fails here as on AWS.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import boto3

from lab import moto_local
from tests.support.aws_plans import ADMIN_CIDR, ADMIN_CIDR_V6, REGION
from tests.support.playbook import run_playbook

TRANSITIONS = {"instance": 2, "nat_gateway": 3, "load_balancer": 2}  # seconds in the pending state, per kind


@dataclass
class ProvisionedStack:
    """What one provisioning left: its run, its environment (endpoint, key, pins, outputs) and clients."""

    endpoint: str
    env: dict
    extra: list
    first: subprocess.CompletedProcess
    outputs: Path
    pub: Path
    known_hosts: Path
    admin_cidrs: tuple[str, ...] = (ADMIN_CIDR, ADMIN_CIDR_V6)
    _second: subprocess.CompletedProcess | None = field(default=None, repr=False)

    def client(self, service: str):
        return boto3.client(service, endpoint_url=self.endpoint, region_name=REGION,
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    def second_run(self) -> subprocess.CompletedProcess:
        """provision.yml again with the same settings (made once, on first use)."""
        if self._second is None:
            self._second = run_playbook("playbooks/provision.yml", *self.extra, env=self.env, check=True)
        return self._second


def provisioned_stack(tmp_path_factory, settings: dict | None = None):
    """playbooks/provision.yml on a moto server of its own (with state transitions); the key given by its one setting
    (FUMIDAI_SSH_PRIVATE_KEY), an IPv4 and an IPv6 admin range (and ``settings``, extra vars), host keys pinned into
    a file of its own. Read-only for its users."""
    tmp = tmp_path_factory.mktemp("provisioned")
    port = moto_local.free_port()
    endpoint = f"http://127.0.0.1:{port}"
    server = moto_local.spawn(port, tmp / "moto.log", transitions=TRANSITIONS)
    try:
        moto_local.wait_until_up(endpoint)
        key = tmp / "id_ed25519"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "fumidai-test", "-f", str(key)],
                       check=True)
        env = {**moto_local.environment(endpoint, REGION), "FUMIDAI_OUTPUTS_FILE": str(tmp / "outputs.yml"),
               "FUMIDAI_SSH_PRIVATE_KEY": str(key), "FUMIDAI_KNOWN_HOSTS": str(tmp / "known_hosts"),
               "ANSIBLE_INVENTORY_CACHE": "false"}
        extra = ["-e", json.dumps({"admin_cidrs": [ADMIN_CIDR, ADMIN_CIDR_V6], **(settings or {})})]
        first = run_playbook("playbooks/provision.yml", *extra, env=env, check=True)
        yield ProvisionedStack(endpoint, env, extra, first, tmp / "outputs.yml", key.with_suffix(".pub"),
                               tmp / "known_hosts")
    finally:
        moto_local.stop_pid(server.pid)
