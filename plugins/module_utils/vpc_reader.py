"""The one boto3 reader of VPC state: describes the parts asked for, paginated, as vpc_model's facts dict.

Used by the inventory plugin, the doctor and audit modules and the lab. Callers pass clients (an
AnsibleAWSModule's ``module.client("ec2")`` or a boto3 session's, see ``clients``) and the parts they
need; nothing else is described, so the inventory pays only for what it reads. Responses go through a
``camel_dict_to_snake_dict`` equivalent (memoised key conversion: thousands of instances stay cheap) with
tags as dicts, the shape amazon.aws's ``*_info`` modules return.

Imported as ``ansible_collections.fumidai.vpc.plugins.module_utils.vpc_reader``.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache, partial

from ansible.module_utils.common.dict_transformations import _camel_to_snake

EC2_PARTS = ("instances", "subnets", "route_tables", "security_groups", "network_acls", "internet_gateways",
             "nat_gateways", "vpcs", "addresses", "volumes", "images")
ELB_PARTS = ("load_balancers",)  # with their listeners, and target_groups with targets_health_description
PARTS = EC2_PARTS + ELB_PARTS
# part -> (operation, result key, filter naming the VPC, or None when the API has none)
EC2_CALLS = {
    "instances": ("describe_instances", "Reservations", "vpc-id"),
    "subnets": ("describe_subnets", "Subnets", "vpc-id"),
    "route_tables": ("describe_route_tables", "RouteTables", "vpc-id"),
    "security_groups": ("describe_security_groups", "SecurityGroups", "vpc-id"),
    "network_acls": ("describe_network_acls", "NetworkAcls", "vpc-id"),
    "internet_gateways": ("describe_internet_gateways", "InternetGateways", "attachment.vpc-id"),
    "nat_gateways": ("describe_nat_gateways", "NatGateways", "vpc-id"),
    "vpcs": ("describe_vpcs", "Vpcs", "vpc-id"),
    "addresses": ("describe_addresses", "Addresses", None),
    "volumes": ("describe_volumes", "Volumes", None),
}


class ReaderError(Exception):
    """A part could not be described; ``part`` names it, ``__cause__`` is boto's error."""

    def __init__(self, part: str, exc: Exception):
        super().__init__(f"describing {part}: {exc}")
        self.part = part


def endpoint_url(service: str = "ec2") -> str | None:
    """The endpoint the environment names (AWS_ENDPOINT_URL_<SERVICE>, else AWS_ENDPOINT_URL), as the plugin
    and the lab always did (a local moto server); None means AWS's own."""
    return os.environ.get(f"AWS_ENDPOINT_URL_{service.upper()}") or os.environ.get("AWS_ENDPOINT_URL") or None


def clients(session, service: str, regions: list[str], endpoint: str | None = None, config=None) -> dict:
    """{region: client} created in the calling thread (sessions are not thread-safe, clients are)."""
    endpoint = endpoint or endpoint_url(service)
    return {r: session.client(service, region_name=r, endpoint_url=endpoint, config=config) for r in regions}


# --------------------------------------------------------------------------- shapes
@lru_cache(maxsize=4096)
def snake_key(key: str) -> str:
    return _camel_to_snake(key)


def _snake_list(items: list) -> list:
    return [snake(i) if isinstance(i, dict) else _snake_list(i) if isinstance(i, list) else i for i in items]


def snake(item: dict, ignore=("Tags",)) -> dict:
    """camel_dict_to_snake_dict(item, ignore_list=ignore), the same result with memoised key names."""
    out = {}
    for key, value in item.items():
        if key in ignore:
            out[snake_key(key)] = value
        elif isinstance(value, dict):
            out[snake_key(key)] = snake(value, ())
        elif isinstance(value, list):
            out[snake_key(key)] = _snake_list(value)
        else:
            out[snake_key(key)] = value
    return out


def facts_item(item: dict, fields: tuple | None = None) -> dict:
    """One described resource in the model's shape: snake_case, tags a dict; only ``fields`` when given
    (top-level CamelCase keys; "Key.Sub" keeps only Sub of each element of a list or dict)."""
    if fields:
        item = project(item, fields)
    out = snake(item)
    tags = item.get("Tags")
    out["tags"] = {t["Key"]: t.get("Value", "") for t in tags or []} if not isinstance(tags, dict) else tags
    return out


def project(item: dict, fields: tuple) -> dict:
    wanted: dict[str, set | None] = {}
    for field in fields:
        top, _dot, sub = field.partition(".")
        if not sub:
            wanted[top] = None
        elif wanted.get(top, set()) is not None:
            wanted.setdefault(top, set()).add(sub)
    out = {}
    for top, subs in wanted.items():
        if top not in item:
            continue
        value = item[top]
        if subs is None:
            out[top] = value
        elif isinstance(value, list):
            out[top] = [{k: v for k, v in e.items() if k in subs} if isinstance(e, dict) else e for e in value]
        elif isinstance(value, dict):
            out[top] = {k: v for k, v in value.items() if k in subs}
    return out


def api_filters(filters: dict | None) -> list[dict]:
    """{name: value or [values]} -> boto3's [{"Name", "Values"}] (values as strings)."""
    return [{"Name": k, "Values": [str(x) for x in (v if isinstance(v, (list, tuple)) else [v])]}
            for k, v in (filters or {}).items()]


# --------------------------------------------------------------------------- describing
def _pages(client, operation: str, key: str, **kwargs) -> list[dict]:
    if client.can_paginate(operation):
        return [x for page in client.get_paginator(operation).paginate(**kwargs) for x in page.get(key, [])]
    return getattr(client, operation)(**kwargs).get(key, [])


def describe_instances(ec2, filters: dict | None = None, fields: tuple | None = None) -> list[dict]:
    """Instances matching server-side ``filters`` (pages of 1000)."""
    reservations = _pages(ec2, "describe_instances", "Reservations", Filters=api_filters(filters),
                          PaginationConfig={"PageSize": 1000})
    return [facts_item(i, fields) for r in reservations for i in r.get("Instances", [])]


def describe_images(ec2, image_ids) -> list[dict]:
    """The images of ``image_ids``, in one call (a filter, so an image gone or not ours is absent, not an error)."""
    ids = sorted({i for i in image_ids if i})
    if not ids:
        return []
    found = ec2.describe_images(Filters=[{"Name": "image-id", "Values": ids}]).get("Images", [])
    return [facts_item(i) for i in found]


def _describe_one(ec2, part: str, vpc_ids, filters) -> dict:
    """One EC2 part as a facts entry (a reader job)."""
    return {part: describe_part(ec2, part, vpc_ids, filters)}


def describe_part(ec2, part: str, vpc_ids=None, filters: dict | None = None) -> list[dict]:
    """One EC2 part (not instances/images), in the VPCs ``vpc_ids`` when given."""
    operation, key, vpc_filter = EC2_CALLS[part]
    wanted = dict(filters or {})
    if vpc_ids and vpc_filter:
        wanted[vpc_filter] = list(vpc_ids)
    kwargs = {"Filter" if part == "nat_gateways" else "Filters": api_filters(wanted)} if wanted else {}
    return [facts_item(x) for x in _pages(ec2, operation, key, **kwargs)]


def describe_load_balancers(elbv2, vpc_ids=None) -> tuple[list[dict], list[dict]]:
    """(load balancers with ``listeners`` (each with its ``rules``), their target groups with
    ``targets_health_description``), as elb_application_lb_info and elb_target_group_info
    (collect_targets_health) return them."""
    balancers = [lb for lb in _pages(elbv2, "describe_load_balancers", "LoadBalancers")
                 if not vpc_ids or lb.get("VpcId") in vpc_ids]
    load_balancers, target_groups, seen = [], [], set()
    for lb in balancers:
        listeners = _pages(elbv2, "describe_listeners", "Listeners", LoadBalancerArn=lb["LoadBalancerArn"])
        for listener in listeners:
            # The doctor follows forward actions in listener rules too (elb_application_lb_info's
            # include_listener_rules): listener["rules"][].actions.
            listener["Rules"] = _pages(elbv2, "describe_rules", "Rules", ListenerArn=listener["ListenerArn"])
        load_balancers.append(facts_item({**lb, "Listeners": listeners}))
        for group in _pages(elbv2, "describe_target_groups", "TargetGroups", LoadBalancerArn=lb["LoadBalancerArn"]):
            if group["TargetGroupArn"] in seen:
                continue
            seen.add(group["TargetGroupArn"])
            health = elbv2.describe_target_health(TargetGroupArn=group["TargetGroupArn"])
            target_groups.append(facts_item({**group, "TargetsHealthDescription":
                                             health.get("TargetHealthDescriptions", [])}))
    return load_balancers, target_groups


def read(ec2, parts, *, elbv2=None, instance_filters: dict | None = None, instance_fields: tuple | None = None,
         vpc_ids=None, filters: dict | None = None, workers: int = 1) -> dict:
    """The facts dict of ``parts`` (names in PARTS) for one region: {part: [items]}.

    ``instance_filters``: server-side DescribeInstances filters ({name: values}), ``vpc-id`` added from
    ``vpc_ids``; ``instance_fields``: keep only these CamelCase keys of each instance (see facts_item);
    ``vpc_ids``: limit every part that has a VPC filter; ``filters``: extra {part: {name: values}}.
    "images" describes the images of the instances read. "load_balancers" needs ``elbv2`` and also
    gives "target_groups". ``workers`` > 1 describes the parts in parallel. A failure raises
    ReaderError naming the part (its cause is boto's exception).
    """
    parts = list(dict.fromkeys(parts))
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        raise ValueError(f"unknown parts {unknown} (known: {', '.join(PARTS)})")
    if "load_balancers" in parts and elbv2 is None:
        raise ValueError("reading load_balancers needs an elbv2 client")
    filters = filters or {}

    def instances():
        wanted = dict(instance_filters or {})
        if vpc_ids:
            wanted["vpc-id"] = list(vpc_ids)
        wanted.update(filters.get("instances") or {})
        found = describe_instances(ec2, wanted, instance_fields)
        result = {"instances": found}
        if "images" in parts:
            result["images"] = describe_images(ec2, (i.get("image_id") for i in found))
        return result

    def load_balancers():
        balancers, groups = describe_load_balancers(elbv2, vpc_ids)
        return {"load_balancers": balancers, "target_groups": groups}

    jobs = {}
    if "instances" in parts or "images" in parts:
        jobs["instances"] = instances
    if "load_balancers" in parts:
        jobs["load_balancers"] = load_balancers
    for part in parts:
        if part in EC2_CALLS and part != "instances":
            jobs[part] = partial(_describe_one, ec2, part, vpc_ids, filters.get(part))

    facts: dict = {}

    def run(name):
        try:
            return jobs[name]()
        except Exception as exc:  # noqa: BLE001 - the caller words boto's errors; the part is named here
            raise ReaderError(name, exc) from exc

    if workers > 1 and len(jobs) > 1:
        with ThreadPoolExecutor(max_workers=min(workers, len(jobs))) as pool:
            results = [pool.submit(run, name) for name in jobs]
            for future in results:
                facts.update(future.result())
    else:
        for name in jobs:
            facts.update(run(name))
    if "instances" not in parts:
        facts.pop("instances", None)
    return facts


def read_regions(ec2_by_region: dict, parts, *, elbv2_by_region: dict | None = None, workers: int = 8,
                 **options) -> tuple[dict, dict]:
    """read() for several regions in parallel: ({region: facts}, {region: exception}) (failed regions apart,
    for the caller to fail or skip)."""
    results, failures = {}, {}
    regions = list(ec2_by_region)
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        raise ValueError(f"unknown parts {unknown} (known: {', '.join(PARTS)})")
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(regions)))) as pool:
        futures = {r: pool.submit(read, ec2_by_region[r], parts, elbv2=(elbv2_by_region or {}).get(r),
                                  workers=max(1, workers // max(1, len(regions))), **options) for r in regions}
        for region, future in futures.items():
            try:
                results[region] = future.result()
            except Exception as exc:  # noqa: BLE001 - reported per region
                failures[region] = exc.__cause__ if isinstance(exc, ReaderError) and exc.__cause__ else exc
    return results, failures
