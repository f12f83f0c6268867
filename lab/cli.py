"""The lab's command line: python -m lab up|down|show|step STEP.

    python -m lab up [--until STEP] [--web-count N] [--ami-os OS] [--bastion-per-az] [--nat-standby]
                                    provision on moto, build the hosts, run site.yml
    python -m lab step STEP         one step (keys, moto, provision, hosts, egress, configure, ssh-config)
    python -m lab step net          re-apply moto's routes and security groups to the running hosts
    python -m lab step consoles     publish the hosts' consoles to the local AWS API again
    python -m lab down              remove everything the lab created (safe to repeat)
    python -m lab show              print the lab's addresses (.cache/lab/lab.json)
    python -m lab follow start|stop|run
                                    keep applying the local AWS API's routes to the hosts (lab/follow.py)

Nothing here is a copy of the topology. The ``hosts`` step describes the VPC
moto holds (boto3, honouring AWS_ENDPOINT_URL) and turns it into podman
containers on an isolated layer-2 network for the VPC CIDR:

* every instance: a systemd container with the private IP (and MAC) moto
  assigned, the key pair authorised for the login user of its image (as
  cloud-init does), and a boot unit applying what AWS enforces outside the
  instance: the default route its subnet's route table names, the route back
  to the office (a VGW route), its security groups as stateful iptables and
  ip6tables rules (chains AWS-SG-IN / AWS-SG-OUT, SG references resolved to
  member addresses, default deny) and the source/destination check (chain
  AWS-SRC-DST-CHECK);
* the internet gateway, the NAT gateway (at the NAT gateway's private IP), the
  VPN router and the ALB (HAProxy configured from moto's listeners, target
  groups, health checks and registered targets) as small service containers;
* a lab "internet" (198.18.0.0/24) behind the internet gateway with an HTTP
  server that answers and logs each request's source address.

The ``egress`` step records, before site.yml runs, the address each web host's
request to that server leaves with (.cache/lab/egress-before-configure.json):
the NAT gateway's from the start, none behind the NAT instance until its role
has turned forwarding and MASQUERADE on.

The control node reaches the VPC as an admin would: from the office range
(lab/vars.yml admin_cidrs) through the VPN router. Before any lab network
exists, ``prohibit`` routes for every lab CIDR guarantee that a missing lab
route never sends a packet off the machine; they are removed last.
"""

from __future__ import annotations

import argparse
import sys

from lab import config, follow, settings, steps
from lab.proc import LabError


def topology_args(command: argparse.ArgumentParser) -> None:
    """The resilience options (kept for the lab's later steps once provisioned with them)."""
    command.add_argument("--bastion-per-az", dest="bastion_per_az", action="store_true",
                         help="a bastion in each public subnet (bastion_per_az)")
    command.add_argument("--nat-standby", dest="nat_instance_standby", action="store_true",
                         help="a standby NAT instance with its failover watchdog (nat_instance_standby)")


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="python -m lab", description=__doc__,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = top.add_subparsers(dest="action", required=True)
    web_count_help = (f"web servers to run (web01..webNN, 1-{config.MAX_WEB_COUNT}; default: "
                      f"{config.WEB_COUNT_ENV}, else what the lab was provisioned with, else lab_web_count in "
                      "lab/vars.yml)")
    ami_os_help = ("the image OS to provision with (ami_os, a key of ami_lookup: debian12, al2023); the login "
                   "user follows from it. Default: what the lab was provisioned with, else the playbooks' default")
    up = sub.add_parser("up", help="every step, in order")
    up.add_argument("--until", choices=config.STEPS, default=config.STEPS[-1], help="stop after this step")
    up.add_argument("--web-count", type=int, help=web_count_help)
    up.add_argument("--ami-os", help=ami_os_help)
    topology_args(up)
    step = sub.add_parser("step", help="run one step")
    step.add_argument("name", choices=[*config.STEPS, *config.EXTRA_STEPS])
    step.add_argument("--web-count", type=int, help=web_count_help)
    step.add_argument("--ami-os", help=ami_os_help)
    topology_args(step)
    dn = sub.add_parser("down", help="take everything down")
    dn.add_argument("--keep-moto", action="store_true", help="leave the moto server running")
    dn.add_argument("--no-teardown", action="store_true",
                    help="skip playbooks/teardown.yml on moto (its state goes with the server anyway)")
    sub.add_parser("show", help="print the lab's addresses")
    fol = sub.add_parser("follow", help="keep applying the local AWS API's routes and groups to the hosts")
    fol.add_argument("mode", choices=["start", "stop", "run"], help="in the background, stop it, or in the foreground")
    fol.add_argument("--interval", type=float, default=follow.DEFAULT_INTERVAL, help="seconds between passes")
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        if args.action == "show":
            return steps.show()
        steps.preflight()
        web_count = getattr(args, "web_count", None)
        if web_count is not None:
            settings.resolve_web_count(web_count)  # a bad count fails before anything is built
        ami_os = getattr(args, "ami_os", None)
        if ami_os is not None:
            settings.resolve_ami_os(ami_os)  # so does a malformed OS name
        topology = {key: getattr(args, key, False) for key in settings.TOPOLOGY_OPTIONS}
        if args.action == "up":
            steps.run_steps(list(config.STEPS[: config.STEPS.index(args.until) + 1]), web_count, ami_os, topology)
        elif args.action == "step":
            steps.run_steps([args.name], web_count, ami_os, topology)
        elif args.action == "follow":
            if args.mode == "stop":
                follow.stop()
            elif not 0.2 <= args.interval <= 60:
                raise LabError(f"--interval: {args.interval:g} is not between 0.2 and 60 seconds")
            elif args.mode == "start":
                follow.start(args.interval)
            else:
                follow.run(args.interval)
        else:
            steps.down(keep_moto=args.keep_moto, teardown=not args.no_teardown)
    except LabError as exc:
        print(f"\nlab: {exc}", file=sys.stderr)
        return 1
    return 0
