"""The lab's fixed names: paths under .cache/lab, podman names, address ranges, the image, the steps."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CACHE = ROOT / ".cache" / "lab"
STATE_FILE = CACHE / "lab.json"
LAB_VARS = ROOT / "lab" / "vars.yml"
KEY_FILE = CACHE / "id_ed25519"
# Each node's generated files live in NODES_DIR/<name>/ (mounted at /lab in service containers).
NODES_DIR = CACHE / "nodes"
# The lab's pinned host keys (FUMIDAI_KNOWN_HOSTS in the lab's environment): provisioning pins each lab
# host's key from the console output the lab publishes; a rebuilt host's pin is dropped with it.
KNOWN_HOSTS = CACHE / "known_hosts"
# What the lab publishes to its local AWS API (lab/moto_server.py --lab-dir): each instance's console
# and the ALB's HAProxy stats socket (live target health).
AWS_DIR = CACHE / "aws"
CONSOLE_DIR = AWS_DIR / "console"
ALB_STATS_DIR = "/run/fumidai-lab-alb"  # in the ALB container; AWS_DIR/alb/<load balancer name> on this machine
CONSOLE_TIMEOUT = 120  # seconds for a new host to print its host keys on its console
# web_instances generated from lab_web_count; passed to every playbook after lab/vars.yml.
WEB_INSTANCES_FILE = CACHE / "web_instances.yml"
WEB_COUNT_ENV = "FUMIDAI_LAB_WEB_COUNT"
MAX_WEB_COUNT = 100  # each is a systemd container; a private /24 would hold more
IMAGE = os.environ.get("FUMIDAI_IMAGE", "localhost/fumidai-debian12") + ":latest"

PREFIX = "fumidai-lab"
LABEL = "io.fumidai.lab"
NET_VPC = f"{PREFIX}-vpc"
NET_INTERNET = f"{PREFIX}-internet"
NET_OFFICE = f"{PREFIX}-office"
# Unaddressed veth pairs: macvlan parents, so the host itself is not on the
# VPC or the lab internet (only on the office range, like the admin's laptop).
VETH_VPC = ("fl-vpc", "fl-vpc-peer")
VETH_INTERNET = ("fl-inet", "fl-inet-peer")
INTERNET_CIDR = ipaddress.ip_network("198.18.0.0/24")  # RFC 2544 benchmarking range
INTERNET_GW_IP = INTERNET_CIDR[1]
INTERNET_SERVER_IP = INTERNET_CIDR[10]
# The local AWS API as lab hosts reach it: an endpoint on the lab internet (as AWS's are on the internet),
# relayed to the moto server on this machine's 127.0.0.1 through the office bridge (lab/render/aws_api.py).
AWS_API_IP = INTERNET_CIDR[11]
AWS_API_RELAY_PORT = 4566  # on this machine's office address, for the endpoint container only
# A second address of the internet server, for health probes that must not share a route with anything
# else (a NAT standby's probe through the active NAT instance: roles/nat_instance's watchdog).
INTERNET_PROBE_IP = INTERNET_CIDR[12]
PROHIBIT_METRIC = 4000
ROUTE_METRIC = 100

# What each web host's way out to the lab internet was before configuration (the egress step): the NAT
# gateway works from the start, the NAT instance only once its role has run.
EGRESS_FILE = CACHE / "egress-before-configure.json"

STEPS = ("keys", "moto", "provision", "hosts", "egress", "configure", "ssh-config")
EXTRA_STEPS = ("net", "consoles")
STEP_TITLES = {
    "keys": "generate the lab key pair",
    "moto": "start the local AWS API (moto)",
    "provision": "provision the VPC on moto (playbooks/provision.yml)",
    "hosts": "build the hosts from moto's state (podman)",
    "egress": "observe each web host's way out before configuration (a request to the lab internet)",
    "configure": "configure through the bastion (site.yml)",
    "ssh-config": "write the SSH config a person uses (playbooks/ssh_config.yml)",
    "net": "re-apply moto's routes, security groups and source/dest checks to the running hosts",
    "consoles": "publish the hosts' consoles to the local AWS API (as EC2 posts console output)",
}
