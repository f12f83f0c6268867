"""playbooks/teardown.yml against a moto server: everything tagged with the
project goes, and a second teardown changes nothing.

The provisioned state here uses an ACM certificate, so the same run also
checks the HTTPS variant of the ALB (443 listener, 80 redirecting, 443 open
on the ALB's group) before tearing it down."""

from __future__ import annotations

import datetime
import json
import re
import subprocess
import urllib.request

import boto3
import moto_local
import pytest
from conftest import run_playbook
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

REGION = "ap-northeast-1"
RECAP = re.compile(r"^localhost\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)
TAGGED = [{"Name": "tag:Project", "Values": ["fumidai"]}]


def recap(proc: subprocess.CompletedProcess) -> dict[str, int]:
    match = RECAP.search(proc.stdout)
    assert match, f"no PLAY RECAP for localhost:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return dict(zip(("ok", "changed", "unreachable", "failed"), map(int, match.groups()), strict=True))


def self_signed_certificate() -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fumidai.example.com")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=30)).sign(key, hashes.SHA256()))
    return (cert.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()))


def tagged_resources(session: boto3.Session, endpoint: str) -> dict[str, list]:
    """Every resource type provisioning creates, filtered by the project tag."""
    ec2 = session.client("ec2", endpoint_url=endpoint)
    elbv2 = session.client("elbv2", endpoint_url=endpoint)

    def elb_tagged(arns: list[str]) -> list[str]:
        if not arns:
            return []
        descriptions = elbv2.describe_tags(ResourceArns=arns)["TagDescriptions"]
        return [d["ResourceArn"] for d in descriptions
                if {"Key": "Project", "Value": "fumidai"} in d["Tags"]]

    reservations = ec2.describe_instances(Filters=TAGGED)["Reservations"]
    load_balancers = [lb["LoadBalancerArn"] for lb in elbv2.describe_load_balancers()["LoadBalancers"]]
    return {
        "vpcs": ec2.describe_vpcs(Filters=TAGGED)["Vpcs"],
        "subnets": ec2.describe_subnets(Filters=TAGGED)["Subnets"],
        "internet gateways": ec2.describe_internet_gateways(Filters=TAGGED)["InternetGateways"],
        "nat gateways": [g for g in ec2.describe_nat_gateways(Filters=TAGGED)["NatGateways"]
                         if g["State"] not in ("deleted", "deleting")],
        "addresses": ec2.describe_addresses(Filters=TAGGED)["Addresses"],
        "route tables": ec2.describe_route_tables(Filters=TAGGED)["RouteTables"],
        "security groups": ec2.describe_security_groups(Filters=TAGGED)["SecurityGroups"],
        "instances": [i for r in reservations for i in r["Instances"]
                      if i["State"]["Name"] not in ("terminated", "shutting-down")],
        "key pairs": ec2.describe_key_pairs(Filters=TAGGED)["KeyPairs"],
        "load balancers": elb_tagged(load_balancers),
        "target groups": elb_tagged([tg["TargetGroupArn"] for tg in elbv2.describe_target_groups()["TargetGroups"]]),
    }


@pytest.fixture(scope="module")
def session():
    return boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION)


@pytest.fixture(scope="module")
def scenario(moto_endpoint, tmp_path_factory, session):
    """Provision (with a certificate), look, tear down, tear down again."""
    urllib.request.urlopen(urllib.request.Request(f"{moto_endpoint}/moto-api/reset", method="POST"), timeout=10).close()
    tmp = tmp_path_factory.mktemp("teardown")
    key = tmp / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    cert, private_key = self_signed_certificate()
    acm = session.client("acm", endpoint_url=moto_endpoint)
    cert_arn = acm.import_certificate(Certificate=cert, PrivateKey=private_key)["CertificateArn"]
    env = {**moto_local.environment(moto_endpoint), "FUMIDAI_OUTPUTS_FILE": str(tmp / "outputs.yml")}
    extra = {"admin_cidrs": ["192.168.250.0/24"], "ssh_public_key_path": f"{key}.pub", "alb_certificate_arn": cert_arn}

    provision = run_playbook("playbooks/provision.yml", "-e", json.dumps(extra), env=env, check=True)
    before = tagged_resources(session, moto_endpoint)
    elbv2 = session.client("elbv2", endpoint_url=moto_endpoint)
    alb_arn = before["load balancers"][0] if before["load balancers"] else None
    listeners = elbv2.describe_listeners(LoadBalancerArn=alb_arn)["Listeners"] if alb_arn else []
    ec2 = session.client("ec2", endpoint_url=moto_endpoint)
    alb_group = ec2.describe_security_groups(Filters=TAGGED + [{"Name": "group-name", "Values": ["fumidai-alb"]}])

    first = run_playbook("playbooks/teardown.yml", env=env, check=True)
    after = tagged_resources(session, moto_endpoint)
    second = run_playbook("playbooks/teardown.yml", env=env, check=True)
    return {"cert_arn": cert_arn, "provision": provision, "before": before, "listeners": listeners,
            "alb_group": alb_group["SecurityGroups"][0], "first": first, "after": after, "second": second,
            "non_default_vpcs": [v for v in ec2.describe_vpcs()["Vpcs"] if not v["IsDefault"]]}


def test_provisioned_everything_before_teardown(scenario):
    counts = {kind: len(found) for kind, found in scenario["before"].items()}
    assert counts == {"vpcs": 1, "subnets": 4, "internet gateways": 1, "nat gateways": 1, "addresses": 2,
                      "route tables": 3, "security groups": 4, "instances": 4, "key pairs": 1,
                      "load balancers": 1, "target groups": 1}


def test_https_listener_with_certificate_and_http_redirect(scenario):
    by_port = {lst["Port"]: lst for lst in scenario["listeners"]}
    assert set(by_port) == {80, 443}
    https = by_port[443]
    assert https["Protocol"] == "HTTPS"
    assert [c["CertificateArn"] for c in https["Certificates"]] == [scenario["cert_arn"]]
    assert https["SslPolicy"].startswith("ELBSecurityPolicy-TLS13")
    assert [a["Type"] for a in https["DefaultActions"]] == ["forward"]
    http = by_port[80]
    assert http["Protocol"] == "HTTP"
    redirect = http["DefaultActions"][0]
    assert redirect["Type"] == "redirect"
    assert (redirect["RedirectConfig"]["Protocol"], redirect["RedirectConfig"]["Port"]) == ("HTTPS", "443")


def test_alb_group_opens_443_with_certificate(scenario):
    ports = {(p["IpProtocol"], p["FromPort"], r["CidrIp"])
             for p in scenario["alb_group"]["IpPermissions"] for r in p["IpRanges"]}
    assert ports == {("tcp", 80, "0.0.0.0/0"), ("tcp", 443, "0.0.0.0/0")}


def test_teardown_leaves_nothing_tagged(scenario):
    assert recap(scenario["first"])["failed"] == 0
    assert recap(scenario["first"])["changed"] > 0
    leftovers = {kind: found for kind, found in scenario["after"].items() if found}
    assert leftovers == {}


def test_teardown_leaves_no_vpc_behind(scenario):
    # The VPC's main route table and default group go with the VPC itself.
    assert scenario["non_default_vpcs"] == []


def test_second_teardown_changes_nothing(scenario):
    result = recap(scenario["second"])
    assert (result["changed"], result["failed"]) == (0, 0), scenario["second"].stdout[-3000:]
