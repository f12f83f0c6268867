#!/usr/bin/env python3
"""The project's moto server (lab/moto_server.py, unchanged, with its fixes) plus a request log, for the
IAM policy test (tests/integration/test_iam_policies.py).

    python tests/integration/iam_recording_server.py --request-log requests.jsonl --host 127.0.0.1 --port P

Every call that reaches moto's dispatcher is one JSON line: the IAM action (the signing service prefix and
the operation, as moto's own IAM check names it), the access key that signed it, the request parameters, the
answer's HTTP status and error code, and, for each resource the call acts on, what IAM conditions read from
it as it was *before* the call ran: its type, its tags, an image's owner (IAM roles and instance profiles
too, named by their names, with the roles a profile holds). The test evaluates the full policy
documents, conditions included, against these lines; moto itself enforces only their Action element
(docs/iam.md, "How it is tested").

IAM enforcement is moto's own: the test switches it on at run time through /moto-api/reset-auth (what
moto's set_initial_no_auth_action_count does in server mode) once it has created its IAM users.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import threading
import time
from pathlib import Path

MOTO_SERVER = Path(__file__).resolve().parents[2] / "scripts" / "moto_server.py"
# EC2 resource IDs by prefix, and the resource type IAM names them by (Service Authorization Reference).
EC2_TYPES = {
    "vpc": "vpc", "subnet": "subnet", "igw": "internet-gateway", "rtb": "route-table", "sg": "security-group",
    "i": "instance", "eipalloc": "elastic-ip", "nat": "natgateway", "eni": "network-interface", "vol": "volume",
    "ami": "image", "acl": "network-acl", "rtbassoc": None, "eipassoc": None, "sgr": "security-group-rule",
}
EC2_ID = re.compile(r"^(" + "|".join(EC2_TYPES) + r")-[0-9a-f]+$")
ELB_ARN = re.compile(r"^arn:aws[a-z-]*:elasticloadbalancing:[^:]+:\d+:(loadbalancer/app|loadbalancer/net|"
                     r"listener/app|listener/net|listener-rule/app|targetgroup)/")
# Parameters that name the resources a call acts on: top level ("VpcId", "InstanceId.1",
# "ResourceArns.member.1") or a launched interface's ("NetworkInterface.1.SubnetId"). Deeper ones
# (a security group rule's source group, a listener action's target group) are not IAM resources
# of the call.
ACTED_ON = re.compile(r"^(NetworkInterface\.\d+\.)?[A-Za-z]+(\.(member\.)?\d+)?$")
# IAM parameters naming a role or an instance profile (IAM names them, not IDs): the resource and, for a
# profile an instance is launched with, the roles it holds (the roles RunInstances passes to EC2).
IAM_NAMED = {"RoleName": "role", "InstanceProfileName": "instance-profile",
             "IamInstanceProfile.Name": "instance-profile", "IamInstanceProfile.Arn": "instance-profile"}
ERROR_CODE = re.compile(rb"<Code>([^<]+)</Code>|\"__type\"\s*:\s*\"(?:[^\"#]*#)?([^\"]+)\"")


def load_project_server():
    """lab/moto_server.py (its fixes and its app)."""
    from lab import moto_server

    return moto_server


def request_params(response) -> dict:
    """The request's parameters, flat: the Query protocol's dotted names (ec2, elbv2, sts, iam)
    or the JSON protocol's body."""
    if response.querystring:
        return {k: v[0] if len(v) == 1 else v for k, v in response.querystring.items() if k != "Action"}
    try:
        body = json.loads(response.body or "{}")
    except (TypeError, ValueError):
        return {}
    return body if isinstance(body, dict) else {}


def acted_on(params: dict) -> list[tuple[str, str]]:
    """(parameter, value) pairs that name a resource the call acts on, in request order."""
    pairs = []
    for name, value in params.items():
        if not ACTED_ON.match(name):
            continue
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, str) and (name == "KeyName" or EC2_ID.match(item) or ELB_ARN.match(item)):
                pairs.append((name, item))
    return pairs


def iam_states(account: str, params: dict) -> list[dict]:
    """The IAM roles and instance profiles a request names, as moto holds them before the call: ARN, tags,
    whether they exist (a create names one that does not yet), and a profile's roles."""
    from moto.iam.models import iam_backends

    iam = iam_backends[account]["global"]
    found = []
    for name, rtype in IAM_NAMED.items():
        value = params.get(name)
        if not isinstance(value, str):
            continue
        if rtype == "role":
            entity = next((r for r in iam.roles.values() if r.name == value), None)
            arn = f"arn:aws:iam::{account}:role/{value}"
        else:
            entity = next((p for p in iam.instance_profiles.values() if value in (p.name, p.arn)), None)
            arn = value if value.startswith("arn:") else f"arn:aws:iam::{account}:instance-profile/{value}"
        state = {"id": entity.arn if entity else arn, "type": rtype, "exists": entity is not None,
                 "tags": {t["Key"]: t.get("Value", "") for t in (entity.tags if entity else [])}}
        if rtype == "instance-profile":
            state["roles"] = [r.arn for r in entity.roles] if entity else []
        found.append(state)
    return found


def resource_states(account: str, region: str, params: dict) -> list[dict]:
    """What moto knows right now about each resource the request acts on: its IAM resource type, its tags,
    and what IAM conditions read besides tags (an image's owner). Associations are followed to the
    resources IAM authorises (a route table association: its route table and subnet; an address
    association: the address, instance and interface)."""
    from moto.ec2.models import ec2_backends
    from moto.elbv2.models import elbv2_backends

    ec2 = ec2_backends[account][region]
    elb = elbv2_backends[account][region]
    found: dict[str, dict] = {}

    def add(resource_id: str, rtype: str | None, via: str = "") -> None:
        if not resource_id or resource_id in found or rtype is None:
            return
        state = {"id": resource_id, "type": rtype, "tags": dict(ec2.tags.get(resource_id, {}))}
        if rtype == "image" and resource_id in ec2.amis:
            state["owner"] = ec2.amis[resource_id].owner_id
        if via:
            state["via"] = via
        found[resource_id] = state

    for name, value in acted_on(params):
        if name == "KeyName":
            pair = ec2.key_pairs.get(value)  # named, so possibly not there yet (ImportKeyPair names it)
            found.setdefault(f"key-pair/{value}", {"id": value, "type": "key-pair", "exists": pair is not None,
                                                   "tags": dict(ec2.tags.get(pair.id, {})) if pair else {}})
        elif value.startswith("arn:"):
            rtype = ELB_ARN.match(value).group(1)
            found.setdefault(value, {"id": value, "type": rtype,
                                     "tags": dict(elb.tagging_service.get_tag_dict_for_resource(value))})
        elif value.startswith("rtbassoc-"):
            for table in ec2.route_tables.values():
                if value in table._associations:
                    add(table.id, "route-table", via=value)
                    target = table._associations[value] or ""
                    add(target, EC2_TYPES.get(target.split("-")[0]), via=value)
        elif value.startswith("eipassoc-"):
            for address in ec2.addresses:
                if address.association_id == value:
                    add(address.allocation_id, "elastic-ip", via=value)
                    add(getattr(address.instance, "id", ""), "instance", via=value)
                    add(getattr(address.eni, "id", ""), "network-interface", via=value)
        else:
            add(value, EC2_TYPES[value.split("-")[0]])
    return list(found.values()) + iam_states(account, params)


def signing_scope(headers) -> tuple[str, str]:
    """(access key id, service prefix) from the SigV4 Authorization header."""
    credential = (headers.get("Authorization") or "").partition("Credential=")[2].partition(",")[0]
    parts = credential.split("/")
    return (parts[0], parts[3]) if len(parts) >= 4 else ("", "")


def install_recorder(log_path: Path) -> None:
    """Wrap moto's BaseResponse.call_action (the place where moto authorises
    every Query/JSON call) to log the call and its outcome."""
    from moto.core.responses import BaseResponse

    lock = threading.Lock()
    log = open(log_path, "a", encoding="utf-8")  # noqa: SIM115 - open for the server's lifetime
    original = BaseResponse.call_action

    def call_action(self):
        access_key, service = signing_scope(self.headers)
        params = request_params(self)
        try:
            resources, lookup_error = resource_states(self.current_account, self.region, params), ""
        except Exception as err:  # noqa: BLE001 - the log must never break the request
            resources, lookup_error = [], repr(err)
        status, headers, body = original(self)
        raw = body.encode() if isinstance(body, str) else (body or b"")
        code = ERROR_CODE.search(raw) if int(status) >= 400 else None
        entry = {
            "action": f"{service}:{self._get_action()}", "access_key": access_key,
            "time": round(time.time(), 3), "account": self.current_account, "region": self.region,
            "status": int(status),
            "error": next((g.decode() for g in code.groups() if g), "") if code else "",
            "params": params, "resources": resources, "lookup_error": lookup_error,
        }
        with lock:
            log.write(json.dumps(entry, default=str) + "\n")
            log.flush()
        return status, headers, body

    BaseResponse.call_action = call_action


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--request-log", type=Path, required=True, help="JSON lines, one per API call")
    args, server_args = parser.parse_known_args()
    server = load_project_server()
    install_recorder(args.request_log)
    # The rest of the command line is lab/moto_server.py's own (--host, --port, ...), and its main()
    # runs unchanged: whatever fixes and observations the project's server applies, this one applies too.
    sys.argv = [str(MOTO_SERVER), *server_args]
    server.main()


if __name__ == "__main__":
    main()
