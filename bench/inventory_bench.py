#!/usr/bin/env python3
"""Benchmark: bastion_ec2 vs amazon.aws.aws_ec2 vs a bare paginated boto3 describe_instances.

    .venv/bin/python bench/inventory_bench.py [--sizes 500 2000] [--repeat 2]

For each N it resets a private moto server (127.0.0.1, free port), seeds N running instances of the
project over two VPCs with a bastion each and 40 subnets (8 public, 32 private), plus 5% stopped ones,
then times, as separate processes from a cold start:

  floor        python + boto3, one paginated DescribeInstances with the same server-side filters
  bastion_ec2  ansible-inventory --list (no cache: the project's default)
  cached       ansible-inventory --list served from the jsonfile cache
  aws_ec2      ansible-inventory --list with amazon.aws.aws_ec2 set up for comparable groups
               (subnet, role, zone, vpc) and a ProxyCommand composed for hosts without a public IP

and, in-process, the plugin's own parse() time from the cache (what the CLI adds is Ansible's startup
and JSON output). Each figure is the best of --repeat runs. Prints times and ratios; asserts nothing
(timings are not tests).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from lab import moto_local
from tests.support.aws_seed import AwsSeed, fleet_plans

ROOT = Path(__file__).resolve().parent.parent

BIN = Path(sys.executable).parent
REGION = "ap-northeast-1"

FLOOR = """
import boto3
client = boto3.client("ec2")
filters = [{"Name": "tag:Project", "Values": ["fumidai"]}, {"Name": "instance-state-name", "Values": ["running"]}]
count = sum(len(r["Instances"]) for page in client.get_paginator("describe_instances").paginate(Filters=filters)
            for r in page["Reservations"])
print(count)
"""

AWS_EC2_CONFIG = {
    "plugin": "amazon.aws.aws_ec2",
    "regions": [REGION],
    "filters": {"tag:Project": "fumidai", "instance-state-name": "running"},
    "hostnames": ["tag:Name", "instance-id"],
    "keyed_groups": [
        {"key": "subnet_id", "prefix": "subnet"},
        {"key": "tags.Role", "prefix": "role"},
        {"key": "placement.availability_zone", "prefix": "az"},
        {"key": "vpc_id", "prefix": "vpc"},
    ],
    "groups": {"public": "public_ip_address is defined", "private": "public_ip_address is not defined"},
    "compose": {
        "ansible_host": "public_ip_address | default(private_ip_address)",
        # bastion_ec2 sets every host's login user (from its image); aws_ec2 can only give one to all.
        "ansible_user": "'admin'",
        # aws_ec2 cannot find each VPC's bastion; a fixed one is the best it can compose.
        "ansible_ssh_common_args": "public_ip_address is defined | ternary(omit, "
                                   "'-o ProxyCommand=\"ssh -W %h:%p -q admin@192.0.2.10\"')",
    },
}


def seed(ec2, total: int) -> None:
    """Two VPCs, bastion in each, 40 subnets, ``total`` running instances (+5% stopped): tests/support/aws_seed.py."""
    seeder = AwsSeed(ec2)
    for plan in fleet_plans(total):
        seeder.build(plan)


def timed(command: list[str], env: dict) -> tuple[float, str]:
    start = time.perf_counter()
    proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{proc.stderr[-3000:]}")
    return elapsed, proc.stdout


def best(command: list[str], env: dict, repeat: int) -> tuple[float, str]:
    runs = [timed(command, env) for _ in range(repeat)]
    return min(r[0] for r in runs), runs[-1][1]


def host_count(listing: str) -> int:
    return len(json.loads(listing)["_meta"]["hostvars"])


def plugin_parse_from_cache(inventory_file: Path, env: dict) -> float:
    """The plugin's own parse() time when the cache is warm (in this process)."""
    code = f"""
import os, time
from ansible.inventory.data import InventoryData
from ansible.parsing.dataloader import DataLoader
from ansible.plugins.loader import init_plugin_loader, inventory_loader
init_plugin_loader([{str(ROOT / '.collections')!r}])  # the checkout as the collection fumidai.vpc
plugin = inventory_loader.get('fumidai.vpc.bastion_ec2')
start = time.perf_counter()
plugin.parse(InventoryData(), DataLoader(), {str(inventory_file)!r}, cache=True)
print(time.perf_counter() - start)
"""
    return float(subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                                text=True, check=True).stdout.strip().splitlines()[-1])


def bench_size(endpoint: str, size: int, repeat: int, workdir: Path) -> dict:
    import boto3

    urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST"), timeout=30).close()
    env = {**os.environ, **moto_local.environment(endpoint), "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
           "PATH": f"{BIN}:{os.environ['PATH']}", "ANSIBLE_NOCOLOR": "1",
           "ANSIBLE_INVENTORY_ENABLED": "bastion_ec2,amazon.aws.aws_ec2,host_list,auto",
           "ANSIBLE_INVENTORY_CACHE_CONNECTION": str(workdir / f"cache-{size}")}
    client = boto3.client("ec2", region_name=REGION, endpoint_url=endpoint, aws_access_key_id="testing",
                          aws_secret_access_key="testing")
    t0 = time.perf_counter()
    seed(client, size)
    print(f"  seeded {size} instances in {time.perf_counter() - t0:.0f}s", flush=True)

    # Cold = the project's default (no cache configured); cached = the same with a warm jsonfile cache.
    cold_file = workdir / f"cold{size}.bastion_ec2.yml"
    cold_file.write_text("plugin: fumidai.vpc.bastion_ec2\n")
    ours = workdir / f"bench{size}.bastion_ec2.yml"
    ours.write_text(f"plugin: fumidai.vpc.bastion_ec2\ncache: true\ncache_plugin: jsonfile\n"
                    f"cache_connection: {workdir / f'cache-{size}'}\ncache_timeout: 3600\n")
    theirs = workdir / f"bench{size}.aws_ec2.yml"
    theirs.write_text(json.dumps(AWS_EC2_CONFIG))
    inventory = str(BIN / "ansible-inventory")

    floor, out = best([sys.executable, "-c", FLOOR], env, repeat)
    listed = int(out.strip())
    cold, out = best([inventory, "--list", "-i", str(cold_file)], env, repeat)
    assert host_count(out) == listed, (host_count(out), listed)
    timed([inventory, "--list", "--flush-cache", "-i", str(ours)], env)  # warm the cache
    cached, out = best([inventory, "--list", "-i", str(ours)], env, repeat)
    assert host_count(out) == listed
    parse_cached = min(plugin_parse_from_cache(ours, env) for _ in range(repeat))
    startup, _ = best([inventory, "--list", "-i", "localhost,"], env, repeat)
    theirs_time, out = best([inventory, "--list", "-i", str(theirs)], env, repeat)
    assert host_count(out) == listed, (host_count(out), listed)
    return {"size": listed, "floor": floor, "cold": cold, "cached": cached, "parse_cached": parse_cached,
            "startup": startup, "aws_ec2": theirs_time}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[500, 2000])
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()

    port = moto_local.free_port()
    endpoint = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="inventory-bench-") as tmp:
        server = moto_local.spawn(port, Path(tmp) / "moto.log")
        try:
            moto_local.wait_until_up(endpoint)
            results = []
            for size in args.sizes:
                print(f"N={size}", flush=True)
                results.append(bench_size(endpoint, size, args.repeat, Path(tmp)))
        finally:
            moto_local.stop_pid(server.pid)

    print()
    print(f"{'hosts':>6} {'floor':>7} {'bastion_ec2':>12} {'cached':>7} {'(parse)':>8} {'aws_ec2':>8} "
          f"{'vs aws_ec2':>11} {'vs floor':>9}   (seconds; ansible-inventory startup alone: see note)")
    for r in results:
        print(f"{r['size']:>6} {r['floor']:>7.2f} {r['cold']:>12.2f} {r['cached']:>7.2f} {r['parse_cached']:>8.3f} "
              f"{r['aws_ec2']:>8.2f} {r['aws_ec2'] / r['cold']:>10.1f}x {r['cold'] / r['floor']:>8.2f}x")
    for r in results:
        print(f"N={r['size']}: `ansible-inventory --list -i localhost,` alone takes {r['startup']:.2f}s here; "
              f"the cached run is that plus {max(r['cached'] - r['startup'], 0):.2f}s "
              f"(the plugin's parse from cache: {r['parse_cached']:.3f}s)")
    print("targets: bastion_ec2 >= 3x faster than aws_ec2, <= 1.5x the floor, cached plugin run < 1 s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
