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
    DescribeRouteTables and DescribeVpcs, all in parallel, then one DescribeImages for the listed instances'
    images (none when O(login_user) is set); regions are queried in parallel too. State is read by
    C(plugins/module_utils/vpc_reader.py) (only the instance fields the inventory uses are converted) and
    interpreted by C(plugins/module_utils/vpc_model.py), as the doctor, the audit and the lab do.
  - "Groups: C(public) and C(private) (route tables: explicit association, else the main table;
    public when 0.0.0.0/0 goes to an internet gateway), C(subnet_<Name>), C(role_<Role>), C(az_<zone>),
    C(vpc_<Name>). Constructable C(compose), C(groups) and C(keyed_groups) are applied after them."
  - "Host variables: C(ansible_host), C(instance_id), C(instance_type), C(image_id), C(state),
    C(private_ip_address), C(public_ip_address), C(subnet_id), C(subnet_name), C(vpc_id), C(vpc_name),
    C(availability_zone), C(region), C(security_groups), C(ec2_tags) (C(tags) is a reserved name),
    C(ansible_user), C(ansible_ssh_common_args), and on hopped hosts C(bastion) and C(bastions) (every
    bastion of the VPC, the host's own zone's first)."
  - "Login user: every host's C(ansible_user), and the hop's user on the bastion, is the user of its image's
    operating system (C(plugins/module_utils/login.py): Debian 12 C(admin), Amazon Linux 2023 C(ec2-user)),
    decided from the image's owner and name, never from a tag. An image that is none of those (or no longer
    described) falls back to C(admin), the default operating system's user, with a warning; O(login_user)
    sets one user for every host instead."
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
      - A VPC may have one bastion per availability zone (the C(bastion_per_az) setting of
        P(fumidai.vpc.settings#role)). Every private host gets them all, its own zone's first (then by name and
        instance ID), as C(bastions); the hop uses the first that answers (O(bastion_connect_timeout),
        O(bastion_failure_memory)). C(bastion) is the first.
      - Two candidates in one zone of a VPC are an error (an instance anyone tagged must not silently become the
        way in). One in another zone is only a fallback, behind its own pinned host key.
    type: dict
    default: {Role: bastion}
  bastion_connect_timeout:
    description:
      - With more than one bastion in a VPC, seconds the hop waits for a bastion to accept the connection (ssh
        C(ConnectTimeout)) before trying the next one; and, through a bastion that answered, for the target's SSH
        banner over the forward (a forward that stays silent or is refused is also passed over, for that target).
      - Needs O(multiplex) (the default); without it the hop goes through the first bastion only.
    type: int
    default: 5
  bastion_failure_memory:
    description:
      - With more than one bastion in a VPC, seconds a bastion that could not be reached is skipped without being
        tried again, so that later hosts do not wait for the same timeout. The failure is remembered in a file
        next to the bastion's control socket (C(<socket>.failed)); 0 tries every bastion every time.
    type: int
    default: 300
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
  login_user:
    description:
      - Login user for every host and for the hop to the bastion, instead of each image's operating system's
        user.
      - A POSIX user name (lower-case letters, digits, C(_), C(-); at most 32 characters); anything else is an error.
    type: str
    env:
      - name: FUMIDAI_LOGIN_USER
  bastion_user:
    description:
      - Login user on the bastion for the hop (and the bastion host's C(ansible_user)), instead of the
        user of the bastion's image.
      - Deprecated; the bastion's user now comes from its image like every host's, and O(login_user) sets
        one user for all.
    type: str
    env:
      - name: FUMIDAI_BASTION_USER
    deprecated:
      why: The login user comes from each host's image (the bastion's too); login_user overrides it for all.
      version: 3.0.0
      collection_name: fumidai.vpc
      alternatives: login_user
  bastion_port:
    description: SSH port of the bastion.
    type: int
    default: 22
  private_key_file:
    description:
      - Private key used by the hop. When set it also becomes every host's C(ansible_ssh_private_key_file).
      - The one key setting of the inventory side (the same file as the C(ssh_private_key_path) setting of
        P(fumidai.vpc.settings#role)).
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
from pathlib import Path

from ansible import constants as C
from ansible import context
from ansible.errors import AnsibleError
from ansible.plugins.inventory import BaseInventoryPlugin, Cacheable, Constructable
from ansible_collections.fumidai.vpc.plugins.module_utils import bastion_hop, vpc_reader
from ansible_collections.fumidai.vpc.plugins.module_utils import inventory_hosts as hosts
from ansible_collections.fumidai.vpc.plugins.module_utils import ssh_args as ssh

# The cached shape: per region the inventory's instance records and the reader's subnets, VPCs, route
# tables and images (3: images and reader-shaped resources added).
CACHE_FORMAT = 3
KNOWN_HOSTS_DEFAULT = os.path.join(".cache", "known_hosts")
REGION_PATTERN = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d+$")
# The hop runs as a program (ProxyCommand): the file of this installed collection's module_utils.bastion_hop.
DEFAULT_HOP_SCRIPT = Path(bastion_hop.__file__)
REGION_PARTS = ("instances", "subnets", "route_tables", "vpcs")


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
        login_user = self._login_user()
        cache_key = self._cache_key(path, regions, endpoint, filters)

        use_cache = self.get_option("cache") and cache
        data = None
        if use_cache:
            try:
                data = self._cache[cache_key]
            except KeyError:
                data = None
            if not isinstance(data, dict) or data.get("format") != CACHE_FORMAT or \
                    (not login_user and not data.get("images_read")):
                data = None
        if data is None:
            data = self._fetch(regions, endpoint, filters, read_images=not login_user)
            if self.get_option("cache"):
                self._cache[cache_key] = data
        self._populate(data, login_user)

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

    def _login_user(self) -> str | None:
        user = self.get_option("login_user")
        if user and not ssh.LOGIN_USER.match(str(user)):
            raise AnsibleError(f"bastion_ec2: login_user {ssh.shown(user)} is not a user name (lower-case letters, "
                               "digits, '_' and '-', starting with a letter or '_', at most 32 characters)")
        return user or None

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

    def _regions(self, regions: list[str], session) -> list[str]:
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
        return regions

    def _fetch(self, regions: list[str], endpoint: str | None, filters: dict, read_images: bool) -> dict:
        from botocore.config import Config

        session = self._session()
        regions = self._regions(regions, session)
        config = Config(retries={"mode": "adaptive", "max_attempts": self.get_option("retries")},
                        connect_timeout=self.get_option("connect_timeout"), read_timeout=120,
                        max_pool_connections=8)
        # Clients are created here, in one thread: boto3 sessions are not thread-safe, clients are.
        clients = {r: session.client("ec2", region_name=r, endpoint_url=endpoint, config=config) for r in regions}
        parts = REGION_PARTS + (("images",) if read_images else ())
        results, failures = vpc_reader.read_regions(clients, parts, workers=min(16, len(parts) * len(regions)),
                                                    instance_filters=filters, instance_fields=hosts.INSTANCE_FIELDS)
        data = {"format": CACHE_FORMAT, "images_read": read_images, "regions": {}}
        for region in regions:
            if region in results:
                facts = results[region]
                facts["instances"] = [hosts.instance_record(i, region) for i in facts["instances"]]
                data["regions"][region] = facts
        if failures:
            messages = [(r, hosts.explain_error(exc, r, endpoint or clients[r].meta.endpoint_url))
                        for r, exc in failures.items() if r in regions]
            messages.sort(key=lambda m: regions.index(m[0]))
            if not self.get_option("skip_failed_regions"):
                raise AnsibleError(f"bastion_ec2: {'; '.join(message for _r, message in messages)}")
            for region, message in messages:
                self.display.warning(f"bastion_ec2: skipping region {region}: {message}")

        self._add_missing_bastions(data, clients, read_images)
        return data

    def _add_missing_bastions(self, data: dict, clients: dict, read_images: bool) -> None:
        """Filters may leave a VPC's bastion out of the host list (e.g. only role web): find it separately,
        one call per region and only then, so the hop still works. With filters of one's own, a VPC that lists
        one bastion may still miss its other zone's (bastion_per_az): those VPCs are looked up too."""
        wanted = self._bastion_tags()
        filtered = bool(self.get_option("filters"))
        for region, result in data["regions"].items():
            listed = {i["instance_id"] for i in result["instances"]}
            vpcs_with_bastion = set() if filtered else \
                {i["vpc_id"] for i in result["instances"] if hosts.is_bastion(i, wanted)}
            missing = sorted({i["vpc_id"] for i in result["instances"] if i["vpc_id"]} - vpcs_with_bastion)
            result["extra_bastions"] = []
            if not missing or not wanted:
                continue
            api_filters = {"vpc-id": missing, "instance-state-name": ["running"]}
            api_filters.update({f"tag:{k}": [v] for k, v in wanted.items()})
            try:
                found = vpc_reader.read(clients[region], ["instances"] + (["images"] if read_images else []),
                                        instance_filters=api_filters, instance_fields=hosts.INSTANCE_FIELDS)
            except vpc_reader.ReaderError as exc:
                shown = hosts.explain_error(exc.__cause__ or exc, region, clients[region].meta.endpoint_url)
                raise AnsibleError(f"bastion_ec2: {shown}") from None
            result["extra_bastions"] = [hosts.instance_record(i, region) for i in found["instances"]
                                        if i["instance_id"] not in listed]
            result["images"] = result.get("images", []) + found.get("images", [])

    # ------------------------------------------------------------------ inventory
    def _bastion_tags(self) -> dict:
        """What a bastion carries: bastion_tags and the project tag (not just anything tagged Role=bastion)."""
        wanted = {k: str(v) for k, v in (self.get_option("bastion_tags") or {}).items()}
        key = self.get_option("project_tag_key")
        if wanted and key:
            wanted[key] = str(self.get_option("project_tag_value"))
        return wanted

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
            "connect_timeout": self._seconds("bastion_connect_timeout", minimum=1),
            "failure_memory": self._seconds("bastion_failure_memory", minimum=0),
        }

    def _seconds(self, name: str, minimum: int) -> int:
        value = self.get_option(name)
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            raise AnsibleError(f"bastion_ec2: {name} must be a whole number of seconds, at least {minimum} "
                               f"(got {ssh.shown(value)})")
        return value

    def _populate(self, data: dict, login_user: str | None) -> None:
        options = {name: self.get_option(name) for name in (
            "hostnames", "bastion_address", "bastion_port", "control_path_dir", "proxy_public_hosts",
            "bastion_tags", "bastion_user")}
        options.update(login_user=login_user, bastion_wanted=self._bastion_tags())
        planner = hosts.HostPlanner(options, self._hop_settings(), self.display.warning)
        try:
            planned = planner.plan(data)
        except hosts.InventoryError as exc:
            raise AnsibleError(str(exc)) from None

        strict = self.get_option("strict")
        compose = self.get_option("compose")
        groups = self.get_option("groups")
        keyed_groups = self.get_option("keyed_groups")
        for group in ("public", "private"):
            self.inventory.add_group(group)
        for host, hostvars, host_groups in planned:
            self.inventory.add_host(host)
            for key, value in hostvars.items():
                self.inventory.set_variable(host, key, value)
            for group in host_groups:
                self.inventory.add_child(self.inventory.add_group(group), host)
            # Constructable extras come last so they can use everything above.
            self._set_composite_vars(compose, hostvars, host, strict=strict)
            self._add_host_to_composed_groups(groups, hostvars, host, strict=strict)
            self._add_host_to_keyed_groups(keyed_groups, hostvars, host, strict=strict)


def _botocore_version() -> str:
    import botocore

    return botocore.__version__
