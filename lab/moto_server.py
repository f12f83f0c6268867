#!/usr/bin/env python3
"""moto's server with the few compatibility fixes fumidai needs, and what a lab tells it.

Kept separate from the launcher so the fixes are in one documented place and
the playbooks stay free of anything moto-specific. See ``apply_fixes`` and
``serve_lab_observations``.
"""

from __future__ import annotations

import argparse
import base64
import csv
import hashlib
import io
import json
import re
import socket
import threading
import time
from pathlib import Path

from lab import moto_transitions

# The images fumidai's AMI lookup expects to find (Debian 12 from Debian's
# account, Amazon Linux 2023 from Amazon's), as moto's AMI records.
SEED_AMIS = Path(__file__).resolve().parent / "moto_amis.json"

# DescribeTags "resource-type" values as AWS spells them, for the ID prefixes
# moto spells differently.
AWS_TAG_RESOURCE_TYPES = {
    "eipalloc": "elastic-ip",  # moto: "vpc-elastic-ip"
    "nat": "natgateway",  # moto: "nat-gateway"
}


def fix_describe_tags_resource_types() -> None:
    """Make DescribeTags name EIPs and NAT gateways the way AWS does.

    amazon.aws's ``ensure_ec2_tags`` reads current tags with DescribeTags
    filtered by ``resource-id`` *and* ``resource-type`` ("elastic-ip" for
    ec2_eip, "natgateway" for ec2_vpc_nat_gateway). moto derives a resource's
    type from its ID prefix through ``moto.ec2.utils.EC2_PREFIX_TO_RESOURCE``,
    which maps "eipalloc" to "vpc-elastic-ip" and "nat" to "nat-gateway", so
    the filter matches nothing, the module sees no tags, re-applies them and
    reports "changed" on every run. That map is used only by DescribeTags
    (moto.ec2.models.tags), so correcting the two entries in place fixes the
    lookup without touching how moto creates IDs.
    """
    from moto.ec2 import utils

    utils.EC2_PREFIX_TO_RESOURCE.update(AWS_TAG_RESOURCE_TYPES)


def add_seed_amis(path: Path = SEED_AMIS) -> None:
    """Teach moto the public images fumidai looks up.

    moto ships Amazon's and Microsoft's images but no Debian ones, so the
    default lookup (owner 136693071363, name debian-12-amd64-*) would find
    nothing. moto's own hook, MOTO_AMIS_PATH, *replaces* its built-in image
    list (and skips the per-region "latest" images); appending to the list it
    loads into every region backend keeps moto's images and adds ours.
    Backends are built lazily, after this runs, and rebuilt from the same list
    on /moto-api/reset.
    """
    from moto.ec2.models import amis

    seeds = json.loads(path.read_text(encoding="utf-8"))
    known = {ami["ami_id"] for ami in amis.AMIS}
    amis.AMIS.extend(ami for ami in seeds if ami["ami_id"] not in known)


def fix_volume_snapshot_id() -> None:
    """Report SnapshotId "" for volumes not made from a snapshot, as AWS does.

    moto leaves the key out, and amazon.aws.ec2_vol_info (used by the audit)
    then fails with KeyError 'snapshot_id' on every root volume that
    provisioning creates.
    """
    from moto.ec2.models.elastic_block_store import Volume

    original_init = Volume.__init__

    def __init__(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        if self.snapshot_id is None:
            self.snapshot_id = ""

    Volume.__init__ = __init__


def fix_nat_gateway_private_ip() -> None:
    """Give a NAT gateway a private IP from its own subnet, as AWS does.

    moto picks a random 10.x address anywhere; the lab needs the real one
    (it places the NAT gateway's stand-in there) and the doctor reads it.
    moto's module-level random_private_ip is swapped for the subnet's
    allocator during the constructor only, under a lock (server threads).
    """
    import threading

    from moto.ec2.models import nat_gateways

    original_init = nat_gateways.NatGateway.__init__
    lock = threading.Lock()

    def __init__(self, backend, subnet_id, *args, **kwargs):
        subnet = backend.get_subnet(subnet_id)
        with lock:
            saved = nat_gateways.random_private_ip
            nat_gateways.random_private_ip = lambda *_a, **_k: subnet.get_available_subnet_ip(self)
            try:
                original_init(self, backend, subnet_id, *args, **kwargs)
            finally:
                nat_gateways.random_private_ip = saved

    nat_gateways.NatGateway.__init__ = __init__


# Attributes AWS returns for every new ALB and moto leaves out until they are set.
ALB_DEFAULT_ATTRIBUTES = {"access_logs.s3.enabled": "false",
                          "routing.http.drop_invalid_header_fields.enabled": "false"}


def fix_alb_default_attributes() -> None:
    """Give a new ALB the attributes AWS always returns.

    amazon.aws.elb_application_lb compares the wanted access-log and header settings with
    DescribeLoadBalancerAttributes and fails with KeyError 'access_logs_s3_enabled' when moto omits them.
    """
    from moto.elbv2.models import FakeLoadBalancer

    original_init = FakeLoadBalancer.__init__

    def __init__(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        for key, value in ALB_DEFAULT_ATTRIBUTES.items():
            self.attrs.setdefault(key, value)

    FakeLoadBalancer.__init__ = __init__


# --------------------------------------------------------------------------- what the lab tells the API
# A real EC2 learns an instance's console from its serial port and an ALB's target health from its own
# checks. moto has neither: it returns one fixed sample console text for every instance and calls every
# registered target healthy. The lab (python -m lab) runs the real hosts and the real HAProxy, so it
# publishes what it sees in a directory this server reads at request time:
#   <lab dir>/console/<instance-id>              what the instance printed on its console
#   <lab dir>/alb/<load-balancer-name>/stats.sock  the lab ALB's HAProxy stats socket (live target health)
# Without a lab directory (tests, `moto_local.py run`) each instance's console is synthesized the way
# cloud-init prints a fresh instance's host keys, with an ed25519 key generated per instance.

CONSOLE_WINDOW = 64 * 1024  # GetConsoleOutput returns the most recent 64 KB
SAMPLE_BOOT = ("[    0.000000] Linux version 6.1.0-28-cloud-amd64 (debian-kernel@lists.debian.org)\n"
               "[    0.000000] Command line: BOOT_IMAGE=/boot/vmlinuz-6.1.0-28-cloud-amd64 root=PARTUUID=x ro\n")
_synthetic_keys: dict[str, tuple[str, str]] = {}
_synthetic_lock = threading.Lock()


def synthetic_console(instance_id: str) -> str:
    """What a Debian instance's console shows after first boot: cloud-init's fingerprints and keys blocks."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519

    with _synthetic_lock:
        if instance_id not in _synthetic_keys:
            raw = serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
            _synthetic_keys[instance_id] = (
                ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(*raw).decode(),
                ed25519.Ed25519PrivateKey.generate().public_key().public_bytes(*raw).decode())
        keys = _synthetic_keys[instance_id]

    def fingerprint_line(key: str, bits: int, label: str) -> str:
        digest = hashlib.sha256(base64.b64decode(key.split()[1])).digest()
        return f"{bits} SHA256:{base64.b64encode(digest).decode().rstrip('=')} root@localhost ({label})"

    stamp = time.strftime("%b %e %H:%M:%S", time.gmtime())
    prefix = f"<14>{stamp} ec2: "
    block = ["", "#" * 61, "-----BEGIN SSH HOST KEY FINGERPRINTS-----",
             fingerprint_line(keys[0], 256, "ECDSA"), fingerprint_line(keys[1], 256, "ED25519"),
             "-----END SSH HOST KEY FINGERPRINTS-----", "#" * 61, "-----BEGIN SSH HOST KEY KEYS-----",
             f"{keys[0]} root@localhost", f"{keys[1]} root@localhost", "-----END SSH HOST KEY KEYS-----"]
    return SAMPLE_BOOT + "".join(prefix + line + "\n" for line in block)


def lab_console(lab_dir: Path, instance_id: str) -> str | None:
    """The console the lab published for an instance; None while it has not (the instance is still booting)."""
    if not instance_id.startswith("i-") or "/" in instance_id:
        return None
    try:
        data = (lab_dir / "console" / instance_id).read_bytes()
    except OSError:
        return None
    return data[-CONSOLE_WINDOW:].decode("utf-8", errors="replace")


def serve_console_output(lab_dir: Path | None) -> None:
    """GetConsoleOutput answers with the lab's console, or a synthesized one, instead of moto's fixed sample."""
    from moto.core.responses import ActionResult
    from moto.core.utils import utcnow
    from moto.ec2.responses.general import General
    from moto.ec2.utils import Base64EncodedString

    def get_console_output(self) -> ActionResult:
        instance = self.ec2_backend.get_instance(self._get_param("InstanceId"))
        text = lab_console(lab_dir, instance.id) if lab_dir else synthetic_console(instance.id)
        result = {"InstanceId": instance.id, "Timestamp": utcnow()}
        if text:
            # AWS leaves Output out until the instance has printed something.
            result["Output"] = Base64EncodedString.from_raw_string(text)
        return ActionResult(result)

    General.get_console_output = get_console_output


# HAProxy's check_status -> (AWS TargetHealth State, Reason, Description) for a server it considers down.
HAPROXY_FAILURES = {
    "L4TOUT": ("Target.Timeout", "Request timed out"),
    "L6TOUT": ("Target.Timeout", "Request timed out"),
    "L7TOUT": ("Target.Timeout", "Request timed out"),
    "L4CON": ("Target.FailedHealthChecks", "Health checks failed"),
    "SOCKERR": ("Target.FailedHealthChecks", "Health checks failed"),
}


def haproxy_stats(path: Path, timeout: float = 2.0) -> list[dict]:
    """Rows of HAProxy's ``show stat`` (CSV) from its stats socket."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(path))
        sock.sendall(b"show stat\n")
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    text = b"".join(chunks).decode("utf-8", errors="replace").lstrip("# ")
    return list(csv.DictReader(io.StringIO(text)))


def target_health_from_haproxy(row: dict) -> tuple[str, str | None, str | None]:
    """What an ALB would report for the target HAProxy checks as ``row``."""
    status = (row.get("status") or "").split(" ")[0]
    check = (row.get("check_status") or "").lstrip("* ")
    if check == "INI":
        return "initial", "Elb.InitialHealthChecking", "Initial health checks in progress"
    if status in ("UP", "NOLB", "no"):  # "UP 1/2" is still up; "no check" means no health check configured
        return "healthy", None, None
    if status in ("MAINT", "DRAIN"):
        return "draining", "Target.DeregistrationInProgress", "Target deregistration is in progress"
    if check in ("L7OK", "L7OKC", "L6OK", "L4OK"):
        # Down, but its last checks pass: healthy again after the healthy threshold.
        return "unhealthy", "Target.FailedHealthChecks", f"Health checks failed (now passing: {row.get('status')})"
    if check == "L7STS":
        codes = f"Health checks failed with these codes: [{row.get('check_code')}]"
        return "unhealthy", "Target.ResponseCodeMismatch", codes
    reason, description = HAPROXY_FAILURES.get(check, ("Target.FailedHealthChecks", "Health checks failed"))
    return "unhealthy", reason, description


def serve_lab_target_health(lab_dir: Path) -> None:
    """DescribeTargetHealth reports what the lab's ALB (HAProxy) sees, for load balancers the lab runs."""
    from moto.elbv2.models import ELBv2Backend, FakeHealthStatus, FakeTargetGroup

    original = FakeTargetGroup.health_for
    original_describe = ELBv2Backend.describe_target_health
    per_call = threading.local()  # one read of each socket per DescribeTargetHealth call, not one per target

    def describe_target_health(self, *args, **kwargs):
        per_call.rows = {}
        try:
            return original_describe(self, *args, **kwargs)
        finally:
            per_call.rows = None

    def stats(sock: Path) -> list[dict] | None:
        cache = getattr(per_call, "rows", None)
        if cache is not None and sock in cache:
            return cache[sock]
        try:
            rows = haproxy_stats(sock)
        except OSError:
            rows = None
        if cache is not None:
            cache[sock] = rows
        return rows

    def health_for(self, target, ec2_backend):
        status = original(self, target, ec2_backend)
        if status.status != "healthy":
            return status  # not registered, stopped...: moto already says what AWS would
        for arn in self.load_balancer_arns:
            sock = lab_dir / "alb" / arn.split("/")[-2] / "stats.sock"
            if not sock.exists():
                continue
            rows = stats(sock)
            if rows is None:
                return FakeHealthStatus(status.instance_id, status.port, status.health_check_port, "unavailable",
                                        "Elb.InternalError", "The lab's load balancer (HAProxy) does not answer")
            for row in rows:
                if row.get("pxname") == self.name and row.get("svname") == target["Id"]:
                    state, reason, description = target_health_from_haproxy(row)
                    return FakeHealthStatus(status.instance_id, status.port, status.health_check_port, state,
                                            reason, description)
            # The lab's ALB does not (yet) send to it: registered in the API, not in HAProxy's configuration.
            return FakeHealthStatus(status.instance_id, status.port, status.health_check_port, "initial",
                                    "Elb.RegistrationInProgress", "Target registration is in progress")
        return status

    FakeTargetGroup.health_for = health_for
    ELBv2Backend.describe_target_health = describe_target_health


# What AWS hands its own load balancer and nobody else: an imported certificate's private key. The lab plays
# the ALB, so the server started for a lab (--lab-dir) answers it, read-only, on a path of its own
# (GET /fumidai-lab/acm-certificate?arn=...; ExportCertificate still refuses imported certificates, as on AWS).
LAB_CERTIFICATE_PATH = "/fumidai-lab/acm-certificate"
# An ACM certificate ARN (region, account), the one form both ends take (lab/render/alb.py checks a listener's).
CERTIFICATE_ARN = re.compile(r"arn:aws[a-z-]*:acm:([a-z0-9-]+):([0-9]{12}):certificate/[A-Za-z0-9-]{1,64}")


def lab_certificate(arn: str) -> dict | None:
    """An ACM certificate as the ALB gets it: certificate, the chain imported with it, private key (PEM)."""
    from moto.acm.exceptions import CertificateNotFound
    from moto.acm.models import AWS_ROOT_CA, acm_backends

    match = CERTIFICATE_ARN.fullmatch(arn)
    if not match:
        return None
    region, account = match.groups()
    try:
        bundle = acm_backends[account][region].get_certificate(arn)
    except (CertificateNotFound, KeyError):  # KeyError: a region moto does not know
        return None
    # moto appends a sample root CA to every chain; an ALB serves the imported chain only.
    chain = bundle.chain.removesuffix(AWS_ROOT_CA + b"\n").removesuffix(b"\n" + AWS_ROOT_CA).strip()
    return {"certificate": bundle.cert.decode(), "chain": chain.decode(), "private_key": bundle.key.decode()}


def serve_lab_certificates(app):
    """The WSGI app, answering LAB_CERTIFICATE_PATH itself (see lab_certificate) and passing on the rest."""
    from urllib.parse import parse_qs

    def wrapped(environ, start_response):
        if environ.get("PATH_INFO") != LAB_CERTIFICATE_PATH:
            return app(environ, start_response)
        found = None
        if environ.get("REQUEST_METHOD") == "GET":
            found = lab_certificate((parse_qs(environ.get("QUERY_STRING", "")).get("arn") or [""])[0])
        body = json.dumps(found or {"error": "no such certificate"}).encode()
        start_response("200 OK" if found else "404 Not Found",
                       [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]

    return wrapped


def serve_lab_observations(lab_dir: Path | None) -> None:
    serve_console_output(lab_dir)
    if lab_dir:
        serve_lab_target_health(lab_dir)


def apply_fixes() -> None:
    """Fixes for moto behaviour that differs from AWS in ways amazon.aws notices, and AWS's dependency rules
    on delete (lab/moto_dependencies.py), so that a teardown in the wrong order fails here as on AWS, and
    routes to a gone target reported blackhole (lab/moto_routes.py)."""
    from lab import moto_dependencies, moto_routes

    moto_dependencies.apply()
    moto_routes.apply()
    fix_describe_tags_resource_types()
    add_seed_amis()
    fix_volume_snapshot_id()
    fix_nat_gateway_private_ip()
    fix_alb_default_attributes()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--lab-dir", type=Path, help="where a lab publishes consoles and ALB health (see above)")
    parser.add_argument("--transition-delays", type=moto_transitions.parse_delays, default={},
                        help="e.g. instance=2,nat_gateway=3,load_balancer=2: seconds each kind stays pending "
                             "(lab/moto_transitions.py); default: none, every state is immediate")
    args = parser.parse_args()
    apply_fixes()
    moto_transitions.apply(args.transition_delays)
    serve_lab_observations(args.lab_dir.resolve() if args.lab_dir else None)
    from moto.server import DomainDispatcherApplication, create_backend_app, run_simple

    app = DomainDispatcherApplication(create_backend_app)
    if args.lab_dir:
        app = serve_lab_certificates(app)
    run_simple(args.host, args.port, app, threaded=True, use_reloader=False)


if __name__ == "__main__":
    main()
