"""The lab ALB's HTTPS listeners and redirects (lab/render/alb.py) and the local API's certificate endpoint
(lab/moto_server.py): HAProxy text from listener descriptions, PEM bundles from ACM material, hostile values
refused. Without podman; the lab's end-to-end check is tests/lab/test_https.py."""

from __future__ import annotations

import json

import boto3
import pytest
from werkzeug.test import Client

from lab import moto_server
from lab.proc import LabError
from lab.render import alb
from tests.support.aws_seed import in_process
from tests.support.tls import make_ca, make_server_certificate

ARN = "arn:aws:acm:ap-northeast-1:123456789012:certificate/0f1e2d3c-aaaa-bbbb-cccc-001122334455"
DNS = "fumidai-alb-1.ap-northeast-1.elb.amazonaws.com"
PLAN = {"nodes": [{"name": "web01", "kind": "instance", "resource_id": "i-00000000000000e01", "ip": "10.0.11.4"},
                  {"name": "fumidai-alb", "kind": "alb", "resource_id": "arn:alb", "ip": "10.0.1.250"}]}
FORWARD = [{"type": "forward", "target_group_arn": "arn:tg"}]
# What roles/aws_alb asks for with a certificate (moto returns the fields it was given, no defaults).
ROLE_REDIRECT = [{"type": "redirect",
                  "redirect_config": {"protocol": "HTTPS", "port": "443", "status_code": "HTTP_301"}}]


def _alb(http_actions=None, https: bool = True, **https_fields) -> dict:
    listeners = [{"protocol": "HTTP", "port": 80, "default_actions": http_actions or FORWARD}]
    if https:
        listeners.append({"protocol": "HTTPS", "port": 443, "ssl_policy": "ELBSecurityPolicy-TLS13-1-2-2021-06",
                          "certificates": [{"certificate_arn": ARN}], "default_actions": FORWARD, **https_fields})
    return {"node": "fumidai-alb", "ip": "10.0.1.250", "dns_name": DNS, "listeners": listeners,
            "target_groups": [{"target_group_arn": "arn:tg", "target_group_name": "fumidai-web", "port": 80,
                               "targets": [{"id": "i-00000000000000e01", "port": 80}]}]}


def _frontend(config: str, port: int) -> list[str]:
    lines = config.split(f"frontend listener_{port}\n", 1)[1].split("\n\n", 1)[0]
    return [line.strip() for line in lines.splitlines() if not line.strip().startswith("#")]


@pytest.fixture(scope="module")
def issued():
    ca = make_ca()
    return ca, make_server_certificate(ca, DNS)


# --------------------------------------------------------------------------- HTTPS listeners

def test_https_listener_binds_its_certificate_with_the_policy_minimum_and_forwards():
    config = alb.render_haproxy(PLAN, _alb(), {443: "/lab/listener-443.pem"})
    assert _frontend(config, 443) == [
        "bind 10.0.1.250:443 ssl crt /lab/listener-443.pem ssl-min-ver TLSv1.2 alpn h2,http/1.1",
        "default_backend fumidai-web"]
    assert _frontend(config, 80) == ["bind 10.0.1.250:80", "default_backend fumidai-web"]
    assert "skipped" not in config


@pytest.mark.parametrize(("policy", "minimum"), [("ELBSecurityPolicy-TLS13-1-3-2021-06", "TLSv1.3"),
                                                 ("ELBSecurityPolicy-TLS-1-2-Ext-2018-06", "TLSv1.2"),
                                                 ("ELBSecurityPolicy-2016-08", "TLSv1.0")])
def test_tls_minimum_follows_the_security_policy(policy, minimum):
    config = alb.render_haproxy(PLAN, _alb(ssl_policy=policy), {443: "/lab/listener-443.pem"})
    assert f"ssl-min-ver {minimum} " in config


def test_https_listener_without_a_loaded_certificate_is_refused():
    with pytest.raises(LabError, match="certificate was not loaded"):
        alb.render_haproxy(PLAN, _alb(), {})


@pytest.mark.parametrize("arn", ["/etc/shadow", f"{ARN} ssl crt /x", f"{ARN}\nbind", "", None])
def test_certificate_arns_that_are_not_acm_arns_are_refused(arn):
    listener = _alb()["listeners"][1]
    assert alb.certificate_arn(listener) == ARN  # positive control
    listener["certificates"] = [{"certificate_arn": arn}]
    with pytest.raises(LabError, match="is not an ACM certificate ARN"):
        alb.certificate_arn(listener)


def test_files_write_the_bundle_0600_and_haproxy_reads_it(monkeypatch, issued):
    ca, server = issued
    monkeypatch.setattr(alb, "fetch_certificate", lambda arn: {
        "certificate": server.certificate, "chain": ca.certificate, "private_key": server.private_key})
    # net.sh (routes, security groups, ACLs) is tests/lab/test_plan.py's: here only the listeners' files.
    render = alb.render
    monkeypatch.setattr(alb, "security_group_rules", lambda plan, node: {})
    monkeypatch.setattr(alb, "render", lambda name, **values: "" if name == "alb-net.sh" else render(name, **values))
    files = alb.files({**PLAN, "albs": [_alb()]}, PLAN["nodes"][1])
    text, mode = files["listener-443.pem"]
    assert mode == 0o600
    assert "ssl crt /lab/listener-443.pem" in files["haproxy.cfg"][0]
    assert text.index(server.certificate.strip()) < text.index(ca.certificate.strip()) < text.index("PRIVATE KEY")
    # Without an HTTPS listener there is no key file at all.
    assert sorted(alb.files({**PLAN, "albs": [_alb(https=False)]}, PLAN["nodes"][1])) == ["haproxy.cfg", "net.sh"]


def test_the_alb_container_is_defined_by_its_listeners_and_keeps_no_stale_key(tmp_path, monkeypatch):
    from lab import config

    monkeypatch.setattr(config, "AWS_DIR", tmp_path / "aws")
    (tmp_path / "haproxy.cfg").write_text("bind 10.0.1.250:443 ssl crt /lab/listener-443.pem ssl-min-ver TLSv1.2\n")
    (tmp_path / "listener-443.pem").write_text("first\n")
    (tmp_path / "listener-8443.pem").write_text("a removed listener's key\n")

    def label():
        args = alb.run_args(PLAN, PLAN["nodes"][1], tmp_path)
        return next(a for a in args if a.startswith(f"{config.LABEL}.listeners="))

    first = label()
    assert not (tmp_path / "listener-8443.pem").exists() and (tmp_path / "listener-443.pem").exists()
    assert label() == first
    (tmp_path / "listener-443.pem").write_text("renewed\n")
    assert label() != first


# --------------------------------------------------------------------------- redirects

def test_the_roles_http_to_https_redirect_keeps_host_path_and_query_with_301():
    config = alb.render_haproxy(PLAN, _alb(ROLE_REDIRECT), {443: "/lab/listener-443.pem"})
    assert _frontend(config, 80) == [
        "bind 10.0.1.250:80",
        "http-request redirect location https://%[req.hdr(host),field(1,:)]:443%[path]?%[query] code 301"
        " if { query -m found }",
        "http-request redirect location https://%[req.hdr(host),field(1,:)]:443%[path] code 301"]


def test_a_redirect_with_every_field_set_and_keywords():
    action = [{"type": "redirect", "redirect_config": {
        "protocol": "#{protocol}", "port": "#{port}", "host": "www.#{host}", "path": "/new/#{path}",
        "query": "from=#{port}&#{query}", "status_code": "HTTP_302"}}]
    config = alb.render_haproxy(PLAN, _alb(action, https=False))
    assert _frontend(config, 80) == [
        "bind 10.0.1.250:80",
        # "/new/#{path}" is "/new" and the request's path (which starts with its "/").
        "http-request redirect location http://www.%[req.hdr(host),field(1,:)]:80/new%[path]?from=80&%[query]"
        " code 302"]
    # A #{path} not after a "/" is the path without its leading "/", as AWS defines the keyword.
    action[0]["redirect_config"]["path"] = "/p-#{path}"
    assert ":80/p-%[path,regsub(^/,)]?" in alb.render_haproxy(PLAN, _alb(action, https=False))


def test_a_redirect_with_an_empty_query_drops_it():
    action = [{"type": "redirect", "redirect_config": {"protocol": "HTTPS", "port": "8443", "host": "example.org",
                                                       "path": "/", "query": "", "status_code": "HTTP_301"}}]
    config = alb.render_haproxy(PLAN, _alb(action, https=False))
    assert _frontend(config, 80)[1:] == ["http-request redirect location https://example.org:8443/ code 301"]


@pytest.mark.parametrize(("field", "value", "message"), [
    ("status_code", "HTTP_307", "is not HTTP_301 or HTTP_302"),
    ("status_code", "301 if TRUE", "is not HTTP_301 or HTTP_302"),
    ("protocol", "FTP", "is not a form AWS accepts"),
    ("protocol", "HTTPS code 302", "is not a form AWS accepts"),
    ("port", "443 if TRUE", "is not a port number"),
    ("port", "0", "is not a port number"),
    ("host", "evil.example code 302", "is not a form the lab can render"),
    ("host", "a\"b", "is not a form the lab can render"),
    ("host", "#{hostname}", "is not a form the lab can render"),
    ("path", "no-leading-slash", "is not a form the lab can render"),
    ("path", "/a b", "is not a form the lab can render"),
    ("path", "/50%25", "is not a form the lab can render"),
    ("path", "/x # comment", "is not a form the lab can render"),
    ("path", "/x'y", "is not a form the lab can render"),
    ("path", "/" + "a" * 128, "is not a form the lab can render"),
    ("query", "a=1 if TRUE", "is not a form the lab can render"),
    ("query", "${HOME}", "is not a form the lab can render"),
    ("query", "%[env(HOME)]", "is not a form the lab can render"),
])
def test_hostile_redirect_fields_are_refused(field, value, message):
    good = {"protocol": "HTTPS", "port": "443", "host": "example.org", "path": "/ok", "query": "a=1",
            "status_code": "HTTP_301"}
    alb.render_haproxy(PLAN, _alb([{"type": "redirect", "redirect_config": good}], https=False))  # control
    with pytest.raises(LabError, match=message):
        alb.render_haproxy(PLAN, _alb([{"type": "redirect", "redirect_config": {**good, field: value}}],
                                      https=False))


def test_a_line_break_in_a_redirect_never_reaches_the_config():
    action = [{"type": "redirect", "redirect_config": {"protocol": "HTTPS", "host": "a\nlisten x",
                                                       "status_code": "HTTP_301"}}]
    with pytest.raises(LabError):
        alb.render_haproxy(PLAN, _alb(action, https=False))


# --------------------------------------------------------------------------- PEM bundles

def test_pem_bundle_is_rewritten_from_what_parsed(issued):
    ca, server = issued
    noisy = {"certificate": "junk before\n" + server.certificate + "junk after\n", "chain": ca.certificate,
             "private_key": server.private_key}
    bundle = alb.pem_bundle(noisy, ARN)
    assert "junk" not in bundle
    assert bundle.count("BEGIN CERTIFICATE") == 2 and bundle.count("BEGIN PRIVATE KEY") == 1
    assert alb.pem_bundle({**noisy, "chain": ""}, ARN).count("BEGIN CERTIFICATE") == 1


def test_pem_bundle_refuses_what_is_not_a_pem_certificate_and_its_key(issued):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    ca, server = issued
    good = {"certificate": server.certificate, "chain": ca.certificate, "private_key": server.private_key}
    assert alb.pem_bundle(good, ARN)  # positive control
    der = server.cert.public_bytes(serialization.Encoding.DER).decode("latin-1")
    encrypted = server.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                         serialization.BestAvailableEncryption(b"secret-passphrase")).decode()
    ed_key = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    for bad, message in [({"certificate": der}, "did not give a PEM"),
                         ({"certificate": "not a certificate"}, "did not give a PEM"),
                         ({"certificate": None}, "did not give a PEM"),
                         ({"chain": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"},
                          "did not give a PEM"),
                         ({"private_key": encrypted}, "did not give a PEM"),
                         ({"private_key": "ssl crt /etc/shadow"}, "did not give a PEM"),
                         ({"private_key": ed_key}, "is not RSA or EC"),
                         ({"private_key": ca.private_key}, "is not the certificate's")]:
        with pytest.raises(LabError, match=message):
            alb.pem_bundle({**good, **bad}, ARN)


# --------------------------------------------------------------------------- the local API's endpoint

def _get(client, arn):
    response = client.get(moto_server.LAB_CERTIFICATE_PATH, query_string={"arn": arn})
    return response.status_code, json.loads(response.get_data())


def test_local_api_hands_the_lab_an_imported_certificate_and_export_still_refuses_it(issued):
    ca, server = issued
    passed_on = []

    def moto_app(environ, start_response):
        passed_on.append(environ["PATH_INFO"])
        start_response("200 OK", [])
        return [b"moto"]

    with in_process("ap-northeast-1"):
        acm = boto3.client("acm", region_name="ap-northeast-1")
        arn = acm.import_certificate(Certificate=server.certificate.encode(), PrivateKey=server.private_key.encode(),
                                     CertificateChain=ca.certificate.encode())["CertificateArn"]
        client = Client(moto_server.serve_lab_certificates(moto_app))
        status, material = _get(client, arn)
        assert status == 200
        assert material["certificate"].strip() == server.certificate.strip()
        assert material["chain"].strip() == ca.certificate.strip()  # moto's sample root CA left out
        assert material["private_key"].strip() == server.private_key.strip()
        assert alb.pem_bundle(material, arn)
        # Unknown, malformed or another region's ARN: 404, nothing else.
        assert _get(client, arn[:-4] + "ffff")[0] == 404
        assert _get(client, "../../etc/passwd")[0] == 404
        assert _get(client, arn.replace("ap-northeast-1", "xx-nowhere-9"))[0] == 404
        assert client.post(moto_server.LAB_CERTIFICATE_PATH, query_string={"arn": arn}).status_code == 404
        # Every other request is moto's.
        assert client.get("/").get_data() == b"moto" and passed_on == ["/"]
        # What the AWS API itself says is unchanged: an imported certificate cannot be exported.
        with pytest.raises(acm.exceptions.ClientError, match="not a private certificate"):
            acm.export_certificate(CertificateArn=arn, Passphrase=b"c2VjcmV0LXBhc3NwaHJhc2U=")
