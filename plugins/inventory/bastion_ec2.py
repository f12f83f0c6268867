# MIT License (see LICENSE)
"""bastion_ec2: EC2 inventory that groups hosts by subnet and reaches private hosts through their VPC's bastion."""

from __future__ import annotations

DOCUMENTATION = r"""
name: bastion_ec2
short_description: EC2 inventory that reaches private hosts through their VPC's bastion
description:
  - Lists EC2 instances (by default the running ones tagged with the project tag) and groups them by
    subnet, tier (C(public)/C(private), decided from route tables), role, availability zone and VPC.
  - Every host that is not reachable directly gets an C(ansible_ssh_common_args) with a quoted
    C(ProxyCommand) through the bastion of its own VPC. Nothing for users to escape.
  - With O(multiplex) (the default) all hops share one SSH master connection to the bastion. The hop runs
    C(plugins/module_utils/bastion_hop.py), which opens that master once under a lock before any fan-out, so twenty
    parallel hosts cost one bastion login, not twenty (a cold C(ControlMaster=auto) races and trips the
    bastion's C(MaxStartups)). The bastion host itself gets C(ansible_control_path) set to the same socket,
    so a play that touches the bastion first opens the shared master.
  - Per region it makes one paginated DescribeInstances (server-side filters) and one DescribeSubnets,
    DescribeRouteTables and DescribeVpcs, all in parallel; regions are queried in parallel too.
    Responses are read in their CamelCase shape (no conversion of whole instances).
  - "Groups: C(public) and C(private) (route tables: explicit association, else the main table;
    public when 0.0.0.0/0 goes to an internet gateway), C(subnet_<Name>), C(role_<Role>), C(az_<zone>),
    C(vpc_<Name>). Constructable C(compose), C(groups) and C(keyed_groups) are applied after them."
  - "Host variables: C(ansible_host), C(instance_id), C(instance_type), C(image_id), C(state),
    C(private_ip_address), C(public_ip_address), C(subnet_id), C(subnet_name), C(vpc_id), C(vpc_name),
    C(availability_zone), C(region), C(security_groups), C(ec2_tags) (C(tags) is a reserved name), and on
    hopped hosts C(ansible_ssh_common_args) and C(bastion)."
  - The configuration file name must end in C(bastion_ec2.yml) or C(bastion_ec2.yaml).
  - C(ansible-playbook --syntax-check) (and so ansible-lint) reads the file but makes no AWS call.
author:
  - fumidai maintainers (@fumidai)
extends_documentation_fragment:
  - constructed
  - inventory_cache
options:
  plugin:
    description: Marks this file as a bastion_ec2 inventory source.
    type: str
    required: true
    choices: [fumidai.vpc.bastion_ec2, bastion_ec2]
  regions:
    description:
      - Regions to list instances in, queried in parallel.
      - Empty (the default) means the configured region, resolved as amazon.aws modules do
        (E(AWS_REGION), E(AWS_DEFAULT_REGION), the profile's region), else O(fallback_region).
    type: list
    elements: str
    default: []
  fallback_region:
    description:
      - Region used when neither O(regions) nor the environment nor the profile names one.
      - The project's file sets the same default as provisioning (the C(aws_region) setting of
        P(fumidai.vpc.settings#role)).
    type: str
  endpoint_url:
    description:
      - EC2 API endpoint, for example a local moto server. Named in every connection error.
    type: str
    env:
      - name: AWS_ENDPOINT_URL_EC2
      - name: AWS_ENDPOINT_URL
  aws_profile:
    description: AWS profile for credentials and region (boto3's resolution applies when unset).
    type: str
    aliases: [profile]
    env:
      - name: AWS_PROFILE
  aws_access_key_id:
    description: Access key. Unset means boto3's own chain (environment, profile, instance role).
    type: str
    aliases: [access_key]
  aws_secret_access_key:
    description: Secret key, with O(aws_access_key_id).
    type: str
    aliases: [secret_key]
  aws_session_token:
    description: Session token for temporary credentials.
    type: str
    aliases: [session_token]
  retries:
    description:
      - Maximum attempts per API call, with botocore's adaptive retry mode (client-side rate limiting and
        backoff on throttling).
    type: int
    default: 6
  connect_timeout:
    description: Seconds to wait for a TCP connection to the endpoint.
    type: int
    default: 5
  project_tag_key:
    description: Tag key that marks the project's resources. Empty disables the project filter.
    type: str
    default: Project
  project_tag_value:
    description: Value of O(project_tag_key) that selects the project's instances.
    type: str
    default: fumidai
    env:
      - name: FUMIDAI_PROJECT
  filters:
    description:
      - EC2 DescribeInstances filters (server-side), merged over the defaults
        C(tag:<project_tag_key>=<project_tag_value>) and C(instance-state-name=running).
      - Set a key to null to drop that default, for example C(instance-state-name) to list stopped instances too.
    type: dict
    default: {}
  hostnames:
    description:
      - Inventory hostname sources in order of precedence; the first one an instance has wins.
      - One of C(tag:<key>), C(instance-id), C(private-ip-address), C(private-dns-name), C(public-ip-address),
        C(public-dns-name).
      - Tag values are untrusted. A name is used only if it is 1-63 letters, digits, C(.), C(_) or C(-), starts
        with a letter, digit or C(_), and is not C(localhost), C(all), C(ungrouped) or another instance's ID;
        anything else falls back to the instance ID, with a warning naming the instance.
      - Duplicate names are made unique and stable by suffixing every colliding host with its instance ID,
        with a warning.
    type: list
    elements: str
    default: ['tag:Name', 'instance-id']
  bastion_tags:
    description:
      - Tags that identify a VPC's bastion (all must match), in addition to the project tag
        (O(project_tag_key)=O(project_tag_value)). The bastion must be in the same VPC and running.
      - Two candidates in one VPC are an error (an instance anyone tagged must not silently become the way in).
    type: dict
    default: {Role: bastion}
  bastion_address:
    description:
      - Which bastion address the hop connects to.
      - V(public_ip) (default) for admins on the internet. V(private_ip) for admins on a VPN into the VPC
        (as in the local lab); then every host's C(ansible_host) is its private IP, because public IPs are
        not the way in from the VPN.
    type: str
    default: public_ip
    choices: [public_ip, private_ip]
    env:
      - name: FUMIDAI_BASTION_ADDRESS
  bastion_user:
    description:
      - Login user on the bastion for the hop.
      - Also the bastion host's C(ansible_user), so Ansible and the hop share one master connection.
    type: str
    default: admin
    env:
      - name: FUMIDAI_BASTION_USER
  bastion_port:
    description: SSH port of the bastion.
    type: int
    default: 22
  private_key_file:
    description:
      - Private key used by the hop. When set it also becomes every host's C(ansible_ssh_private_key_file).
      - Unset means ssh's own defaults and agent.
    type: path
    env:
      - name: FUMIDAI_SSH_PRIVATE_KEY
      - name: ANSIBLE_PRIVATE_KEY_FILE
  known_hosts_file:
    description:
      - The project's known_hosts file, where provisioning pins every instance's SSH host keys under its instance ID
        (read from the instance's EC2 console output; see the C(fumidai.vpc.host_keys) playbook).
      - Every host's connection, and the hop to the bastion, names the instance ID as C(HostKeyAlias), trusts this
        file only (C(UserKnownHostsFile)) and refuses any key that is not pinned there (C(StrictHostKeyChecking=yes)).
        There is no setting that turns checking off.
      - Default C(.cache/known_hosts) next to the C(ansible.cfg) in use (the same file as the C(known_hosts_file)
        setting of P(fumidai.vpc.settings#role)).
    type: path
    env:
      - name: FUMIDAI_KNOWN_HOSTS
  bastion_ssh_options:
    description:
      - Extra C(-o) options for the hop to the bastion, such as V(ServerAliveInterval=15), in C(Key=value) form.
      - Options that decide whom ssh trusts or what it runs (C(StrictHostKeyChecking), C(UserKnownHostsFile),
        C(HostKeyAlias), C(ProxyCommand), C(LocalCommand)...) are refused.
    type: list
    elements: str
    default: []
  multiplex:
    description:
      - Share one SSH master connection to each bastion between every hop (ControlMaster, ControlPersist),
        opened once under a lock by C(plugins/module_utils/bastion_hop.py).
      - Off means each private host opens its own connection to the bastion with plain C(ssh -W).
    type: bool
    default: true
    env:
      - name: FUMIDAI_BASTION_MULTIPLEX
  control_persist:
    description: How long the shared bastion master stays open when idle (ssh ControlPersist).
    type: str
    default: 60s
  control_path_dir:
    description: Directory of the shared bastion master's socket (same as Ansible's ssh control_path_dir).
    type: path
    default: ~/.ansible/cp
    env:
      - name: ANSIBLE_SSH_CONTROL_PATH_DIR
    ini:
      - section: ssh_connection
        key: control_path_dir
  hop_script:
    description: The hop wrapper. Default is C(plugins/module_utils/bastion_hop.py) of this installed collection.
    type: path
  proxy_public_hosts:
    description: Also send hosts in public subnets (other than the bastion) through the bastion.
    type: bool
    default: false
    env:
      - name: FUMIDAI_PROXY_PUBLIC_HOSTS
  skip_failed_regions:
    description:
      - When a region cannot be listed, warn and go on with the others instead of failing.
      - Off by default, because silently dropping a region's hosts is worse than stopping.
    type: bool
    default: false
"""

EXAMPLES = r"""
# inventory/aws.bastion_ec2.yml - the project's own: running instances tagged Project=fumidai
plugin: fumidai.vpc.bastion_ec2

---
# Two regions, admins on a VPN (reach the bastion on its private IP), another key
plugin: fumidai.vpc.bastion_ec2
regions: [ap-northeast-1, us-east-1]
bastion_address: private_ip
private_key_file: ~/.ssh/fumidai_ed25519

---
# Stopped instances too, a different bastion tag, and Constructable extras
plugin: fumidai.vpc.bastion_ec2
filters:
  instance-state-name: [running, stopped]
bastion_tags:
  Function: jump
keyed_groups:
  - key: instance_type
    prefix: type
compose:
  ansible_python_interpreter: "'/usr/bin/python3'"

---
# Cache the result for five minutes (ansible-inventory --flush-cache refreshes it)
plugin: fumidai.vpc.bastion_ec2
cache: true
cache_plugin: ansible.builtin.jsonfile
cache_connection: .cache/inventory
cache_timeout: 300
"""

import hashlib
import os
import re
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ansible import constants as C
from ansible import context
from ansible.errors import AnsibleError
from ansible.plugins.inventory import BaseInventoryPlugin, Cacheable, Constructable
from ansible_collections.fumidai.vpc.plugins.module_utils import bastion_hop
from ansible_collections.fumidai.vpc.plugins.module_utils import fumidai_ssh as ssh
from ansible_collections.fumidai.vpc.plugins.module_utils import fumidai_topology as topology

ssh_percent_escape = ssh.ssh_percent_escape
proxy_word = ssh.proxy_word
control_path_for = ssh.control_path_for

HOSTNAME_SOURCES = {
    "instance-id": "instance_id",
    "private-ip-address": "private_ip_address",
    "private-dns-name": "_private_dns_name",
    "public-ip-address": "public_ip_address",
    "public-dns-name": "_public_dns_name",
}
CACHE_FORMAT = 2
BASTION_FACTS = ("name", "instance_id", "address", "user", "port")
KNOWN_HOSTS_DEFAULT = os.path.join(".cache", "known_hosts")
REGION_PATTERN = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d+$")
# The hop runs as a program (ProxyCommand): the file of this installed collection's module_utils.bastion_hop.
DEFAULT_HOP_SCRIPT = Path(bastion_hop.__file__)


# --------------------------------------------------------------------------- shapes
def instance_record(inst: dict, region: str) -> dict:
    """The few fields the inventory uses, read straight from boto3's CamelCase (cheap, JSON-safe)."""
    return {
        "instance_id": inst["InstanceId"],
        "instance_type": inst.get("InstanceType"),
        "image_id": inst.get("ImageId"),
        "state": (inst.get("State") or {}).get("Name"),
        "private_ip_address": inst.get("PrivateIpAddress"),
        "public_ip_address": inst.get("PublicIpAddress"),
        # Hostname sources only (not host variables): every variable costs time on every run.
        "_private_dns_name": inst.get("PrivateDnsName") or None,
        "_public_dns_name": inst.get("PublicDnsName") or None,
        "subnet_id": inst.get("SubnetId"),
        "vpc_id": inst.get("VpcId"),
        "availability_zone": (inst.get("Placement") or {}).get("AvailabilityZone"),
        "security_groups": [{"group_id": g.get("GroupId"), "group_name": g.get("GroupName")}
                            for g in inst.get("SecurityGroups") or _primary_eni_groups(inst)],
        # Not "tags": that name is reserved (a play keyword) and ansible-core warns on every run.
        "ec2_tags": {t["Key"]: t.get("Value", "") for t in inst.get("Tags") or []},
        "region": region,
    }


def _primary_eni_groups(inst: dict) -> list[dict]:
    # The instance's groups are its primary interface's; some EC2 emulations only report them there.
    for eni in inst.get("NetworkInterfaces") or []:
        if (eni.get("Attachment") or {}).get("DeviceIndex", 0) == 0:
            return eni.get("Groups") or []
    return []


def route_table_record(table: dict) -> dict:
    """A route table in the snake_case shape fumidai_topology reads (only the keys it uses)."""
    return {
        "route_table_id": table.get("RouteTableId"),
        "vpc_id": table.get("VpcId"),
        "associations": [{"subnet_id": a.get("SubnetId"), "main": bool(a.get("Main"))}
                         for a in table.get("Associations") or []],
        "routes": [{"destination_cidr_block": r.get("DestinationCidrBlock"),
                    "gateway_id": r.get("GatewayId"),
                    "nat_gateway_id": r.get("NatGatewayId"),
                    "instance_id": r.get("InstanceId"),
                    "network_interface_id": r.get("NetworkInterfaceId"),
                    "transit_gateway_id": r.get("TransitGatewayId"),
                    "vpc_peering_connection_id": r.get("VpcPeeringConnectionId"),
                    "egress_only_internet_gateway_id": r.get("EgressOnlyInternetGatewayId")}
                   for r in table.get("Routes") or []],
    }


def named_record(resource: dict, id_key: str) -> dict:
    tags = {t["Key"]: t.get("Value", "") for t in resource.get("Tags") or []}
    return {"id": resource[id_key], "name": tags.get("Name") or None}


# --------------------------------------------------------------------------- ssh commands
def hop_command(bastion: dict, settings: dict) -> str:
    """The ProxyCommand that carries a private host's connection through ``bastion``.

    Every literal word is shell-quoted and %-escaped; only the target tokens %h and %p are left for the
    outer ssh to expand. The shared master's ControlPath is a literal path, so no per-target expansion
    can split it into one master per host. The bastion's key is checked against its pin like any host's.
    """
    login = f"{bastion['user']}@{bastion['address']}"
    options = ssh.host_key_options(bastion["instance_id"], settings["known_hosts"]) + settings["ssh_options"]
    if settings["multiplex"]:
        words = [settings["python"], settings["hop_script"],
                 "--control-path", bastion["control_path"], "--persist", settings["control_persist"],
                 "--port", str(bastion["port"])]
        if settings["key"]:
            words += ["--identity", settings["key"]]
        for option in options:
            words += ["--option", option]
        words.append(login)
        return " ".join(proxy_word(w) for w in words) + " %h %p"
    words = ["ssh", "-p", str(bastion["port"]), "-o", "BatchMode=yes"]
    if settings["key"]:
        words += ["-i", settings["key"], "-o", "IdentitiesOnly=yes"]
    for option in options:
        words += ["-o", option]
    # Brackets keep IPv6 targets apart from the port; quotes keep sh from globbing them.
    return " ".join(proxy_word(w) for w in words) + " -W '[%h]:%p' " + proxy_word(login)


def proxy_common_args(bastion: dict, settings: dict) -> str:
    """The ProxyCommand part of a hopped host's ansible_ssh_common_args (Ansible shlex-splits it)."""
    return ssh.common_args(["ProxyCommand=" + hop_command(bastion, settings)])


def connection_args(instance_id: str, bastion: dict | None, settings: dict) -> str:
    """ansible_ssh_common_args for a host: its pinned host key, and the hop when it is reached through one."""
    args = ssh.common_args(ssh.host_key_options(instance_id, settings["known_hosts"]))
    return args + (" " + proxy_common_args(bastion, settings) if bastion else "")


# --------------------------------------------------------------------------- errors
def explain_error(exc: Exception, region: str, endpoint: str) -> str:
    """One sentence naming the cause, for the errors people actually hit."""
    from botocore import exceptions as bce

    where = f"region {region} at {endpoint}"
    if isinstance(exc, bce.NoCredentialsError):
        return f"no AWS credentials found for {where} (set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)"
    if isinstance(exc, bce.PartialCredentialsError):
        return f"incomplete AWS credentials for {where}: {exc}"
    if isinstance(exc, bce.ProfileNotFound):
        return f"AWS profile not found: {exc}"
    if isinstance(exc, (bce.EndpointConnectionError, bce.ConnectTimeoutError, bce.ConnectionClosedError)):
        return f"cannot reach the EC2 endpoint {endpoint} for region {region}: {exc}"
    if isinstance(exc, bce.ReadTimeoutError):
        return f"the EC2 endpoint {endpoint} did not answer in time for region {region}: {exc}"
    if isinstance(exc, bce.SSLError):
        return f"TLS error talking to the EC2 endpoint {endpoint}: {exc}"
    if isinstance(exc, bce.ClientError):
        error = exc.response.get("Error", {})
        code = error.get("Code", "")
        message = error.get("Message", "")
        operation = getattr(exc, "operation_name", "") or "the EC2 API"
        if code in ("AuthFailure", "InvalidClientTokenId", "UnrecognizedClientException",
                    "SignatureDoesNotMatch", "InvalidAccessKeyId", "ExpiredToken", "RequestExpired"):
            return f"bad AWS credentials for {where} ({code}: {message})"
        if code in ("UnauthorizedOperation", "AccessDenied", "AccessDeniedException"):
            return f"missing permission ec2:{operation} in {where} ({code}: {message})"
        if code in ("OptInRequired", "InvalidRegion", "UnknownRegion"):
            return f"region {region} is not usable at {endpoint} ({code}: {message})"
        if code in ("Throttling", "RequestLimitExceeded", "ThrottlingException"):
            return f"EC2 kept throttling {operation} in {where} after retries ({message})"
        return f"{operation} failed in {where} ({code}: {message})"
    if isinstance(exc, bce.BotoCoreError):
        return f"AWS error in {where}: {exc}"
    return f"unexpected error listing {where}: {exc.__class__.__name__}: {exc}"


# --------------------------------------------------------------------------- plugin
class InventoryModule(BaseInventoryPlugin, Constructable, Cacheable):
    NAME = "fumidai.vpc.bastion_ec2"

    def verify_file(self, path):
        return super().verify_file(path) and path.endswith(("bastion_ec2.yml", "bastion_ec2.yaml"))

    def parse(self, inventory, loader, path, cache=True):
        super().parse(inventory, loader, path, cache=cache)
        self._read_config_data(path)
        if context.CLIARGS.get("syntax"):
            # ansible-playbook --syntax-check (and ansible-lint) needs no hosts: don't require AWS for it.
            return

        regions = list(self.get_option("regions") or [])
        endpoint = self.get_option("endpoint_url") or None
        filters = self._filters()
        cache_key = self._cache_key(path, regions, endpoint, filters)

        use_cache = self.get_option("cache") and cache
        data = None
        if use_cache:
            try:
                data = self._cache[cache_key]
            except KeyError:
                data = None
            if not isinstance(data, dict) or data.get("format") != CACHE_FORMAT:
                data = None
        if data is None:
            data = self._fetch(regions, endpoint, filters)
            if self.get_option("cache"):
                self._cache[cache_key] = data
        self._populate(data)

    # ------------------------------------------------------------------ config
    def _filters(self) -> dict:
        filters = {"instance-state-name": ["running"]}
        key, value = self.get_option("project_tag_key"), self.get_option("project_tag_value")
        if key:
            filters[f"tag:{key}"] = [value]
        for name, wanted in (self.get_option("filters") or {}).items():
            if wanted is None:
                filters.pop(name, None)
            else:
                filters[name] = [str(v) for v in wanted] if isinstance(wanted, list) else [str(wanted)]
        return filters

    def _cache_key(self, path, regions, endpoint, filters) -> str:
        # The same file against another endpoint, region or filter must not read this cache entry.
        scope = repr((sorted(regions), endpoint, sorted(filters.items()), self.get_option("aws_profile")))
        return f"{self.get_cache_key(path)}_{hashlib.sha1(scope.encode()).hexdigest()[:10]}"

    # ------------------------------------------------------------------ AWS
    def _session(self):
        import boto3
        from botocore import exceptions as bce

        try:
            return boto3.session.Session(
                profile_name=self.get_option("aws_profile") or None,
                aws_access_key_id=self.get_option("aws_access_key_id") or None,
                aws_secret_access_key=self.get_option("aws_secret_access_key") or None,
                aws_session_token=self.get_option("aws_session_token") or None,
            )
        except bce.ProfileNotFound as exc:
            raise AnsibleError(f"bastion_ec2: AWS profile not found: {exc}") from None

    @staticmethod
    def _unknown_regions(regions: list[str]) -> list[str]:
        """Regions no AWS partition lists (botocore's small partitions.json: milliseconds, unlike the
        endpoint data), so a typo is named as such instead of surfacing as a DNS or emulator error."""
        import botocore.session

        loader = botocore.session.get_session().get_component("data_loader")
        known = set()
        for partition in loader.load_data("partitions").get("partitions", []):
            known.update(partition.get("regions", {}))
        return [r for r in regions if r not in known]

    def _fetch(self, regions: list[str], endpoint: str | None, filters: dict) -> dict:
        from botocore.config import Config

        session = self._session()
        if not regions:
            region = os.environ.get("AWS_REGION") or session.region_name or self.get_option("fallback_region")
            if not region:
                raise AnsibleError("bastion_ec2: no region configured: set 'regions' in the inventory file, "
                                   "or AWS_REGION / AWS_DEFAULT_REGION, or a region in the AWS profile")
            regions = [region]
        for region in regions:
            if not REGION_PATTERN.match(region):
                raise AnsibleError(f"bastion_ec2: unknown region {region!r}: not a region name (e.g. ap-northeast-1)")
        unknown = self._unknown_regions(regions)
        if unknown:
            raise AnsibleError(f"bastion_ec2: unknown region {unknown[0]!r}: not an EC2 region "
                               f"(typo? or newer than botocore {_botocore_version()})")

        config = Config(retries={"mode": "adaptive", "max_attempts": self.get_option("retries")},
                        connect_timeout=self.get_option("connect_timeout"), read_timeout=120,
                        max_pool_connections=8)
        # Clients are created here, in one thread: boto3 sessions are not thread-safe, clients are.
        clients = {r: session.client("ec2", region_name=r, endpoint_url=endpoint, config=config) for r in regions}
        api_filters = [{"Name": k, "Values": v} for k, v in filters.items()]

        def instances(region):
            pages = clients[region].get_paginator("describe_instances").paginate(
                Filters=api_filters, PaginationConfig={"PageSize": 1000})
            return [instance_record(i, region) for page in pages
                    for reservation in page.get("Reservations", []) for i in reservation.get("Instances", [])]

        def subnets(region):
            pages = clients[region].get_paginator("describe_subnets").paginate()
            return [named_record(s, "SubnetId") for page in pages for s in page.get("Subnets", [])]

        def route_tables(region):
            pages = clients[region].get_paginator("describe_route_tables").paginate()
            return [route_table_record(t) for page in pages for t in page.get("RouteTables", [])]

        def vpcs(region):
            pages = clients[region].get_paginator("describe_vpcs").paginate()
            return [named_record(v, "VpcId") for page in pages for v in page.get("Vpcs", [])]

        calls = {"instances": instances, "subnets": subnets, "route_tables": route_tables, "vpcs": vpcs}
        data = {"format": CACHE_FORMAT, "regions": {}}
        failures = []
        with ThreadPoolExecutor(max_workers=min(16, len(calls) * len(regions))) as pool:
            futures = {(r, name): pool.submit(fn, r) for r in regions for name, fn in calls.items()}
            for region in regions:
                try:
                    result = {name: futures[(region, name)].result() for name in calls}
                except Exception as exc:  # noqa: BLE001 - every cause becomes one readable message
                    shown = endpoint or clients[region].meta.endpoint_url
                    failures.append((region, explain_error(exc, region, shown)))
                    continue
                data["regions"][region] = result
        if failures:
            text = "; ".join(message for _region, message in failures)
            if not self.get_option("skip_failed_regions"):
                raise AnsibleError(f"bastion_ec2: {text}")
            for region, message in failures:
                self.display.warning(f"bastion_ec2: skipping region {region}: {message}")

        self._add_missing_bastions(data, clients, filters)
        return data

    def _add_missing_bastions(self, data: dict, clients: dict, filters: dict) -> None:
        """Filters may leave a VPC's bastion out of the host list (e.g. only role web): find it separately,
        one call per region and only then, so the hop still works."""
        wanted = self._bastion_tags()
        for region, result in data["regions"].items():
            vpcs_with_bastion = {i["vpc_id"] for i in result["instances"] if self._is_bastion(i, wanted)}
            missing = sorted({i["vpc_id"] for i in result["instances"] if i["vpc_id"]} - vpcs_with_bastion)
            result["extra_bastions"] = []
            if not missing or not wanted:
                continue
            api_filters = [{"Name": "vpc-id", "Values": missing},
                           {"Name": "instance-state-name", "Values": ["running"]}]
            api_filters += [{"Name": f"tag:{k}", "Values": [v]} for k, v in wanted.items()]
            try:
                pages = clients[region].get_paginator("describe_instances").paginate(Filters=api_filters)
                result["extra_bastions"] = [instance_record(i, region) for page in pages
                                            for res in page.get("Reservations", []) for i in res.get("Instances", [])]
            except Exception as exc:  # noqa: BLE001
                raise AnsibleError(f"bastion_ec2: {explain_error(exc, region, clients[region].meta.endpoint_url)}") \
                    from None

    # ------------------------------------------------------------------ inventory
    def _bastion_tags(self) -> dict:
        """What a bastion carries: bastion_tags and the project tag (not just anything tagged Role=bastion)."""
        wanted = {k: str(v) for k, v in (self.get_option("bastion_tags") or {}).items()}
        key = self.get_option("project_tag_key")
        if wanted and key:
            wanted[key] = str(self.get_option("project_tag_value"))
        return wanted

    @staticmethod
    def _is_bastion(instance: dict, wanted: dict) -> bool:
        """``wanted``: _bastion_tags(), computed once per pass rather than once per instance."""
        tags = instance["ec2_tags"]
        return bool(wanted) and all(tags.get(k) == v for k, v in wanted.items())

    def _hostname(self, instance: dict) -> str | None:
        for source in self.get_option("hostnames"):
            if source.startswith("tag:"):
                value = instance["ec2_tags"].get(source[4:])
            elif source in HOSTNAME_SOURCES:
                value = instance.get(HOSTNAME_SOURCES[source])
            else:
                raise AnsibleError(f"bastion_ec2: unknown hostnames entry {source!r} "
                                   f"(use tag:<key> or one of {', '.join(HOSTNAME_SOURCES)})")
            if value:
                return str(value)
        return None

    def _safe_hostname(self, instance: dict, instance_ids: set) -> str:
        """The instance's name if it is safe for hostnames, ssh configs, templates and shells; else its ID."""
        name = self._hostname(instance)
        if name is None or name == instance["instance_id"]:
            return instance["instance_id"]
        if ssh.safe_host_name(name) and name not in instance_ids:
            return name
        self.display.warning(f"bastion_ec2: instance {instance['instance_id']} is named {ssh.shown(name)}, which is "
                             "not a safe host name (1-63 letters, digits, '.', '_', '-'); listing it as "
                             f"{instance['instance_id']}")
        return instance["instance_id"]

    def _known_hosts_file(self) -> str:
        """The option, else .cache/known_hosts next to the ansible.cfg in use (as fumidai.vpc.settings), else cwd."""
        configured = self.get_option("known_hosts_file")
        if configured:
            return os.path.abspath(os.path.expanduser(configured))
        base = os.path.dirname(C.CONFIG_FILE) if C.CONFIG_FILE else os.getcwd()
        return os.path.join(base, KNOWN_HOSTS_DEFAULT)

    def _hop_settings(self) -> dict:
        key = self.get_option("private_key_file")
        try:
            options = ssh.check_user_options(list(self.get_option("bastion_ssh_options") or []))
            known_hosts = self._known_hosts_file()
            ssh.config_path(known_hosts)
        except ssh.SshValueError as exc:
            raise AnsibleError(f"bastion_ec2: {exc}") from None
        hop_script = self.get_option("hop_script") or str(DEFAULT_HOP_SCRIPT)
        multiplex = self.get_option("multiplex")
        if multiplex and not os.path.isfile(hop_script):
            raise AnsibleError(f"bastion_ec2: hop script {hop_script} not found (set hop_script, or multiplex: false)")
        return {
            "key": os.path.expanduser(key) if key else None,
            "ssh_options": options,
            "known_hosts": known_hosts,
            "multiplex": multiplex,
            "control_persist": self.get_option("control_persist"),
            "hop_script": hop_script,
            "python": sys.executable or "python3",
        }

    def _populate(self, data: dict) -> None:
        settings = self._hop_settings()
        mode = self.get_option("bastion_address")
        user = self.get_option("bastion_user")
        port = self.get_option("bastion_port")
        cp_dir = self.get_option("control_path_dir")
        proxy_public = self.get_option("proxy_public_hosts")
        strict = self.get_option("strict")
        compose = self.get_option("compose")
        groups = self.get_option("groups")
        keyed_groups = self.get_option("keyed_groups")

        instances, extra_bastions, subnet_names, vpc_names, public_subnets = [], [], {}, {}, {}
        for region in sorted(data["regions"]):
            result = data["regions"][region]
            instances += result["instances"]
            extra_bastions += result.get("extra_bastions", [])
            subnet_names.update((s["id"], s["name"]) for s in result["subnets"])
            vpc_names.update((v["id"], v["name"]) for v in result["vpcs"])
            tables = result["route_tables"]
            # Decided once per subnet: explicit association, else the VPC's main table.
            listed = result["instances"] + result.get("extra_bastions", [])
            vpc_of_subnet = {i["subnet_id"]: i["vpc_id"] for i in listed}
            for subnet_id, vpc_id in vpc_of_subnet.items():
                if subnet_id:
                    public_subnets[subnet_id] = topology.subnet_is_public(subnet_id, vpc_id, tables)
        instances.sort(key=lambda i: i["instance_id"])

        names = self._unique_names(instances)
        bastions = self._bastions(instances, extra_bastions, names, mode, user, port, cp_dir)

        for group in ("public", "private"):
            self.inventory.add_group(group)
        sanitize = topology.sanitize_group_name
        warned_vpcs = set()
        for instance in instances:
            host = names[instance["instance_id"]]
            self.inventory.add_host(host)
            subnet_id, vpc_id = instance["subnet_id"], instance["vpc_id"]
            public = public_subnets.get(subnet_id, False)
            hostvars = {k: v for k, v in instance.items() if k[0] != "_"}
            hostvars["subnet_name"] = subnet_names.get(subnet_id)
            hostvars["vpc_name"] = vpc_names.get(vpc_id)

            bastion = bastions.get(vpc_id)
            is_bastion = bastion is not None and bastion["instance_id"] == instance["instance_id"]
            hop = None
            if is_bastion:
                hostvars["ansible_host"] = bastion["address"]
                hostvars["ansible_user"] = user
                if port != 22:
                    hostvars["ansible_port"] = port
                # Same socket as the hop: a play that reaches the bastion first opens the shared master.
                # Ansible %-formats this value, then ssh expands it: a literal % needs both escapes.
                hostvars["ansible_control_path"] = ssh_percent_escape(bastion["control_path"]).replace("%", "%%")
            else:
                direct = mode == "public_ip" and public and instance["public_ip_address"] and not proxy_public
                if direct:
                    hostvars["ansible_host"] = instance["public_ip_address"]
                else:
                    hostvars["ansible_host"] = instance["private_ip_address"] or instance["public_ip_address"]
                    if mode == "private_ip" and public and not proxy_public:
                        pass  # on the VPN a public-subnet host is reached directly on its private IP
                    elif bastion:
                        hop = bastion
                        hostvars["bastion"] = {k: bastion[k] for k in BASTION_FACTS}
                    elif vpc_id not in warned_vpcs:
                        warned_vpcs.add(vpc_id)
                        self.display.warning(
                            f"bastion_ec2: VPC {vpc_id} ({vpc_names.get(vpc_id) or 'no Name tag'}) has no running "
                            f"bastion (tags {self.get_option('bastion_tags')}): its private hosts are listed "
                            f"without a ProxyCommand and are not reachable through a bastion")
            # Every host, the bastion included: its pinned key under its instance ID, nothing trusted on first use.
            hostvars["ansible_ssh_common_args"] = connection_args(instance["instance_id"], hop, settings)
            if settings["key"]:
                hostvars["ansible_ssh_private_key_file"] = settings["key"]

            for key, value in hostvars.items():
                self.inventory.set_variable(host, key, value)

            self.inventory.add_child("public" if public else "private", host)
            self.inventory.add_child(self.inventory.add_group(
                "subnet_" + sanitize(hostvars["subnet_name"] or subnet_id or "none")), host)
            self.inventory.add_child(self.inventory.add_group(
                "vpc_" + sanitize(hostvars["vpc_name"] or vpc_id or "none")), host)
            zone = instance["availability_zone"]
            if zone:
                self.inventory.add_child(self.inventory.add_group("az_" + sanitize(zone)), host)
            role = instance["ec2_tags"].get("Role")
            if role:
                self.inventory.add_child(self.inventory.add_group("role_" + sanitize(role)), host)

            # Constructable extras come last so they can use everything above.
            self._set_composite_vars(compose, hostvars, host, strict=strict)
            self._add_host_to_composed_groups(groups, hostvars, host, strict=strict)
            self._add_host_to_keyed_groups(keyed_groups, hostvars, host, strict=strict)

    def _unique_names(self, instances: list[dict]) -> dict:
        by_name: dict[str, list[dict]] = {}
        instance_ids = {i["instance_id"] for i in instances}
        for instance in instances:
            by_name.setdefault(self._safe_hostname(instance, instance_ids), []).append(instance)
        names = {}
        for name, members in by_name.items():
            if len(members) == 1:
                names[members[0]["instance_id"]] = name
                continue
            # Every colliding host gets its ID: the names do not depend on listing order.
            ids = ", ".join(m["instance_id"] for m in members)
            self.display.warning(f"bastion_ec2: {len(members)} instances share the name {name!r} ({ids}); "
                                 f"listing them as {name}_<instance-id>")
            for member in members:
                # Still within the 63 characters of a safe name (and a DNS label).
                names[member["instance_id"]] = f"{name[:62 - len(member['instance_id'])]}_{member['instance_id']}"
        return names

    def _bastions(self, instances, extra, names, mode, user, port, cp_dir) -> dict:
        """The bastion of each VPC: its one running instance with the bastion and project tags.

        Two candidates are an error, not a pick: whoever can launch and tag an instance must not be able to
        become the way in by having a lower instance ID.
        """
        wanted = self._bastion_tags()
        candidates: dict[str, list[dict]] = {}
        for instance in [i for i in instances if self._is_bastion(i, wanted)] + extra:
            if instance.get("state") in (None, "running"):
                candidates.setdefault(instance["vpc_id"], []).append(instance)
        duplicated = {vpc: sorted(i["instance_id"] for i in found)
                      for vpc, found in candidates.items() if len(found) > 1}
        if duplicated:
            described = "; ".join(f"{vpc}: {', '.join(ids)}" for vpc, ids in sorted(duplicated.items()))
            raise AnsibleError(f"bastion_ec2: more than one running instance is tagged as the bastion "
                               f"({wanted}) in a VPC ({described}). fumidai will not guess which one "
                               "to trust: terminate or untag the one you did not launch.")
        bastions = {}
        safe_ids = {i["instance_id"] for i in instances + extra}
        for vpc_id, (instance,) in sorted(candidates.items()):
            if mode == "public_ip":
                address = instance["public_ip_address"]
                if not address:
                    self.display.warning(f"bastion_ec2: bastion {instance['instance_id']} in {vpc_id} has no public "
                                         f"IP; using its private IP {instance['private_ip_address']}")
                    address = instance["private_ip_address"]
            else:
                address = instance["private_ip_address"]
            if not address:
                continue
            bastions[vpc_id] = {
                "instance_id": instance["instance_id"],
                "name": names.get(instance["instance_id"]) or self._safe_hostname(instance, safe_ids),
                "address": address,
                "user": user,
                "port": port,
                "control_path": control_path_for(cp_dir, user, address, port),
            }
        return bastions


def _botocore_version() -> str:
    import botocore

    return botocore.__version__
