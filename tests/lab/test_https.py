"""HTTPS end to end in the lab: an ACM certificate on the ALB, port 80 redirecting to 443, as on AWS.

A test CA signs a certificate for the lab ALB's DNS name; it is imported into the lab's local ACM and
provisioning runs again with alb_certificate_arn set (the real playbook: roles/aws_alb adds the HTTPS:443
listener and turns the HTTP:80 listener's default action into a redirect, roles/aws_security_groups opens
443). `python -m lab step net` gives the running ALB its new listeners (HAProxy reloaded with the certificate
and key the lab reads from the local API). A client that trusts the test CA gets a web host's page over a
verified TLS connection to the DNS name; one that does not, or asks for another name, is refused; plain HTTP
answers 301 to https://<host>:443/<path>?<query>. The module restores the lab (provisioning without the
certificate, step net) in its fixture's teardown, so the modules after it find the HTTP-only lab they expect.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import stat

import pytest

from lab import config as lab_config
from lab import steps as lab_steps
from tests.lab.lab_helpers import alb_get, lab_cli, moto_client, tcp_open, wait_for, web_names_in
from tests.support.tls import make_ca, make_server_certificate


def provision(*extra: str) -> None:
    """playbooks/provision.yml as the lab runs it (lab/vars.yml, the lab's web servers, its environment)."""
    lab_steps.playbook("fumidai.vpc.provision", *extra)


def https_get(lab, context: ssl.SSLContext, path: str = "/", server_name: str | None = None):
    """GET over TLS to the ALB's lab address, with SNI, verification and Host for its DNS name (or
    ``server_name``): the status, the body, the peer certificate as the client verified it, the TLS version."""
    name = server_name or lab.alb["dns_name"]
    conn = http.client.HTTPSConnection(name, 443, timeout=10, context=context)
    # Connect to the lab's HAProxy address; everything else (SNI, verification, Host) uses the name.
    conn._create_connection = lambda _address, *args, **kwargs: socket.create_connection(
        (lab.alb["ip"], 443), *args, **kwargs)
    try:
        conn.connect()  # the TLS handshake: verification happens here
        peer, version = conn.sock.getpeercert(), conn.sock.version()
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read().decode(errors="replace"), peer, version
    finally:
        conn.close()


def http_get(lab, path: str) -> tuple[int, dict]:
    conn = http.client.HTTPConnection(lab.alb["ip"], 80, timeout=10)
    try:
        conn.request("GET", path, headers={"Host": lab.alb["dns_name"]})
        response = conn.getresponse()
        response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}
    finally:
        conn.close()


def trusting(ca) -> ssl.SSLContext:
    """A client that trusts ``ca`` only (and verifies names, as every default context does)."""
    return ssl.create_default_context(cadata=ca.certificate)


def answers_https(lab, ca) -> bool:
    try:
        return https_get(lab, trusting(ca))[0] == 200
    except (OSError, ssl.SSLError):
        return False


@pytest.fixture(scope="module")
def lab_ca():
    return make_ca("fumidai lab test CA")


@pytest.fixture(scope="module")
def https_lab(lab, lab_ca):
    """The lab with a certificate for its ALB's DNS name on the HTTPS listener; afterwards the lab as before
    (provisioned without a certificate, checked: HTTP from the web hosts, no 443, no key left behind), and
    the certificate deleted from the local ACM."""
    server = make_server_certificate(lab_ca, lab.alb["dns_name"])
    acm = moto_client(lab.env, "acm")
    arn = acm.import_certificate(Certificate=server.certificate.encode(), PrivateKey=server.private_key.encode(),
                                 CertificateChain=lab_ca.certificate.encode())["CertificateArn"]
    try:
        provision("-e", f"alb_certificate_arn={arn}")
        lab_cli("step", "net")
        yield arn
    finally:
        provision()
        lab_cli("step", "net")
        acm.delete_certificate(CertificateArn=arn)
    status, _headers, body = alb_get(lab)
    assert status == 200 and len(web_names_in(lab, body)) == 1, f"after the restore, HTTP answers {status}"
    assert wait_for(lambda: not tcp_open(lab.alb["ip"], 443, timeout=2), 30, 1), "443 still answers"
    assert not (lab_config.NODES_DIR / lab.alb["node"] / "listener-443.pem").exists()


def test_listeners_come_from_the_role(lab, https_lab):
    elbv2 = moto_client(lab.env, "elbv2")
    balancer = elbv2.describe_load_balancers(Names=[lab.alb["node"]])["LoadBalancers"][0]
    listeners = {(item["Protocol"], item["Port"]): item
                 for item in elbv2.describe_listeners(LoadBalancerArn=balancer["LoadBalancerArn"])["Listeners"]}
    assert sorted(listeners) == [("HTTP", 80), ("HTTPS", 443)]
    assert [c["CertificateArn"] for c in listeners[("HTTPS", 443)]["Certificates"]] == [https_lab]
    assert listeners[("HTTP", 80)]["DefaultActions"][0]["Type"] == "redirect"


def test_https_answers_from_a_web_host_with_the_imported_certificate(lab, https_lab, lab_ca):
    # HAProxy reloads after `step net`: its new workers take the 443 listener within moments.
    assert wait_for(lambda: answers_https(lab, lab_ca), 30, 1), "the ALB never answered HTTPS"
    status, body, peer, version = https_get(lab, trusting(lab_ca))
    assert status == 200, body[:300]
    assert len(web_names_in(lab, body)) == 1, body[:300]
    assert dict(pair[0] for pair in peer["subject"])["commonName"] == lab.alb["dns_name"]
    assert ("DNS", lab.alb["dns_name"]) in peer["subjectAltName"]
    assert version in ("TLSv1.2", "TLSv1.3")  # ELBSecurityPolicy-TLS13-1-2-2021-06
    # The key stays with the ALB: its bundle is readable by root only.
    bundle = lab_config.NODES_DIR / lab.alb["node"] / "listener-443.pem"
    assert stat.S_IMODE(bundle.stat().st_mode) == 0o600


def test_a_client_that_does_not_trust_the_ca_or_asks_for_another_name_is_refused(lab, https_lab, lab_ca):
    assert https_get(lab, trusting(lab_ca))[0] == 200  # positive control
    # The ALB sends the imported chain (the test CA itself): a client that does not trust it says so.
    untrusted = "self-signed certificate in certificate chain"
    with pytest.raises(ssl.SSLCertVerificationError, match=untrusted):
        https_get(lab, ssl.create_default_context())
    with pytest.raises(ssl.SSLCertVerificationError, match=untrusted):
        https_get(lab, trusting(make_ca("another CA")))
    with pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"):
        https_get(lab, trusting(lab_ca), server_name="www.example.org")


def test_http_redirects_to_https_keeping_host_path_and_query(lab, https_lab, lab_ca):
    dns = lab.alb["dns_name"]
    status, headers = http_get(lab, "/some/path?x=1")
    assert status == 301 and headers["location"] == f"https://{dns}:443/some/path?x=1"
    status, headers = http_get(lab, "/some/path")
    assert status == 301 and headers["location"] == f"https://{dns}:443/some/path"
    # Where the redirect leads answers.
    assert https_get(lab, trusting(lab_ca), "/?x=1")[0] == 200
