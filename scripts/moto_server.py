#!/usr/bin/env python3
"""moto's server with the few compatibility fixes fumidai needs.

Kept separate from the launcher so the fixes are in one documented place and
the playbooks stay free of anything moto-specific. See ``apply_fixes``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

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


def apply_fixes() -> None:
    """Fixes for moto behaviour that differs from AWS in ways amazon.aws notices."""
    fix_describe_tags_resource_types()
    add_seed_amis()
    fix_volume_snapshot_id()
    fix_nat_gateway_private_ip()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    apply_fixes()
    from moto.server import DomainDispatcherApplication, create_backend_app, run_simple

    app = DomainDispatcherApplication(create_backend_app)
    run_simple(args.host, args.port, app, threaded=True, use_reloader=False)


if __name__ == "__main__":
    main()
