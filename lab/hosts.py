"""Building the hosts: the plan's nodes as podman containers on the lab networks, then their consoles published."""

from __future__ import annotations

import socket
import time
from pathlib import Path

from ansible_collections.fumidai.vpc.plugins.module_utils import fumidai_host_keys as host_keys

from lab import config, hostnet, podman, state
from lab.kinds import kind_of
from lab.proc import LabError, log, write_file
from lab.render import aws_api, instance, internet


def networks(plan: dict) -> None:
    """Prohibit routes first, then the veth parents and the three lab networks."""
    hostnet.prohibit_routes([plan["vpc_cidr"], plan["office_cidr"], plan["internet_cidr"]])
    hostnet.ensure_veth(config.VETH_VPC)
    hostnet.ensure_veth(config.VETH_INTERNET)
    podman.ensure_network(config.NET_VPC, "-d", "macvlan", "-o", f"parent={config.VETH_VPC[0]}",
                          "--subnet", plan["vpc_cidr"], "--gateway", plan["igw_ip"])
    podman.ensure_network(config.NET_INTERNET, "-d", "macvlan", "-o", f"parent={config.VETH_INTERNET[0]}",
                          "--subnet", plan["internet_cidr"], "--gateway", plan["internet_gateway_ip"])
    # A bridge without masquerading: the host gets the office address on it.
    podman.ensure_network(config.NET_OFFICE, "--internal", "--subnet", plan["office_cidr"],
                          "--gateway", plan["office_host_ip"])


def write_node_files(plan: dict, node: dict, base: Path | None = None) -> Path:
    """The node's generated files in .cache/lab/nodes/<name>/ (or base/<name>/; its kind's renderer says which)."""
    files_dir = (base or config.NODES_DIR) / node["name"]
    for name, spec in kind_of(node).files(plan, node).items():
        path = files_dir / name
        if spec is None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()
        else:
            write_file(path, *spec)
    return files_dir


def container_args(plan: dict, node: dict, files_dir: Path) -> list[str]:
    kind = kind_of(node)
    common = ["--hostname", node["name"], *podman.COMMON_RUN] if kind.lab_container else []
    return [*common, *kind.run_args(plan, node, files_dir)]


def build_node(plan: dict, node: dict, created: set[str]) -> None:
    kind = kind_of(node)
    net_path = config.NODES_DIR / node["name"] / "net.sh"
    previous = net_path.read_text() if kind.apply_net and net_path.exists() else None
    files_dir = write_node_files(plan, node)
    args = container_args(plan, node, files_dir)
    script = net_path.read_text() if kind.apply_net else None
    payload = identity = None
    if kind.boots_like_an_instance:
        # An instance is rebuilt only when its own definition changes; a changed security group membership
        # (another instance joined its group) is applied in place, as AWS does, keeping its disk and host keys.
        credentials = instance.profile_credentials(node, state.aws_env())
        payload, identity = instance.boot_payload(script, credentials), [args, instance.unit()]
        if credentials is not None:
            # An instance launched with a profile differs from one launched without (a rebuild, as on EC2).
            identity.append(node["instance_profile"])
    changed = podman.ensure_container(node, args, payload, identity=identity)
    if not changed and script is not None and previous != script:
        apply_net_in_place(node, net_path)
    if changed and kind.boots_like_an_instance:
        created.add(node["container"])
        # A rebuilt host has new host keys under the same instance ID (on EC2 a rebuilt instance has a new
        # ID): drop its pin and its old console, so provisioning pins what the new host prints.
        unpin(node["resource_id"])
        (config.CONSOLE_DIR / node["resource_id"]).unlink(missing_ok=True)
    what = kind.description or f"{node['kind']}{'' if changed else ' (unchanged)'}"
    log(f"{node['container']:<28} {node['ip']:<15} {what}")
    for note in node["notes"]:
        log(f"  note: {note}")


def build_hosts(plan: dict) -> None:
    networks(plan)
    remove_stale_instances(plan)
    created: set[str] = set()
    for node in [*plan["nodes"], internet.node(plan), *aws_api.nodes(plan)]:
        build_node(plan, node, created)
    # The office: this machine reaches the VPC through the VPN router.
    hostnet.route_via(plan["vpc_cidr"], plan["office_router_ip"])
    log(f"route {plan['vpc_cidr']} via {plan['office_router_ip']} (VPN router) from {plan['office_host_ip']}")
    wait_for_instances(plan)
    publish_consoles(plan, created)


def apply_net_in_place(node: dict, path: Path) -> None:
    """Re-apply a running node's routes and security groups from its (new) script, as AWS applies a changed
    route table or security group to running instances."""
    if kind_of(node).apply_net == "unit":
        # The boot unit's script too, so a later restart keeps the new state.
        podman.copy_in(str(path), node["container"], "/usr/local/sbin/fumidai-lab-net")
        podman.exec_in(node["container"], "systemctl", "restart", instance.UNIT_NAME)
    else:
        podman.exec_in(node["container"], "/lab/net.sh")


def remove_stale_instances(plan: dict) -> None:
    """Remove the containers of instances that are gone from the local API (terminated)."""
    wanted = {n["container"] for n in plan["nodes"]}
    for container in podman.containers(kind="instance"):
        if container not in wanted:
            podman.remove_containers([container])
            log(f"{container:<28} removed (its instance is gone)")


def unpin(instance_id: str) -> None:
    """Forget an instance's pinned host key (the lab rebuilt it)."""
    pinned = host_keys.read_known_hosts(str(config.KNOWN_HOSTS))
    if pinned.pop(instance_id, None) is not None:
        host_keys.write_known_hosts(str(config.KNOWN_HOSTS), pinned)
        log(f"  {instance_id}: rebuilt, its pinned host key is dropped")


def publish_consoles(plan: dict, booting: set[str]) -> None:
    """Give the local AWS API each instance's console (podman logs of its tty since its last boot, as EC2
    posts the console of the current boot), once it printed its host keys.

    This is the channel provisioning pins host keys from, as it reads EC2's GetConsoleOutput on AWS.
    ``booting``: containers just created, whose first boot prints the keys (cloud-init does it once per
    instance, so a container that merely restarted prints none: the console published from the boot that
    printed them stays).
    """
    config.CONSOLE_DIR.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + config.CONSOLE_TIMEOUT
    for node in plan["nodes"]:
        if node["kind"] != "instance":
            continue
        booted = podman.started_at(node["container"])
        while True:
            console = podman.logs(node["container"], since=booted)
            try:
                printed = host_keys.parse_console_host_keys(console)
            except host_keys.HostKeyError as exc:
                raise LabError(f"{node['name']}: {exc}") from None
            if printed or node["container"] not in booting:
                break
            if time.monotonic() > deadline:
                raise LabError(f"{node['name']} printed no SSH host keys on its console within "
                               f"{config.CONSOLE_TIMEOUT}s (fumidai-keys-to-console.service in the image)")
            time.sleep(1)
        path = config.CONSOLE_DIR / node["resource_id"]
        published = path.read_text() if path.exists() else None
        if not printed and published and host_keys.parse_console_host_keys(published):
            # A restart prints no keys (first boot only): the console still shows the boot that did, as
            # EC2's "Get system log" keeps the first boot's keys readable for re-pinning a running instance.
            continue
        if published != console:
            write_file(path, console, 0o600)
    log(f"consoles published to the local AWS API ({config.CONSOLE_DIR.relative_to(config.ROOT)})")


def wait_for_instances(plan: dict, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    for node in plan["nodes"]:
        if node["kind"] != "instance":
            continue
        while True:
            proc = podman.exec_in(node["container"], "systemctl", "is-active", instance.UNIT_NAME, "ssh.service",
                                  check=False)
            states = proc.stdout.decode().split()
            if states == ["active", "active"]:
                break
            if "failed" in states or time.monotonic() > deadline:
                journal = podman.exec_in(node["container"], "journalctl", "-b", "--no-pager", "-n", "30", "-u",
                                         instance.UNIT_NAME, "-u", "ssh.service", check=False).stdout.decode()
                raise LabError(f"{node['name']} did not come up (fumidai-lab-net, ssh: {states}):\n{journal}")
            time.sleep(1)
    for node in (n for n in plan["nodes"] if n["role"] == "bastion"):
        wait_for_port(node["ip"], 22, deadline)
        log(f"bastion {node['ip']}:22 answers from the office")


def wait_for_port(address: str, port: int, deadline: float) -> None:
    while True:
        try:
            with socket.create_connection((address, port), timeout=2):
                return
        except OSError as exc:
            if time.monotonic() > deadline:
                raise LabError(f"{address}:{port} is not reachable from the office: {exc}") from exc
            time.sleep(1)
