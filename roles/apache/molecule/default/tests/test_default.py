"""Verify roles/apache on the podman test bed described in vars/testbed.yml.

`host` is the web server (testinfra's podman:// backend, see molecule.yml).
HTTP requests come from the controller: through the "vpc" network its address
(10.89.30.1) is a trusted proxy, through the "outside" network (10.89.31.1) it
is not.
"""

import json
import os
import pathlib
import re
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
import yaml

# The checkout linked as the collection fumidai.vpc (scripts/setup.sh): the role by its FQCN.
COLLECTIONS = str(Path(__file__).resolve().parents[5] / ".collections")

SCENARIO = pathlib.Path(__file__).parents[1]
TESTBED = yaml.safe_load((SCENARIO / "vars" / "testbed.yml").read_text())
TRUSTED_URL = f"http://{TESTBED['apache_testbed_web_vpc_ip']}"
UNTRUSTED_URL = f"http://{TESTBED['apache_testbed_web_outside_ip']}"
UNTRUSTED_PEER = "10.89.31.1"  # the controller's address on the outside network
ACCESS_LOG = "/var/log/apache2/fumidai-access.log"
VHOST = "/etc/apache2/sites-available/fumidai-site.conf"

# Direct connections only: a proxy from the environment must not get in between.
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def request(url, method="GET", headers=None):
    """Return (status, headers, body) without raising on HTTP errors."""
    req = urllib.request.Request(url, method=method, headers=headers or {})
    try:
        with OPENER.open(req, timeout=10) as response:
            return response.status, response.headers, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read().decode()


def log_lines_with(host, marker):
    """Access-log lines containing marker (Apache writes them as it answers)."""
    for _ in range(20):
        lines = [line for line in host.file(ACCESS_LOG).content_string.splitlines() if marker in line]
        if lines:
            return lines
        time.sleep(0.25)
    return []


def test_apache_running_and_configtest_ok(host):
    assert host.service("apache2").is_running
    assert host.service("apache2").is_enabled
    result = host.run("apachectl configtest")
    assert result.rc == 0, result.stderr
    assert "Syntax OK" in result.stderr
    assert "remoteip_module" in host.check_output("apachectl -M")


def test_index_names_the_host(host):
    status, _, body = request(f"{TRUSTED_URL}/")
    assert status == 200
    assert "fumidai-apache-web" in body


def test_health_check_path_answers_200(host):
    status, _, body = request(f"{TRUSTED_URL}/healthz")
    assert status == 200
    assert body == "OK\n"


def test_health_checks_are_not_logged(host):
    marker = f"health-{uuid.uuid4()}"
    assert request(f"{TRUSTED_URL}/healthz", headers={"User-Agent": marker})[0] == 200
    # A real request written after it proves the log is being written.
    assert request(f"{TRUSTED_URL}/", headers={"User-Agent": f"{marker}-index"})[0] == 200
    lines = log_lines_with(host, f"{marker}-index")
    assert lines
    assert not [line for line in host.file(ACCESS_LOG).content_string.splitlines() if f'"{marker}"' in line]


def test_no_version_disclosed(host):
    for url in (f"{TRUSTED_URL}/", f"{TRUSTED_URL}/no-such-page"):
        status, headers, body = request(url)
        assert headers["Server"] == "Apache"
        assert "Apache/" not in body
    assert status == 404


def test_trace_disabled(host):
    status, _, _ = request(f"{TRUSTED_URL}/", method="TRACE")
    assert status == 405


def test_no_directory_listing(host):
    host.check_output("mkdir -p /var/www/fumidai/listing-test && touch /var/www/fumidai/listing-test/secret.txt")
    try:
        status, _, body = request(f"{TRUSTED_URL}/listing-test/")
        assert status == 403
        assert "secret.txt" not in body
    finally:
        host.check_output("rm -rf /var/www/fumidai/listing-test")


def test_forwarded_client_logged_from_trusted_proxy(host):
    marker = f"trusted-{uuid.uuid4()}"
    status, _, _ = request(f"{TRUSTED_URL}/", headers={"X-Forwarded-For": "203.0.113.7", "User-Agent": marker})
    assert status == 200
    lines = log_lines_with(host, marker)
    assert len(lines) == 1
    assert lines[0].split()[0] == "203.0.113.7"
    assert lines[0].endswith("peer=10.89.30.1")


def test_forwarded_header_ignored_from_untrusted_source(host):
    marker = f"untrusted-{uuid.uuid4()}"
    status, _, _ = request(f"{UNTRUSTED_URL}/", headers={"X-Forwarded-For": "203.0.113.8", "User-Agent": marker})
    assert status == 200
    lines = log_lines_with(host, marker)
    assert len(lines) == 1
    assert lines[0].split()[0] == UNTRUSTED_PEER
    assert "203.0.113.8" not in lines[0]


def converge(extra_vars, inventory=None):
    """Run the scenario's converge playbook again; stdout and stderr together
    (ansible-core prints errors on stderr)."""
    return subprocess.run(
        [
            "ansible-playbook",
            "-i",
            str(inventory or os.environ["MOLECULE_INVENTORY_FILE"]),
            str(SCENARIO / "converge.yml"),
            "-e",
            json.dumps(extra_vars),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        check=False,
        env={**os.environ, "ANSIBLE_NOCOLOR": "1", "ANSIBLE_COLLECTIONS_PATH": COLLECTIONS},
    )


def test_bad_config_is_refused_and_the_site_keeps_serving(host):
    vhost_before = host.file(VHOST).content_string
    result = converge({"apache_vhost_extra_config": "NotAnApacheDirective on"})
    assert result.returncode != 0
    assert "NotAnApacheDirective" in result.stdout
    assert "failed to validate" in result.stdout
    assert host.file(VHOST).content_string == vhost_before
    assert host.run("apachectl configtest").rc == 0
    assert host.service("apache2").is_running
    assert request(f"{TRUSTED_URL}/")[0] == 200


# --- tag values are untrusted: the Name tag becomes inventory_hostname ----------------------

HOSTILE_NAME = "<script>alert(1)</script>"


def test_every_value_on_the_page_is_escaped(host):
    """Each {{ expression }} of index.html.j2 ends in | e (Ansible ignores autoescape blocks)."""
    template = (SCENARIO.parents[1] / "templates" / "index.html.j2").read_text()
    template = re.sub(r"\{#.*?#\}", "", template, flags=re.S)
    expressions = re.findall(r"\{\{(.*?)\}\}", template, flags=re.S)
    assert len(expressions) == 4
    assert [e for e in expressions if not re.search(r"\|\s*e\s*$", e)] == []


@pytest.mark.parametrize(
    "server_name",
    ["web01\n    Include /etc/shadow", "a" * 64 + ".example.com"],
    ids=["newline-directive", "label-of-64"],
)
def test_hostile_server_name_is_refused_before_any_change(host, server_name):
    vhost_before = host.file(VHOST).content_string
    result = converge({"apache_server_name": server_name})
    assert result.returncode != 0
    assert "is not a valid hostname" in result.stdout, result.stdout
    assert "changed=0" in result.stdout
    assert host.file(VHOST).content_string == vhost_before
    assert request(f"{TRUSTED_URL}/")[0] == 200


def hostile_inventory(tmp_path):
    """The web server again, under the inventory name a hostile Name tag would give it."""
    inventory = tmp_path / "hostile.yml"
    inventory.write_text(
        yaml.safe_dump(
            {
                "all": {
                    "hosts": {
                        HOSTILE_NAME: {
                            "ansible_connection": "podman",
                            "ansible_podman_executable": "podman",
                            "ansible_host": TESTBED["apache_testbed_web_name"],
                            "vpc_cidr": TESTBED["apache_testbed_vpc_subnet"],
                            "alb_health_check_path": "/healthz",
                        }
                    }
                }
            }
        )
    )
    return inventory


def test_hostile_name_tag_is_refused_as_server_name(host, tmp_path):
    vhost_before = host.file(VHOST).content_string
    result = converge({}, inventory=hostile_inventory(tmp_path))
    assert result.returncode != 0
    assert "is not a valid hostname" in result.stdout, result.stdout
    assert "changed=0" in result.stdout
    assert host.file(VHOST).content_string == vhost_before


# Last in this file: leaves the page naming the hostile host (escaped).
def test_hostile_name_tag_appears_escaped_on_the_page(host, tmp_path):
    """Should such a name reach the page, it is printed as text, not markup.

    The role's own content tasks (tasks/content.yml, the index template) run
    under the hostile inventory name; the page is fetched from Apache.
    """
    playbook = tmp_path / "page.yml"
    playbook.write_text(
        yaml.safe_dump(
            [
                {
                    "name": "Publish the index page under the hostile inventory name",
                    "hosts": "all",
                    "become": True,
                    "gather_subset": ["!all", "min"],
                    "tasks": [
                        {
                            "name": "Write the page with the role's own tasks",
                            "ansible.builtin.include_role": {"name": "fumidai.vpc.apache", "tasks_from": "content.yml"},
                        }
                    ],
                }
            ]
        )
    )
    result = subprocess.run(
        ["ansible-playbook", "-i", str(hostile_inventory(tmp_path)), str(playbook)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        check=False,
        env={**os.environ, "ANSIBLE_NOCOLOR": "1", "ANSIBLE_COLLECTIONS_PATH": COLLECTIONS},
    )
    assert result.returncode == 0, result.stdout
    assert "changed=1" in result.stdout  # the page, and only the page
    status, _, body = request(f"{TRUSTED_URL}/")
    assert status == 200
    assert "<script>" not in body
    assert "<title>fumidai: &lt;script&gt;alert(1)&lt;/script&gt;</title>" in body
    assert '<strong id="served-by">&lt;script&gt;alert(1)&lt;/script&gt;</strong>' in body
