"""The bastion_ec2 inventory's hosts: names, bastions, login users, hop commands and host variables.

Pure Python (boto only in explain_error): the inventory plugin reads VPC state with vpc_reader, caches it,
and hands it here as ``{"regions": {region: {instances, extra_bastions, subnets, vpcs, route_tables,
images}}}``; ``plan_hosts`` returns what to add to the inventory. Tiers come from vpc_model, login users
from login (per host, from its image's OS), every ssh word from ssh_args.

Imported as ``ansible_collections.fumidai.vpc.plugins.module_utils.inventory_hosts``.
"""

from __future__ import annotations

import ipaddress

from ansible_collections.fumidai.vpc.plugins.module_utils import login
from ansible_collections.fumidai.vpc.plugins.module_utils import ssh_args as ssh
from ansible_collections.fumidai.vpc.plugins.module_utils.vpc_model import (
    PUBLIC,
    VpcModel,
    instance_group_refs,
    sanitize_group_name,
)

HOSTNAME_SOURCES = {
    "instance-id": "instance_id",
    "private-ip-address": "private_ip_address",
    "private-dns-name": "_private_dns_name",
    "public-ip-address": "public_ip_address",
    "public-dns-name": "_public_dns_name",
}
BASTION_FACTS = ("name", "instance_id", "address", "user", "port")
# The instance keys the inventory reads (vpc_reader converts only these: thousands of instances stay cheap).
INSTANCE_FIELDS = ("InstanceId", "InstanceType", "ImageId", "State", "PrivateIpAddress", "PublicIpAddress",
                   "PrivateDnsName", "PublicDnsName", "SubnetId", "VpcId", "Placement", "SecurityGroups",
                   "NetworkInterfaces.Attachment", "NetworkInterfaces.Groups", "Tags")
FALLBACK_OS = login.DEFAULT_OS


class InventoryError(Exception):
    """A listing the inventory refuses (the plugin raises it as AnsibleError)."""


# --------------------------------------------------------------------------- records
def instance_record(inst: dict, region: str) -> dict:
    """The few fields the inventory uses, from vpc_reader's snake_case instance (cheap, JSON-safe)."""
    return {
        "instance_id": inst["instance_id"],
        "instance_type": inst.get("instance_type"),
        "image_id": inst.get("image_id"),
        "state": (inst.get("state") or {}).get("name"),
        "private_ip_address": inst.get("private_ip_address"),
        "public_ip_address": inst.get("public_ip_address"),
        # Hostname sources only (not host variables): every variable costs time on every run.
        "_private_dns_name": inst.get("private_dns_name") or None,
        "_public_dns_name": inst.get("public_dns_name") or None,
        "subnet_id": inst.get("subnet_id"),
        "vpc_id": inst.get("vpc_id"),
        "availability_zone": (inst.get("placement") or {}).get("availability_zone"),
        "security_groups": [{"group_id": g.get("group_id"), "group_name": g.get("group_name")}
                            for g in instance_group_refs(inst)],
        # Not "tags": that name is reserved (a play keyword) and ansible-core warns on every run.
        "ec2_tags": dict(inst.get("tags") or {}),
        "region": region,
    }


# --------------------------------------------------------------------------- ssh commands
def hop_command(bastion: dict, settings: dict) -> str:
    """The ProxyCommand that carries a private host's connection through ``bastion``.

    Every literal word is shell-quoted and %-escaped; only the target tokens %h and %p are left for the
    outer ssh to expand. The shared master's ControlPath is a literal path, so no per-target expansion
    can split it into one master per host. The bastion's key is checked against its pin like any host's.
    """
    login_word = f"{bastion['user']}@{bastion['address']}"
    options = ssh.host_key_options(bastion["instance_id"], settings["known_hosts"]) + settings["ssh_options"]
    if settings["multiplex"]:
        words = [settings["python"], settings["hop_script"],
                 "--control-path", bastion["control_path"], "--persist", settings["control_persist"],
                 "--port", str(bastion["port"])]
        if settings["key"]:
            words += ["--identity", settings["key"]]
        for option in options:
            words += ["--option", option]
        words.append(login_word)
        return " ".join(ssh.proxy_word(w) for w in words) + " %h %p"
    words = ["ssh", "-p", str(bastion["port"]), "-o", "BatchMode=yes"]
    if settings["key"]:
        words += ["-i", settings["key"], "-o", "IdentitiesOnly=yes"]
    for option in options:
        words += ["-o", option]
    # Brackets keep IPv6 targets apart from the port; quotes keep sh from globbing them.
    return " ".join(ssh.proxy_word(w) for w in words) + " -W '[%h]:%p' " + ssh.proxy_word(login_word)


def fallback_hop_command(bastions: list[dict], settings: dict) -> str:
    """The ProxyCommand through the first of ``bastions`` that answers (bastion_per_az: own zone first).

    One ``--bastion LOGIN,PORT,INSTANCE_ID,CONTROL_PATH`` per bastion, in order (the control path last: it is the
    one field that may hold a comma); the hop pins each bastion's key under its own instance ID. Needs the
    shared master (multiplex): plain ``ssh -W`` cannot try a second bastion.
    """
    words = [settings["python"], settings["hop_script"], "--persist", settings["control_persist"],
             "--connect-timeout", str(settings["connect_timeout"]),
             "--failure-memory", str(settings["failure_memory"])]
    if settings["key"]:
        words += ["--identity", settings["key"]]
    for option in ssh.pinned_key_options(settings["known_hosts"]) + settings["ssh_options"]:
        words += ["--option", option]
    for bastion in bastions:
        alias = ssh.host_key_alias(bastion["instance_id"]).split("=", 1)[1]
        # The fields are comma-separated: an address from AWS must be an address, nothing more.
        try:
            ipaddress.ip_address(str(bastion["address"]))
        except ValueError:
            raise InventoryError(f"bastion_ec2: bastion {bastion['instance_id']} has the address "
                                 f"{ssh.shown(bastion['address'])}, which is not an IP address") from None
        words += ["--bastion", f"{bastion['user']}@{bastion['address']},{bastion['port']},{alias},"
                               f"{bastion['control_path']}"]
    return " ".join(ssh.proxy_word(w) for w in words) + " %h %p"


def proxy_common_args(bastion: dict | list[dict], settings: dict) -> str:
    """The ProxyCommand part of a hopped host's ansible_ssh_common_args (Ansible shlex-splits it).
    ``bastion``: one, or the ordered list (more than one: the hop falls back, when multiplexed)."""
    bastions = bastion if isinstance(bastion, list) else [bastion]
    if len(bastions) > 1 and settings["multiplex"]:
        return ssh.common_args(["ProxyCommand=" + fallback_hop_command(bastions, settings)])
    return ssh.common_args(["ProxyCommand=" + hop_command(bastions[0], settings)])


def connection_args(instance_id: str, bastion: dict | list[dict] | None, settings: dict) -> str:
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


# --------------------------------------------------------------------------- names and bastions
def is_bastion(instance: dict, wanted: dict) -> bool:
    """``wanted``: the bastion tags with the project tag, computed once per pass rather than per instance."""
    tags = instance["ec2_tags"]
    return bool(wanted) and all(tags.get(k) == v for k, v in wanted.items())


class HostPlanner:
    """Turns the cached listing into hosts. ``options``: the plugin's options (get_option values) this
    needs; ``settings``: the hop settings; ``warn``: the plugin's display.warning."""

    def __init__(self, options: dict, settings: dict, warn):
        self.options = options
        self.settings = settings
        self.warn = warn
        self.wanted = options["bastion_wanted"]
        self.warned_vpcs: set = set()

    # names -------------------------------------------------------------------
    def _hostname(self, instance: dict) -> str | None:
        for source in self.options["hostnames"]:
            if source.startswith("tag:"):
                value = instance["ec2_tags"].get(source[4:])
            elif source in HOSTNAME_SOURCES:
                value = instance.get(HOSTNAME_SOURCES[source])
            else:
                raise InventoryError(f"bastion_ec2: unknown hostnames entry {source!r} "
                                     f"(use tag:<key> or one of {', '.join(HOSTNAME_SOURCES)})")
            if value:
                return str(value)
        return None

    def safe_hostname(self, instance: dict, instance_ids: set) -> str:
        """The instance's name if it is safe for hostnames, ssh configs, templates and shells; else its ID."""
        name = self._hostname(instance)
        if name is None or name == instance["instance_id"]:
            return instance["instance_id"]
        if ssh.safe_host_name(name) and name not in instance_ids:
            return name
        self.warn(f"bastion_ec2: instance {instance['instance_id']} is named {ssh.shown(name)}, which is "
                  "not a safe host name (1-63 letters, digits, '.', '_', '-'); listing it as "
                  f"{instance['instance_id']}")
        return instance["instance_id"]

    def unique_names(self, instances: list[dict]) -> dict:
        by_name: dict[str, list[dict]] = {}
        instance_ids = {i["instance_id"] for i in instances}
        for instance in instances:
            by_name.setdefault(self.safe_hostname(instance, instance_ids), []).append(instance)
        names = {}
        for name, members in by_name.items():
            if len(members) == 1:
                names[members[0]["instance_id"]] = name
                continue
            # Every colliding host gets its ID: the names do not depend on listing order.
            ids = ", ".join(m["instance_id"] for m in members)
            self.warn(f"bastion_ec2: {len(members)} instances share the name {name!r} ({ids}); "
                      f"listing them as {name}_<instance-id>")
            for member in members:
                # Still within the 63 characters of a safe name (and a DNS label).
                names[member["instance_id"]] = f"{name[:62 - len(member['instance_id'])]}_{member['instance_id']}"
        return names

    # login users -------------------------------------------------------------
    def login_users(self, instances: list[dict], images: dict) -> dict:
        """{instance_id: login user}: the override, else the user of the image's OS (login.IMAGE_OS), else
        the fallback OS's user with one warning naming the images. Nothing AWS says becomes a user name."""
        override = self.options["login_user"]
        if override:
            return {i["instance_id"]: override for i in instances}
        fallback = login.login_user(FALLBACK_OS)
        users, unknown = {}, {}
        for instance in instances:
            user = login.user_of_image(images.get(instance["image_id"]))
            if user is None:
                unknown.setdefault(instance["image_id"], []).append(instance["instance_id"])
                user = fallback
            users[instance["instance_id"]] = user
        if unknown:
            shown = ", ".join(f"{ssh.shown(image)} ({len(ids)} instance{'s' if len(ids) > 1 else ''}, e.g. "
                              f"{ssh.shown(ids[0])})" for image, ids in sorted(unknown.items(), key=str)[:5])
            more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
            self.warn(f"bastion_ec2: cannot tell the operating system of image {shown}{more} (not found, or "
                      f"not one of {', '.join(e.title for e in login.IMAGE_OS.values())}): logging in as "
                      f"{fallback!r}, the {login.IMAGE_OS[FALLBACK_OS].title} user. Set login_user to choose.")
        return users

    # bastions ----------------------------------------------------------------
    def bastions(self, instances: list[dict], extra: list[dict], names: dict, users: dict) -> dict:
        """The bastions of each VPC: its running instances with the bastion and project tags, at most one per
        availability zone (bastion_per_az), by name then instance ID.

        Two candidates in one zone are an error, not a pick: whoever can launch and tag an instance must not be
        able to become the way in by having a lower instance ID. (One in another zone is only ever a fallback
        behind its own pinned host key: an instance provisioning did not launch has none, and is refused.)
        """
        mode, port, cp_dir = self.options["bastion_address"], self.options["bastion_port"], \
            self.options["control_path_dir"]
        candidates: dict[tuple, list[dict]] = {}
        for instance in [i for i in instances if is_bastion(i, self.wanted)] + extra:
            if instance.get("state") in (None, "running"):
                zone = (instance["vpc_id"], instance.get("availability_zone") or "")
                candidates.setdefault(zone, []).append(instance)
        duplicated = {zone: sorted(i["instance_id"] for i in found)
                      for zone, found in candidates.items() if len(found) > 1}
        if duplicated:
            described = "; ".join(f"{vpc} {az or '(no zone)'}: {', '.join(ids)}"
                                  for (vpc, az), ids in sorted(duplicated.items()))
            raise InventoryError(f"bastion_ec2: more than one running instance is tagged as the bastion "
                                 f"({self.wanted}) in one availability zone of a VPC ({described}). fumidai will "
                                 "not guess which one to trust: terminate or untag the one you did not launch.")
        bastions: dict[str, list[dict]] = {}
        safe_ids = {i["instance_id"] for i in instances + extra}
        for (vpc_id, zone), (instance,) in sorted(candidates.items()):
            if mode == "public_ip":
                address = instance["public_ip_address"]
                if not address:
                    self.warn(f"bastion_ec2: bastion {instance['instance_id']} in {vpc_id} has no public "
                              f"IP; using its private IP {instance['private_ip_address']}")
                    address = instance["private_ip_address"]
            else:
                address = instance["private_ip_address"]
            if not address:
                continue
            # The hop logs in as the bastion's own user (its image's OS); bastion_user, deprecated, overrides.
            user = self.options["bastion_user"] or users[instance["instance_id"]]
            bastions.setdefault(vpc_id, []).append({
                "instance_id": instance["instance_id"],
                "name": names.get(instance["instance_id"]) or self.safe_hostname(instance, safe_ids),
                "address": address,
                "user": user,
                "port": port,
                "control_path": ssh.control_path_for(cp_dir, user, address, port),
                "availability_zone": zone,
            })
        for found in bastions.values():
            found.sort(key=lambda b: (b["name"], b["instance_id"]))
        return bastions

    def bastion_order(self, vpc_bastions: list[dict], zone: str | None) -> list[dict]:
        """A host's bastions: its own zone's first, then the others (each group by name, instance ID)."""
        return [b for b in vpc_bastions if b["availability_zone"] == zone] + \
            [b for b in vpc_bastions if b["availability_zone"] != zone]

    # hosts -------------------------------------------------------------------
    def plan(self, data: dict) -> list[tuple[str, dict, list[str]]]:
        """[(host name, host variables, groups)] in instance-ID order."""
        instances, extra, images, subnet_names, vpc_names, tiers = [], [], {}, {}, {}, {}
        for region in sorted(data["regions"]):
            result = data["regions"][region]
            instances += result["instances"]
            extra += result.get("extra_bastions", [])
            # Instances here are the inventory's records, not facts: the model reads the network only.
            model = VpcModel({part: result.get(part) for part in ("subnets", "route_tables", "vpcs", "images")})
            images.update(model.images)
            subnet_names.update((s, (model.subnets[s].get("tags") or {}).get("Name") or None) for s in model.subnets)
            vpc_names.update((v, (model.vpcs[v].get("tags") or {}).get("Name") or None) for v in model.vpcs)
            # Decided once per subnet (explicit association, else the VPC's main table), by vpc_model.
            for listed in result["instances"] + result.get("extra_bastions", []):
                if listed["subnet_id"] and listed["subnet_id"] not in tiers:
                    tiers[listed["subnet_id"]] = model.tier(listed["subnet_id"], listed["vpc_id"])
        instances.sort(key=lambda i: i["instance_id"])

        names = self.unique_names(instances)
        users = self.login_users(instances + extra, images)
        bastions = self.bastions(instances, extra, names, users)
        return [self._host(instance, names, users, bastions, tiers, subnet_names, vpc_names)
                for instance in instances]

    def _host(self, instance, names, users, bastions, tiers, subnet_names, vpc_names):
        mode, settings, proxy_public = self.options["bastion_address"], self.settings, \
            self.options["proxy_public_hosts"]
        subnet_id, vpc_id = instance["subnet_id"], instance["vpc_id"]
        public = tiers.get(subnet_id) == PUBLIC
        hostvars = {k: v for k, v in instance.items() if k[0] != "_"}
        hostvars["subnet_name"] = subnet_names.get(subnet_id)
        hostvars["vpc_name"] = vpc_names.get(vpc_id)

        vpc_bastions = bastions.get(vpc_id) or []
        bastion = next((b for b in vpc_bastions if b["instance_id"] == instance["instance_id"]), None)
        hop = None
        if bastion is not None:
            hostvars["ansible_host"] = bastion["address"]
            hostvars["ansible_user"] = bastion["user"]
            if bastion["port"] != 22:
                hostvars["ansible_port"] = bastion["port"]
            # Same socket as the hop: a play that reaches the bastion first opens the shared master.
            hostvars["ansible_control_path"] = ssh.ansible_control_path(bastion["control_path"])
        else:
            hostvars["ansible_user"] = users[instance["instance_id"]]
            if mode == "public_ip" and public and instance["public_ip_address"] and not proxy_public:
                hostvars["ansible_host"] = instance["public_ip_address"]
            else:
                hostvars["ansible_host"] = instance["private_ip_address"] or instance["public_ip_address"]
                if mode == "private_ip" and public and not proxy_public:
                    pass  # on the VPN a public-subnet host is reached directly on its private IP
                elif vpc_bastions:
                    hop = self.bastion_order(vpc_bastions, instance["availability_zone"])
                    hostvars["bastion"] = {k: hop[0][k] for k in BASTION_FACTS}
                    hostvars["bastions"] = [{k: b[k] for k in BASTION_FACTS} for b in hop]
                elif vpc_id not in self.warned_vpcs:
                    self.warned_vpcs.add(vpc_id)
                    self.warn(f"bastion_ec2: VPC {vpc_id} ({vpc_names.get(vpc_id) or 'no Name tag'}) has no running "
                              f"bastion (tags {self.options['bastion_tags']}): its private hosts are listed "
                              f"without a ProxyCommand and are not reachable through a bastion")
        # Every host, the bastion included: its pinned key under its instance ID, nothing trusted on first use.
        hostvars["ansible_ssh_common_args"] = connection_args(instance["instance_id"], hop, settings)
        if settings["key"]:
            hostvars["ansible_ssh_private_key_file"] = settings["key"]

        groups = [PUBLIC if public else "private",
                  "subnet_" + sanitize_group_name(hostvars["subnet_name"] or subnet_id or "none"),
                  "vpc_" + sanitize_group_name(hostvars["vpc_name"] or vpc_id or "none")]
        if instance["availability_zone"]:
            groups.append("az_" + sanitize_group_name(instance["availability_zone"]))
        role = instance["ec2_tags"].get("Role")
        if role:
            groups.append("role_" + sanitize_group_name(role))
        return names[instance["instance_id"]], hostvars, groups
