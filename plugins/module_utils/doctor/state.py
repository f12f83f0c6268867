"""The VPC's state as the doctor's walks look it up: the VPC model plus targets by name or id.

Pure Python, no AWS calls: built from the facts vpc_reader reads (or a test passes), amazon.aws's
snake_case shapes. Subnet tiers, route tables, an instance's security groups and NACLs are vpc_model's.
"""

from __future__ import annotations

import ipaddress
import re

from ansible_collections.fumidai.vpc.plugins.module_utils.fumidai_text import text as shown_text
from ansible_collections.fumidai.vpc.plugins.module_utils.vpc_model import VpcModel, label, tags_dict

INSTANCE_ID = re.compile(r"^i-[0-9a-f]{8,17}$")
INTERNET = ipaddress.ip_network("0.0.0.0/0")
# Replies go to the client's ephemeral port. Linux uses 32768-60999, Windows
# and macOS 49152-65535; ALBs and NAT gateways use 1024-65535 (AWS docs).
CLIENT_EPHEMERAL = (32768, 65535)
AWS_EPHEMERAL = (1024, 65535)


class DoctorError(Exception):
    """Input the doctor cannot work with (unknown target, ambiguous name...)."""


class State(VpcModel):
    """The model of the VPC (terminated instances left out), with what the walks ask of it by name."""

    def find_instances(self, spec: str) -> list[dict]:
        if INSTANCE_ID.match(spec):
            return [i for i in self.instances if i.get("instance_id") == spec]
        return [i for i in self.instances if tags_dict(i).get("Name") == spec]

    def resolve_instance(self, spec: str, what: str) -> dict:
        matches = self.find_instances(spec)
        if not matches:
            raise DoctorError(f"no {what} instance named or with id '{shown_text(spec)}' "
                              f"(terminated instances are ignored)")
        if len(matches) > 1:
            ids = ", ".join(i["instance_id"] for i in matches)
            raise DoctorError(f"{len(matches)} instances are named '{shown_text(spec)}' ({ids}): "
                              f"give the instance id instead")
        return matches[0]

    def subnet_label(self, subnet_id: str) -> str:
        return label(self.subnets.get(subnet_id), subnet_id)

    def route_table_text(self, table: dict | None, missing: str) -> str:
        """A route table as "Name (rtb-...)", or ``missing`` when the subnet has none."""
        return label(table, table.get("route_table_id") or table.get("id")) if table else missing
