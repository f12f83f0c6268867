"""Renders an application load balancer: HAProxy from its listeners (HTTP, HTTPS with the certificate from the
local API's ACM, redirects), target groups and health checks."""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from ansible_collections.fumidai.vpc.plugins.module_utils import fumidai_host_keys as host_keys
from ansible_collections.fumidai.vpc.plugins.module_utils import ssh_args

from lab import config, podman, state
from lab.moto_server import CERTIFICATE_ARN, LAB_CERTIFICATE_PATH
from lab.podman import network_arg
from lab.proc import LabError, log, write_file
from lab.render import render
from lab.render.instance import security_group_rules

# The oldest TLS version each ALB security policy family accepts (ELBSecurityPolicy-2016-08 and the other
# policies without a version in their name still accept TLS 1.0).
TLS_MIN_VERSIONS = (("TLS13-1-3", "TLSv1.3"), ("TLS13-1-2", "TLSv1.2"), ("TLS-1-2", "TLSv1.2"),
                    ("TLS13-1-1", "TLSv1.1"), ("TLS-1-1", "TLSv1.1"))
# What a redirect may say, field by field (AWS's RedirectConfig): the #{...} keywords AWS fills in from the
# request, and literal characters that need no quoting in an HAProxy word or a log-format string.
REDIRECT_KEYWORD = re.compile(r"#\{(protocol|host|port|path|query)\}")
REDIRECT_LITERALS = {"host": r"[A-Za-z0-9.-]*", "path": r"[A-Za-z0-9._~!*()+,;=:@&/-]*",
                     "query": r"[A-Za-z0-9._~!*()+,;=:@&/?-]*"}
REDIRECT_CODES = {"HTTP_301": 301, "HTTP_302": 302}


def check_haproxy_inputs(group: dict) -> None:
    """Strings from the API become HAProxy words: only the forms AWS itself accepts get through."""
    def refuse(what: str, value: object) -> None:
        raise LabError(f"target group {ssh_args.shown(group.get('target_group_name'))}: {what} "
                       f"{ssh_args.shown(value)} is not a form AWS accepts")
    if not re.fullmatch(r"[A-Za-z0-9-]{1,32}", str(group.get("target_group_name"))):
        refuse("name", group.get("target_group_name"))
    if not re.fullmatch(r"/[A-Za-z0-9._~/%?=&:@+$'-]{0,1023}", str(group.get("health_check_path") or "/")):
        refuse("health check path", group.get("health_check_path"))
    if not re.fullmatch(r"[0-9]{3}(-[0-9]{3})?(,[0-9]{3})*", str((group.get("matcher") or {}).get("http_code", "200"))):
        refuse("success codes", (group.get("matcher") or {}).get("http_code"))
    for target in group.get("targets") or []:
        if not (host_keys.valid_instance_id(target["id"]) or _is_ipv4(target["id"])):
            refuse("target", target["id"])


def _is_ipv4(value: object) -> bool:
    try:
        return isinstance(ipaddress.ip_address(str(value)), ipaddress.IPv4Address)
    except ValueError:
        return False


def _port(value: object, what: str) -> int:
    """A port number from the API (an HAProxy word): a whole number 1-65535 or refused."""
    try:
        port = int(str(value))
    except ValueError:
        port = 0
    if not 1 <= port <= 65535:
        raise LabError(f"{what} {ssh_args.shown(value)} is not a port number")
    return port


def _seconds(value: object, what: str) -> int:
    try:
        return int(str(value))
    except ValueError:
        raise LabError(f"{what} {ssh_args.shown(value)} is not a whole number") from None


def _redirect_part(template: object, field: str, listener: dict) -> str:
    """One redirect field as HAProxy log-format text: keywords become the request's parts, literals stay."""
    text = str(template)
    if (len(text) > 128 or not re.fullmatch(REDIRECT_LITERALS[field], REDIRECT_KEYWORD.sub("", text))
            or (field == "path" and not text.startswith("/"))):
        raise LabError(f"listener {listener['port']}: redirect {field} {ssh_args.shown(template)} is not a form "
                       "the lab can render (AWS's #{...} keywords and URL characters without %, quotes or spaces)")
    if field == "path":
        text = text.replace("/#{path}", "%[path]")  # the request's path as it is, its leading slash included
    fetches = {"protocol": listener["scheme"], "port": str(listener["port"]),
               "host": "%[req.hdr(host),field(1,:)]", "path": "%[path,regsub(^/,)]", "query": "%[query]"}
    return REDIRECT_KEYWORD.sub(lambda match: fetches[match.group(1)], text)


def _redirect(action: dict, listener: dict) -> dict:
    """A redirect default action as HAProxy rules: AWS's defaults for the fields it leaves out (#{host},
    /#{path}, #{query}), the listener's own protocol and port for #{protocol} and #{port}."""
    redirect = action.get("redirect_config") or {}
    code = REDIRECT_CODES.get(str(redirect.get("status_code")))
    if code is None:
        raise LabError(f"listener {listener['port']}: redirect status {ssh_args.shown(redirect.get('status_code'))} "
                       "is not HTTP_301 or HTTP_302")
    protocol = str(redirect.get("protocol") or "#{protocol}")
    if protocol not in ("HTTP", "HTTPS", "#{protocol}"):
        raise LabError(f"listener {listener['port']}: redirect protocol {ssh_args.shown(protocol)} is not a form "
                       "AWS accepts")
    scheme = listener["scheme"] if protocol == "#{protocol}" else protocol.lower()
    port = str(redirect.get("port") or "#{port}")
    port = str(listener["port"]) if port == "#{port}" else str(_port(port, "redirect port"))
    host = _redirect_part(redirect.get("host") or "#{host}", "host", listener)
    path = _redirect_part(redirect.get("path") or "/#{path}", "path", listener)
    query = redirect.get("query")
    query = "#{query}" if query is None else str(query)
    base = f"{scheme}://{host}:{port}{path}"
    if query == "#{query}":
        # The request's query when it has one; no "?" when it has none.
        rules = [{"location": f"{base}?%[query]", "condition": "if { query -m found }"},
                 {"location": base, "condition": ""}]
    elif query:
        rules = [{"location": f"{base}?{_redirect_part(query, 'query', listener)}", "condition": ""}]
    else:
        rules = [{"location": base, "condition": ""}]
    return {"code": code, "rules": rules}


def _tls_min_version(policy: object) -> str:
    return next((version for family, version in TLS_MIN_VERSIONS if family in str(policy)), "TLSv1.0")


def certificate_arn(listener: dict) -> str:
    """The HTTPS listener's default certificate (the one it presents to clients that ask for no other name)."""
    certificates = listener.get("certificates") or []
    chosen = next((c for c in certificates if c.get("is_default")), certificates[0] if certificates else {})
    arn = chosen.get("certificate_arn")
    if not CERTIFICATE_ARN.fullmatch(str(arn)):
        raise LabError(f"HTTPS listener {ssh_args.shown(listener.get('port'))}: certificate "
                       f"{ssh_args.shown(arn)} is not an ACM certificate ARN")
    return str(arn)


def _listener(listener: dict, groups: dict, certificates: dict[int, str]) -> dict:
    port = _port(listener.get("port"), "listener port")
    if listener.get("protocol") not in ("HTTP", "HTTPS"):
        # Shown in a comment only, reduced to a safe form.
        return {"skipped": True, "protocol": re.sub(r"[^A-Z0-9]", "_", str(listener.get("protocol")))[:8],
                "port": port}
    rendered = {"skipped": False, "port": port, "scheme": listener["protocol"].lower(), "backend": None,
                "redirect": None, "certificate": None, "tls_min": None}
    if listener["protocol"] == "HTTPS":
        if port not in certificates:
            raise LabError(f"HTTPS listener {port}: its certificate was not loaded from the local API's ACM")
        rendered["certificate"] = certificates[port]
        rendered["tls_min"] = _tls_min_version(listener.get("ssl_policy"))
    # The last default action is the one that answers (authenticate-* actions come before it).
    actions = [a for a in listener.get("default_actions") or [] if a.get("type") in ("forward", "redirect")]
    action = actions[-1] if actions else None
    if action and action["type"] == "redirect":
        rendered["redirect"] = _redirect(action, rendered)
    elif action and action.get("target_group_arn") in groups:
        rendered["backend"] = groups[action["target_group_arn"]]["target_group_name"]
    return rendered


def _backend(group: dict, addresses: dict) -> dict:
    matcher = (group.get("matcher") or {}).get("http_code", "200")
    if "-" in matcher:
        low, high = matcher.split("-", 1)
        codes = "|".join(str(c) for c in range(int(low), int(high) + 1))
    else:
        codes = "|".join(c.strip() for c in matcher.split(","))
    check_port = group.get("health_check_port", "traffic-port")
    extra = "" if check_port in ("traffic-port", None) else f" port {_port(check_port, 'health check port')}"
    servers = [{"id": target["id"], "address": addresses.get(target["id"], target["id"]),
                "port": _port(target.get("port") or group.get("port"), "target port"), "extra": extra}
               for target in group.get("targets") or []]
    return {"name": group["target_group_name"], "path": group.get("health_check_path") or "/", "codes": codes,
            "timeout": _seconds(group.get("health_check_timeout_seconds", 5), "health check timeout"),
            "interval": _seconds(group.get("health_check_interval_seconds", 30), "health check interval"),
            "rise": _seconds(group.get("healthy_threshold_count", 5), "healthy threshold"),
            "fall": _seconds(group.get("unhealthy_threshold_count", 2), "unhealthy threshold"),
            "servers": servers}


def render_haproxy(plan: dict, alb: dict, certificates: dict[int, str] | None = None) -> str:
    """HAProxy from the ALB's listeners and target groups, with real health checks. ``certificates``: each HTTPS
    listener's port -> its PEM bundle's path in the ALB container (see files)."""
    addresses = {n["resource_id"]: n["ip"] for n in plan["nodes"] if n["kind"] == "instance"}
    groups = {g["target_group_arn"]: g for g in alb["target_groups"]}
    for group in groups.values():
        check_haproxy_inputs(group)
    config_text = render("haproxy.cfg", stats_dir=config.ALB_STATS_DIR, alb_ip=alb["ip"],
                         listeners=[_listener(listener, groups, certificates or {}) for listener in alb["listeners"]],
                         backends=[_backend(group, addresses) for group in groups.values()])
    return config_text.rstrip("\n") + "\n"


def fetch_certificate(arn: str) -> dict:
    """Certificate, chain and private key of an ACM certificate, from the lab's local API (lab/moto_server.py
    answers the lab, which plays the ALB, as AWS hands a load balancer its certificate's key)."""
    endpoint = state.aws_env()["AWS_ENDPOINT_URL"].rstrip("/")
    if urllib.parse.urlsplit(endpoint).hostname != "127.0.0.1":
        raise LabError(f"the local API's endpoint {ssh_args.shown(endpoint)} is not on 127.0.0.1")
    url = f"{endpoint}{LAB_CERTIFICATE_PATH}?{urllib.parse.urlencode({'arn': arn})}"
    try:
        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 (127.0.0.1, checked above)
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            raise LabError(f"the local API's ACM has no certificate {ssh_args.shown(arn, 120)} "
                           "(import it with acm import-certificate in the lab's region)") from None
        raise LabError(f"the local API answered {exc.code} for certificate {ssh_args.shown(arn, 120)}") from None
    except (OSError, ValueError) as exc:
        raise LabError(f"reading certificate {ssh_args.shown(arn, 120)} from the local API failed: {exc}") from None


def pem_bundle(material: dict, arn: str) -> str:
    """What HAProxy's ``ssl crt`` reads: certificate, chain, key. Each part must parse as PEM and is written
    back from what was parsed (nothing else of the API's text lands in the file); the key must be RSA or EC
    (what ACM imports) and belong to the certificate."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    try:
        certificate = x509.load_pem_x509_certificate(material["certificate"].encode())
        chain_text = material.get("chain") or ""
        chain = x509.load_pem_x509_certificates(chain_text.encode()) if chain_text.strip() else []
        key = serialization.load_pem_private_key(material["private_key"].encode(), password=None)
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise LabError(f"certificate {ssh_args.shown(arn, 120)}: the local API did not give a PEM certificate, "
                       f"chain and unencrypted private key ({type(exc).__name__})") from None
    if not isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)):
        raise LabError(f"certificate {ssh_args.shown(arn, 120)}: the key is not RSA or EC")
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(*spki) != certificate.public_key().public_bytes(*spki):
        raise LabError(f"certificate {ssh_args.shown(arn, 120)}: the private key is not the certificate's")
    pem = serialization.Encoding.PEM
    return b"".join([certificate.public_bytes(pem), *(c.public_bytes(pem) for c in chain),
                     key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption())]).decode()


def _alb(plan: dict, node: dict) -> dict:
    return next(a for a in plan["albs"] if a["node"] == node["name"])


def files(plan: dict, node: dict) -> dict:
    """net.sh, haproxy.cfg and, for each HTTPS listener, listener-<port>.pem (its certificate and key, 0600)."""
    alb = _alb(plan, node)
    out = {"net.sh": (render("alb-net.sh", plan=plan, node=node, sg=security_group_rules(plan, node)), 0o755)}
    certificates = {}
    for listener in alb["listeners"]:
        if listener.get("protocol") == "HTTPS":
            port, arn = _port(listener.get("port"), "listener port"), certificate_arn(listener)
            out[f"listener-{port}.pem"] = (pem_bundle(fetch_certificate(arn), arn), 0o600)
            certificates[port] = f"/lab/listener-{port}.pem"
    out["haproxy.cfg"] = (render_haproxy(plan, alb, certificates), 0o644)
    return out


def apply_listeners_in_place(plan: dict, node: dict) -> bool:
    """Give the running ALB its changed listeners (haproxy.cfg, certificates) and reload HAProxy, as AWS changes
    a listener without replacing the load balancer. True when something changed."""
    node_dir = config.NODES_DIR / node["name"]
    wanted = {name: spec for name, spec in files(plan, node).items() if name != "net.sh"}
    current = {name: (node_dir / name).read_text() if (node_dir / name).exists() else None for name in wanted}
    if all(current[name] == text for name, (text, _mode) in wanted.items()):
        return False
    for name, (text, mode) in wanted.items():
        write_file(node_dir / (name + ".new" if name == "haproxy.cfg" else name), text, mode)
    # Checked before it replaces the running configuration (which a restart of the container reads).
    check = podman.exec_in(node["container"], "haproxy", "-c", "-q", "-f", "/lab/haproxy.cfg.new", check=False)
    if check.returncode != 0:
        (node_dir / "haproxy.cfg.new").unlink()
        raise LabError(f"{node['name']}: HAProxy refuses the new configuration:\n"
                       f"{check.stderr.decode(errors='replace')[-2000:]}")
    (node_dir / "haproxy.cfg.new").replace(node_dir / "haproxy.cfg")
    # HAProxy's master (PID 1, started with -W) reloads on SIGUSR2: new workers, open connections finish.
    before = _workers(node)
    podman.exec_in(node["container"], "sh", "-c", "kill -USR2 1")
    _wait_for_new_workers(node, before)
    _drop_stale_keys(node_dir, set(wanted))
    return True


def _workers(node: dict) -> set[str]:
    """The HAProxy master's worker processes (PIDs of PID 1's children)."""
    proc = podman.exec_in(node["container"], "sh", "-c", "cat /proc/1/task/*/children", check=False)
    return set(proc.stdout.decode().split())


def _wait_for_new_workers(node: dict, before: set[str], timeout: float = 15.0) -> None:
    """The reload is asynchronous: return once a new worker runs and the old ones left (they stop listening at
    once but finish open connections), so the next request meets the new listeners; after ``timeout`` seconds
    go on with a note (an old worker still serving a long connection)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = _workers(node)
        if now - before and not now & before:
            return
        time.sleep(0.2)
    log(f"  note: {node['name']}: HAProxy's old workers still run {timeout:g}s after the reload")


def _drop_stale_keys(files_dir: Path, wanted: set[str]) -> None:
    """A removed HTTPS listener's certificate and key do not stay behind."""
    for path in files_dir.glob("listener-*.pem"):
        if path.name not in wanted:
            path.unlink()


def run_args(plan: dict, node: dict, files_dir: Path) -> list[str]:
    stats_dir = config.AWS_DIR / "alb" / node["name"]
    stats_dir.mkdir(parents=True, exist_ok=True)
    # The listeners the container starts with are part of its definition: `step hosts` restarts an ALB whose
    # listeners changed (`step net` reloads them in place).
    cfg_path = files_dir / "haproxy.cfg"  # written before the container is defined (lab.hosts.build_node)
    haproxy_cfg = cfg_path.read_text() if cfg_path.exists() else ""
    keys = set(re.findall(r" ssl crt /lab/(listener-[0-9]+\.pem) ", haproxy_cfg))
    _drop_stale_keys(files_dir, keys)
    loaded = hashlib.sha256(haproxy_cfg.encode() + b"".join((files_dir / key).read_bytes() for key in sorted(keys)))
    return ["--label", f"{config.LABEL}.listeners={loaded.hexdigest()[:16]}",
            "--network", network_arg(config.NET_VPC, node["ip"]), "--sysctl", "net.ipv4.ip_forward=0",
            "-v", f"{files_dir}:/lab:ro", "-v", f"{stats_dir}:{config.ALB_STATS_DIR}", config.IMAGE, "sh", "-c",
            "/lab/net.sh && haproxy -c -q -f /lab/haproxy.cfg && exec haproxy -W -db -f /lab/haproxy.cfg"]
