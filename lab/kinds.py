"""The one table of lab element kinds: for each kind, its renderer (generated files) and its container settings.

Adding a kind is one entry here plus its renderer in lab/render/ (and its templates in lab/templates/).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lab.render import alb, aws_api, gateways, instance, internet, sshd_host


@dataclass(frozen=True)
class Kind:
    # plan, node -> {file name: (text, mode) or None (created empty, never rewritten)} in .cache/lab/nodes/<name>/
    files: Callable[[dict, dict], dict]
    # plan, node, files dir -> podman create arguments after --hostname and podman.COMMON_RUN (image included)
    run_args: Callable[[dict, dict, Path], list[str]]
    # How a changed net.sh reaches the running container: "unit" (copied into the instance and its boot unit
    # restarted), "exec" (run from the /lab mount) or "" (the kind has no net.sh).
    apply_net: str = "exec"
    # The instance kind: net.sh and the boot unit are copied in before the first start ("user data"), and
    # the container is rebuilt only when its own definition changes (a changed net.sh is applied in place).
    boots_like_an_instance: bool = False
    description: str = ""
    # podman.COMMON_RUN (NET_ADMIN, no DNS, IPv4 only, no redirects) and --hostname: every lab node; the
    # bench's sshd hosts stay plain containers on podman's default network, as its timings always had them.
    lab_container: bool = True


KINDS: dict[str, Kind] = {
    "internet_gateway": Kind(gateways.internet_gateway_files, gateways.internet_gateway_args),
    "vpn_gateway": Kind(gateways.vpn_gateway_files, gateways.vpn_gateway_args),
    "nat_gateway": Kind(gateways.nat_gateway_files, gateways.nat_gateway_args),
    "alb": Kind(alb.files, alb.run_args),
    "instance": Kind(instance.files, instance.run_args, apply_net="unit", boots_like_an_instance=True),
    "internet": Kind(internet.files, internet.run_args, apply_net="", description="lab internet HTTP server"),
    "aws_api": Kind(aws_api.endpoint_files, aws_api.endpoint_args, apply_net="",
                    description="local AWS API endpoint on the lab internet"),
    # On this machine's network (no lab container settings: they would change this machine's sysctls).
    "aws_api_relay": Kind(aws_api.relay_files, aws_api.relay_args, apply_net="",
                          description="relay from the office bridge to the moto server", lab_container=False),
    # Not in a lab plan: the fan-out bench's bastion and targets (bench/fanout_bench.py).
    "sshd_host": Kind(sshd_host.files, sshd_host.run_args, apply_net="", description="sshd host",
                      lab_container=False),
}


def kind_of(node: dict) -> Kind:
    return KINDS[node["kind"]]
