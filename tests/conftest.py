"""Shared pytest fixtures: a moto server per test session, and a way to run
the project's real ansible-playbook against it."""

from __future__ import annotations

import os
import sys
import urllib.request

import boto3
import pytest
from ansible.plugins.loader import init_plugin_loader

from lab import moto_local
from tests.support.playbook import ROOT

# Plugins load as Ansible loads them: by fully qualified name, through the collection loader
# over the checkout's collections path (the tests import module_utils through it too).
init_plugin_loader([str(ROOT / ".collections")])


@pytest.fixture(scope="session", autouse=True)
def pinned_keys_stay_out_of_the_project(tmp_path_factory):
    """Provisioning pins host keys in known_hosts_file: tests pin into a file of their own, never into the
    project's .cache/known_hosts (a test that needs a specific file sets FUMIDAI_KNOWN_HOSTS itself)."""
    saved = os.environ.get("FUMIDAI_KNOWN_HOSTS")
    os.environ["FUMIDAI_KNOWN_HOSTS"] = str(tmp_path_factory.mktemp("pins") / "known_hosts")
    yield
    if saved is None:
        os.environ.pop("FUMIDAI_KNOWN_HOSTS", None)
    else:
        os.environ["FUMIDAI_KNOWN_HOSTS"] = saved


@pytest.fixture(scope="session")
def moto_endpoint(tmp_path_factory):
    """A moto server on 127.0.0.1 (free port) for the whole session."""
    port = moto_local.free_port()
    endpoint = f"http://127.0.0.1:{port}"
    proc = moto_local.spawn(port, tmp_path_factory.mktemp("moto") / "server.log")
    try:
        moto_local.wait_until_up(endpoint)
        yield endpoint
    finally:
        moto_local.stop_pid(proc.pid)


@pytest.fixture
def aws_env(moto_endpoint, monkeypatch):
    """Environment pointing boto3/amazon.aws at a freshly reset moto server."""
    req = urllib.request.Request(f"{moto_endpoint}/moto-api/reset", method="POST")
    urllib.request.urlopen(req, timeout=10).close()
    env = moto_local.environment(moto_endpoint)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


@pytest.fixture
def ec2(aws_env):
    return boto3.client("ec2", region_name=aws_env["AWS_REGION"])


@pytest.fixture
def elbv2(aws_env):
    return boto3.client("elbv2", region_name=aws_env["AWS_REGION"])


@pytest.fixture
def inventory(tmp_path):
    """localhost plus the project's group_vars, without the bastion_ec2 plugin
    (for playbooks that only talk to the AWS API)."""
    # What the implicit localhost would be: local connection, this Python (boto3).
    (tmp_path / "hosts").write_text(f"localhost ansible_connection=local ansible_python_interpreter={sys.executable}\n")
    (tmp_path / "group_vars").symlink_to(ROOT / "inventory" / "group_vars")
    return str(tmp_path / "hosts")
