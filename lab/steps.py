"""The lab's steps (keys, moto, provision, hosts, configure, ssh-config, net, consoles), `down` and `show`."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from lab import config, hostnet, moto_local, podman, settings, state
from lab.hosts import apply_net_in_place, build_hosts, publish_consoles
from lab.kinds import kind_of
from lab.plan import build_plan
from lab.proc import LabError, log, run, write_file
from lab.render import alb as alb_render

NOT_UP = "the lab is not up (make demo, or python -m lab up)"


def ansible_env() -> dict[str, str]:
    venv_bin = str(Path(sys.executable).parent)
    return {**os.environ, **state.aws_env(), "PATH": f"{venv_bin}:{os.environ.get('PATH', '')}",
            "ANSIBLE_CONFIG": str(config.ROOT / "ansible.cfg"),
            # The inventory plugin: reach the bastion at its private IP (from the office,
            # through the VPN), never at the public IP moto invented.
            "FUMIDAI_BASTION_ADDRESS": "private_ip",
            "FUMIDAI_SSH_PRIVATE_KEY": str(config.KEY_FILE),
            # Pinned host keys of the lab's hosts (inventory plugin, playbooks, ssh_config.yml).
            "FUMIDAI_KNOWN_HOSTS": str(config.KNOWN_HOSTS),
            # The lab's provisioning outputs next to the lab, not in the project's shared
            # .cache/outputs.yml that any other provisioning run on this machine rewrites.
            "FUMIDAI_OUTPUTS_FILE": str(config.CACHE / "outputs.yml")}


def playbook_command(name: str, *extra: str) -> list[str]:
    """ansible-playbook with the lab's variables: its vars file, web instances, image OS and topology."""
    cmd = ["ansible-playbook", name, "-e", f"@{config.LAB_VARS.relative_to(config.ROOT)}"]
    if config.WEB_INSTANCES_FILE.exists():
        cmd += ["-e", f"@{config.WEB_INSTANCES_FILE.relative_to(config.ROOT)}"]
    ami_os = settings.resolve_ami_os(None)
    if ami_os:
        # The image OS the lab was provisioned with (up --ami-os): the login user follows from it.
        cmd += ["-e", f"ami_os={ami_os}"]
    if settings.topology_file().exists():
        cmd += ["-e", f"@{settings.topology_file().relative_to(config.ROOT)}"]
    return [*cmd, *extra]


def playbook(name: str, *extra: str) -> None:
    cmd = playbook_command(name, *extra)
    log("$ " + shlex.join(cmd))
    proc = subprocess.run(cmd, cwd=config.ROOT, env=ansible_env())
    if proc.returncode != 0:
        raise LabError(f"{name} failed (exit {proc.returncode}); its output is above")


def step_keys() -> None:
    if config.KEY_FILE.exists():
        log(f"{config.KEY_FILE.relative_to(config.ROOT)} exists")
        return
    config.CACHE.mkdir(parents=True, exist_ok=True)
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "fumidai-lab", "-f", str(config.KEY_FILE)])
    log(f"generated {config.KEY_FILE.relative_to(config.ROOT)}")


def step_moto() -> None:
    current = moto_local.read_state()
    if current and current.get("lab_dir") != str(config.AWS_DIR):
        raise LabError(f"a moto server started outside the lab runs at {current['endpoint']}: it cannot show the "
                       "lab hosts' consoles; stop it first (python -m lab.moto_local stop)")
    config.AWS_DIR.mkdir(parents=True, exist_ok=True)
    if moto_local.main(["start", "--lab-dir", str(config.AWS_DIR)]) != 0:
        raise LabError("the moto server did not start (see .cache/moto/server.log)")


def step_provision(web_count: int | None = None, ami_os: str | None = None,
                   topology: dict[str, bool] | None = None) -> None:
    # A second bastion, a standby NAT instance (issue 14): kept for the lab's later playbooks too.
    settings.write_topology(settings.resolve_topology(topology))
    count = settings.resolve_web_count(web_count)
    settings.write_web_instances(count)
    log(f"{count} web server(s) ({config.WEB_INSTANCES_FILE.relative_to(config.ROOT)})")
    # Every later playbook of this lab gets the same image OS (see playbook()).
    settings.write_ami_os(settings.resolve_ami_os(ami_os))
    # The lab's hosts boot in the next step: their keys are pinned when site.yml provisions again (configure).
    playbook("fumidai.vpc.provision", "-e", "aws_host_keys_enabled=false")


def current_plan() -> dict:
    topo = state.describe()
    # The OS the lab provisioned with: the login user of an instance whose image the mapping does not know.
    topo["ami_os"] = settings.resolve_ami_os(None)
    plan = build_plan(topo, settings.office_network())
    # Where the lab's AWS API endpoint relays to (lab/render/aws_api.py): the moto server's port.
    plan["aws_api_port"] = moto_local.port_of(state.aws_env()["AWS_ENDPOINT_URL"])
    return plan


def step_hosts() -> None:
    plan = current_plan()
    # Written first: `down` must find the CIDRs even if building fails half way.
    state.save_state(plan)
    write_env_file()
    build_hosts(plan)


def egress_source(container: str, url: str) -> str | None:
    """The source address the lab internet server answers with, or None when the request got nowhere."""
    proc = podman.exec_in(container, "curl", "-sS", "--max-time", "5", url, check=False)
    return proc.stdout.decode().strip() if proc.returncode == 0 else None


def step_egress() -> None:
    """What each web host's request to the lab internet leaves with, before site.yml: the NAT gateway's
    address behind it, nothing behind the NAT instance (it forwards only once its role has run)."""
    plan = state.load_state()
    if not plan:
        raise LabError(NOT_UP)
    url = f"http://{plan['internet_server_ip']}/"
    webs = [n for n in plan["nodes"] if n["kind"] == "instance" and n["role"] == "web"]
    with ThreadPoolExecutor(max_workers=8) as pool:
        sources = dict(zip([n["name"] for n in webs], pool.map(lambda n: egress_source(n["container"], url), webs),
                           strict=True))
    write_file(config.EGRESS_FILE, json.dumps(sources, indent=2, sort_keys=True) + "\n")
    for name, source in sorted(sources.items()):
        log(f"{name:<18} " + (f"leaves as {source}" if source else "has no way out yet"))


def step_net() -> None:
    """Re-read moto and apply its routes, security groups and source/dest checks in place.

    What changing a route table, a security group or an instance attribute
    does on AWS: the running instances keep their disks and configuration (a
    `hosts` rebuild would replace a changed instance with a fresh one, losing
    what site.yml did). Instances, addresses and the ALB must be unchanged.
    """
    old = state.load_state()
    if not old:
        raise LabError(NOT_UP)
    plan = current_plan()
    if node_addresses(old) != node_addresses(plan):
        raise LabError("moto's instances or addresses changed since the hosts were built: "
                       "run `python -m lab step hosts` to rebuild them")
    state.save_state(plan)
    changed = apply_changes(plan)
    log(f"{changed} host(s) re-applied, the others unchanged")


def node_addresses(plan: dict) -> dict[str, tuple[str, str]]:
    """Each node's kind and address: what a rebuild (the hosts step) changes and an in-place re-apply must not."""
    return {n["name"]: (n["kind"], n["ip"]) for n in plan["nodes"]}


def apply_changes(plan: dict, names: set[str] | None = None) -> int:
    """Re-apply each running node's (``names``: only those) routes, groups and ACLs whose script changed, and
    the ALB's listeners; returns how many were re-applied."""
    changed = 0
    for node in plan["nodes"]:
        if not kind_of(node).apply_net or (names is not None and node["name"] not in names):
            continue
        script, mode = kind_of(node).files(plan, node)["net.sh"]
        path = config.NODES_DIR / node["name"] / "net.sh"
        if path.exists() and path.read_text() == script:
            continue
        write_file(path, script, mode)
        apply_net_in_place(node, path)
        changed += 1
        log(f"{node['container']:<28} {node['ip']:<15} re-applied")
    for node in plan["nodes"]:
        if names is not None and node["name"] not in names:
            continue
        # A changed listener (HTTPS, its certificate, a redirect) reaches the running ALB as on AWS: in place.
        if node["kind"] == "alb" and alb_render.apply_listeners_in_place(plan, node):
            changed += 1
            log(f"{node['container']:<28} {node['ip']:<15} listeners re-applied (HAProxy reloaded)")
    return changed


def write_env_file() -> None:
    """`. .cache/lab/env.sh` gives a shell what the lab's ansible runs get."""
    env = ansible_env()
    keys = [*moto_local.environment("x"), "ANSIBLE_CONFIG", "FUMIDAI_BASTION_ADDRESS", "FUMIDAI_SSH_PRIVATE_KEY",
            "FUMIDAI_KNOWN_HOSTS", "FUMIDAI_OUTPUTS_FILE"]
    lines = ["# Generated by the lab (python -m lab): the lab's AWS endpoint and inventory settings.",
             f"export PATH={shlex.quote(str(Path(sys.executable).parent))}:\"$PATH\""]
    lines += [f"export {key}={shlex.quote(env[key])}" for key in keys]
    # podman finds the lab's containers only with the project's storage config.
    lines += [f"export {key}={shlex.quote(env[key])}" for key in ("CONTAINERS_CONF", "CONTAINERS_STORAGE_CONF")]
    write_file(config.CACHE / "env.sh", "\n".join(lines) + "\n")


def alb_ready_args() -> list[str]:
    """site.yml ends by waiting until the ALB serves every web host; from the office the lab's ALB is reached
    at its lab address (moto's DNS name is a real-world name, never used)."""
    current = state.load_state()
    return ["-e", f"aws_alb_ready_url=http://{current['albs'][0]['ip']}/"] if current and current.get("albs") else []


def step_configure() -> None:
    playbook("site.yml", *alb_ready_args())


def step_ssh_config() -> None:
    playbook("fumidai.vpc.ssh_config")


def step_consoles() -> None:
    """Publish what each host printed on its console since it booted (after a legitimate key rotation)."""
    plan = state.load_state()
    if not plan:
        raise LabError(NOT_UP)
    publish_consoles(plan, booting=set())


def run_steps(steps: list[str], web_count: int | None = None, ami_os: str | None = None,
              topology: dict[str, bool] | None = None) -> None:
    funcs = {"keys": step_keys, "moto": step_moto, "provision": lambda: step_provision(web_count, ami_os, topology),
             "hosts": step_hosts, "egress": step_egress, "configure": step_configure,
             "ssh-config": step_ssh_config, "net": step_net, "consoles": step_consoles}
    for number, name in enumerate(steps, 1):
        print(f"==> lab: step {number}/{len(steps)}: {config.STEP_TITLES[name]}", flush=True)
        started = time.monotonic()
        try:
            funcs[name]()
        except LabError as exc:
            raise LabError(f"step '{name}' ({config.STEP_TITLES[name]}) failed: {exc}") from exc
        log(f"done in {time.monotonic() - started:.0f}s")


def down(keep_moto: bool = False, teardown: bool = True) -> None:
    """Remove containers, networks, veths and routes; then the AWS resources (unless ``teardown`` is off);
    then moto. Repeatable."""
    current = state.load_state() or {}
    from lab import follow  # lab.follow imports this module

    if follow.stop():
        log("stopped following the local AWS API")
    print("==> lab down: containers", flush=True)
    log(f"removed {podman.remove_labelled()} container(s)")
    print("==> lab down: networks and routes", flush=True)
    if current.get("vpc_cidr") and current.get("office_router_ip"):
        hostnet.remove_route_via(current["vpc_cidr"], current["office_router_ip"])
    for network in (config.NET_VPC, config.NET_INTERNET, config.NET_OFFICE):
        if podman.remove_network(network):
            log(f"removed network {network}")
    for pair in (config.VETH_VPC, config.VETH_INTERNET):
        if hostnet.remove_veth(pair):
            log(f"removed veth {pair[0]}")
    if moto_local.read_state():
        if teardown and (config.ROOT / "playbooks" / "teardown.yml").exists():
            print("==> lab down: AWS resources on moto (playbooks/teardown.yml)", flush=True)
            try:
                playbook("fumidai.vpc.teardown")
            except LabError as exc:
                print(f"    warning: {exc}; moto's state goes with the server anyway", flush=True)
        if not keep_moto:
            print("==> lab down: moto", flush=True)
            moto_local.main(["stop"])
    print("==> lab down: prohibit routes (last)", flush=True)
    for cidr in filter(None, [current.get("vpc_cidr"), current.get("office_cidr"), current.get("internet_cidr")]):
        hostnet.remove_prohibit_route(cidr)
        log(f"removed prohibit route for {cidr}")
    config.STATE_FILE.unlink(missing_ok=True)
    config.KNOWN_HOSTS.unlink(missing_ok=True)
    config.EGRESS_FILE.unlink(missing_ok=True)
    shutil.rmtree(config.AWS_DIR, ignore_errors=True)
    for generated in ("env.sh", "outputs.yml"):
        (config.CACHE / generated).unlink(missing_ok=True)
    config.WEB_INSTANCES_FILE.unlink(missing_ok=True)
    settings.write_ami_os(None)
    settings.write_topology({})
    shutil.rmtree(config.NODES_DIR, ignore_errors=True)


def show() -> int:
    current = state.load_state()
    if not current:
        print(NOT_UP, file=sys.stderr)
        return 1
    print(f"VPC {current['vpc_cidr']} ({current['vpc_id']}); office {current['office_cidr']} "
          f"(this machine: {current['office_host_ip']}); lab internet {current['internet_cidr']}")
    for node in current["nodes"]:
        via = f" default via {node['default_via']}" if node["default_via"] else ""
        print(f"  {node['name']:<18} {node['ip']:<15} {node['kind']:<17} {node['subnet']}{via}")
    for alb in current["albs"]:
        print(f"  ALB {alb['dns_name']} -> {alb['ip']}")
    return 0


def preflight() -> None:
    if os.geteuid() != 0:
        raise LabError("the lab creates network interfaces and routes: run it as root")
    for tool in ("podman", "ip", "ssh", "ssh-keygen"):
        if not shutil.which(tool):
            raise LabError(f"{tool} is not installed (make setup installs what the lab needs)")
    if not os.environ.get("CONTAINERS_CONF"):
        raise LabError("podman is not pointed at the project's config: source scripts/podman-env.sh first")
    if not podman.image_exists(config.IMAGE):
        raise LabError(f"image {config.IMAGE} is missing: run scripts/build-image.sh (make setup)")
