"""Evaluate fumidai's IAM policy documents (docs/iam/*.json) against the API calls the flows really made.

moto enforces only a policy's Action element (docs/iam.md says why), so tests/integration/test_iam_policies.py
runs each flow under moto with the policy's *action projection* and then checks the real document here,
Resource and Condition included, against the server's request log (tests/integration/iam_recording_server.py):

- ``checks_for(entry)`` turns one logged call into the authorisation checks AWS makes for it: one per resource
  the call acts on (with the tags that resource carried before the call), one per resource it creates (with the
  tags requested for it), plus the ``ec2:CreateTags`` / ``elasticloadbalancing:AddTags`` check AWS adds when
  tags are applied on create. Which resource types an action authorises comes from the Service Authorization
  Reference excerpt docs/iam/service-authorization.json.
- ``evaluate(policy, check)`` decides a check the way IAM does for one identity policy: an explicit Deny wins,
  otherwise some Allow statement must match action, resource and every condition.
- ``lint(policy)`` rejects statements AWS would ignore or that use condition keys the reference does not list
  for their actions.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs" / "iam"
POLICY_FILES = {"readonly": DOCS / "fumidai-readonly.json", "provision": DOCS / "fumidai-provision.json",
                "nat-standby": DOCS / "fumidai-provision-nat-standby.json"}
SAR_FILE = DOCS / "service-authorization.json"

# AWS: "No permissions are required to perform this operation", even under an explicit Deny (moto agrees).
NO_PERMISSION_NEEDED = {"sts:GetCallerIdentity"}

# What each resource-creating call creates, by IAM resource type. Every resource a create action makes
# must be listed: the new resource is what aws:RequestTag conditions are checked against. A create action
# missing here is reported by checks_for, not silently evaluated as if it created nothing.
CREATES = {
    "ec2:AllocateAddress": ["elastic-ip"],
    "ec2:CreateInternetGateway": ["internet-gateway"],
    "ec2:CreateKeyPair": ["key-pair"],
    "ec2:CreateNatGateway": ["natgateway"],
    "ec2:CreateRouteTable": ["route-table"],
    "ec2:CreateSecurityGroup": ["security-group"],
    "ec2:CreateSubnet": ["subnet"],
    "ec2:CreateVpc": ["vpc"],
    "ec2:ImportKeyPair": ["key-pair"],
    # The instance, its root volume (one per block device mapping) and the interface it is launched with.
    "ec2:RunInstances": ["instance", "volume", "network-interface"],
    "elasticloadbalancing:CreateLoadBalancer": ["loadbalancer/app"],
    "elasticloadbalancing:CreateTargetGroup": ["targetgroup"],
    "elasticloadbalancing:CreateListener": ["listener/app"],
    "iam:CreateRole": ["role"],
    "iam:CreateInstanceProfile": ["instance-profile"],
}
# What AWS authorises besides the call when tags are applied on create, per service (and IAM resource type).
TAG_ON_CREATE = {"ec2": "ec2:CreateTags", "elasticloadbalancing": "elasticloadbalancing:AddTags",
                 "role": "iam:TagRole", "instance-profile": "iam:TagInstanceProfile"}
# Calls that pass an IAM role to a service, which AWS authorises as iam:PassRole on that role with the service
# in iam:PassedToService: launching an instance with an instance profile passes the profile's role to EC2,
# and so does putting a role into an instance profile (IAM API Reference, AddRoleToInstanceProfile: "The caller
# of this operation must be granted the PassRole permission on the IAM role").
PASSES_ROLE = {"ec2:RunInstances": "ec2.amazonaws.com", "iam:AddRoleToInstanceProfile": "ec2.amazonaws.com"}
# Calls that create something without a Create/Allocate/Import/Run name, or with one but creating nothing
# IAM authorises separately (a rule inside a security group, a route inside a route table, an association).
CREATES_NOTHING_SEPARATE = {"ec2:CreateRoute", "ec2:CreateTags", "ec2:AuthorizeSecurityGroupIngress",
                            "ec2:AuthorizeSecurityGroupEgress", "ec2:AllocateHosts"}
CREATE_NAME = re.compile(r"^(Create|Allocate|Import|Run)")

CONDITION_OPERATORS = {"StringEquals", "StringLike", "StringEqualsIfExists", "Bool", "Null",
                       "ForAllValues:StringEquals", "ForAnyValue:StringEquals"}
TAG_KEY_SUFFIX = re.compile(r"^(aws:RequestTag|aws:ResourceTag|ec2:ResourceTag|elasticloadbalancing:ResourceTag)/.+$",
                            re.I)


class PolicyCheckError(Exception):
    """The evaluator cannot decide a call (an action or an operator it does not know): fix the data, not the flow."""


@dataclass(frozen=True)
class Check:
    """One authorisation AWS makes for a call: action on resource, with the request context."""

    action: str
    resource: str  # an ARN, or "*" for an action without resource-level permissions
    context: dict = field(hash=False)  # condition key (lower case) -> str | list[str]
    call: str = ""  # which logged call it came from, for messages

    def describe(self) -> str:
        keys = ", ".join(f"{k}={v}" for k, v in sorted(self.context.items()) if k != "aws:requestedregion")
        return f"{self.action} on {self.resource} [{keys}] (from {self.call})"


# --------------------------------------------------------------------------- loading
def load_policy(name: str) -> dict:
    """One document of docs/iam/, or several attached together ("provision+nat-standby"): IAM evaluates the
    identity's policies as one set of statements."""
    documents = [json.loads(POLICY_FILES[part].read_text(encoding="utf-8")) for part in name.split("+")]
    if len(documents) == 1:
        return documents[0]
    return {"Version": "2012-10-17", "Statement": [s for d in documents for s in statements(d)]}


def load_sar() -> dict:
    return json.loads(SAR_FILE.read_text(encoding="utf-8"))


def statements(policy: dict) -> list[dict]:
    found = policy["Statement"]
    return found if isinstance(found, list) else [found]


def as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def projection(policy: dict) -> dict:
    """What moto can enforce of a policy: the actions its Allow statements grant, on every resource.

    moto matches a statement's Resource against "*" (it passes no ARN for EC2 or ELB calls), so an ARN-scoped
    statement never grants there, and it evaluates conditions without request values, so they always pass.
    Granting the actions on "*" keeps exactly the part moto checks: is every called action in the policy.
    """
    actions = sorted({a for s in statements(policy) if s["Effect"] == "Allow" for a in as_list(s["Action"])})
    return {"Version": "2012-10-17", "Statement": [{"Sid": "ActionProjection", "Effect": "Allow",
                                                    "Action": actions, "Resource": "*"}]}


def without_action(policy: dict, action: str) -> dict:
    """The policy with one action taken out of every statement (statements left empty are dropped)."""
    trimmed = copy.deepcopy(policy)
    kept = []
    for statement in statements(trimmed):
        remaining = [a for a in as_list(statement["Action"]) if a.lower() != action.lower()]
        if remaining:
            statement["Action"] = remaining
            kept.append(statement)
    trimmed["Statement"] = kept
    return trimmed


def granted_patterns(policy: dict) -> set[str]:
    return {a for s in statements(policy) if s["Effect"] == "Allow" for a in as_list(s["Action"])}


def size_without_whitespace(policy: dict) -> int:
    """IAM's measure for the managed policy size limit (6,144 characters, whitespace not counted)."""
    return len("".join(json.dumps(policy, separators=(",", ":")).split()))


# --------------------------------------------------------------------------- matching
def _glob(pattern: str, *, ignore_case: bool) -> re.Pattern:
    body = re.escape(pattern).replace(r"\*", ".*").replace(r"\?", ".")
    return re.compile(f"^{body}$", re.I if ignore_case else 0)


def action_matches(pattern: str, action: str) -> bool:
    return bool(_glob(pattern, ignore_case=True).match(action))


def resource_matches(pattern: str, arn: str) -> bool:
    return bool(_glob(pattern, ignore_case=False).match(arn))


def _condition_holds(operator: str, key: str, expected, context: dict) -> bool:
    expected = [str(v) for v in as_list(expected)]
    actual = context.get(key.lower())
    if operator == "Null":
        return (actual is None) == (expected[0].lower() == "true")
    if operator == "ForAllValues:StringEquals":
        return actual is None or all(v in expected for v in as_list(actual))
    if operator == "ForAnyValue:StringEquals":
        return actual is not None and any(v in expected for v in as_list(actual))
    if operator == "StringEqualsIfExists" and actual is None:
        return True
    if actual is None or isinstance(actual, list):
        return False  # a missing key fails; a multivalued key needs a ForAllValues/ForAnyValue operator
    if operator in ("StringEquals", "StringEqualsIfExists"):
        return actual in expected
    if operator == "StringLike":
        return any(_glob(v, ignore_case=False).match(actual) for v in expected)
    if operator == "Bool":
        return actual.lower() in [v.lower() for v in expected]
    raise PolicyCheckError(f"condition operator {operator} is not known to tests/integration/iam_policy.py")


def statement_applies(statement: dict, check: Check) -> bool:
    if not any(action_matches(p, check.action) for p in as_list(statement["Action"])):
        return False
    if not any(resource_matches(p, check.resource) for p in as_list(statement["Resource"])):
        return False
    return all(_condition_holds(op, key, expected, check.context)
               for op, pairs in statement.get("Condition", {}).items() for key, expected in pairs.items())


def evaluate(policy: dict, check: Check) -> tuple[bool, str]:
    """(allowed, the Sid that allows or denies it, or why nothing does)."""
    if check.action in NO_PERMISSION_NEEDED:
        return True, "needs no permission"
    allowing = ""
    for statement in statements(policy):
        if statement_applies(statement, check):
            if statement["Effect"] == "Deny":
                return False, f"explicitly denied by {statement.get('Sid', '?')}"
            allowing = allowing or statement.get("Sid", "?")
    return (True, allowing) if allowing else (False, "no statement allows it")


# --------------------------------------------------------------------------- the checks one call implies
def sar_row(sar: dict, action: str) -> dict:
    service, name = action.split(":", 1)
    row = sar.get(service, {}).get("actions", {}).get(name)
    if row is None:
        raise PolicyCheckError(
            f"{action} is not in docs/iam/service-authorization.json: add its Service Authorization Reference "
            "row (resource types, * for required, with their condition keys; \"\" for the action's own keys)")
    return row


def resource_types(sar: dict, action: str) -> set[str]:
    return {t.rstrip("*").rstrip("/") for t in sar_row(sar, action) if t.rstrip("*")}


def _arn(entry: dict, rtype: str, resource_id: str) -> str:
    service = "elasticloadbalancing" if "/" in rtype or rtype == "targetgroup" else "ec2"
    if resource_id.startswith("arn:"):
        return resource_id
    if rtype in IAM_NAME_PARAM:  # global: no region; named, not numbered
        return f"arn:aws:iam::{entry['account']}:{rtype}/{entry['params'].get(IAM_NAME_PARAM[rtype], resource_id)}"
    account = "" if rtype == "image" else entry["account"]
    return f"arn:aws:{service}:{entry['region']}:{account}:{rtype}/{resource_id}"


def _indexed(params: dict, prefix: str) -> dict[str, dict[str, str]]:
    """{"1": {"Key": ..., "Value": ...}, ...} from flat Query parameters like Tag.1.Key / Tags.member.1.Key."""
    groups: dict[str, dict[str, str]] = {}
    pattern = re.compile(rf"^{re.escape(prefix)}\.(\d+)\.(.+)$")
    for name, value in params.items():
        match = pattern.match(name)
        if match:
            groups.setdefault(match.group(1), {})[match.group(2)] = value
    return groups


def requested_tags(entry: dict) -> dict[str, dict[str, str]]:
    """Tags the request applies, by the resource type they go to ("" = every resource the call tags)."""
    params = entry["params"]
    found: dict[str, dict[str, str]] = {}
    for spec in _indexed(params, "TagSpecification").values():
        tags = {pair["Key"]: pair.get("Value", "") for pair in _indexed(spec, "Tag").values() if "Key" in pair}
        found.setdefault(spec.get("ResourceType", ""), {}).update(tags)
    for prefix in ("Tag", "Tags.member"):
        pairs = _indexed(params, prefix)
        if pairs:
            found.setdefault("", {}).update({p["Key"]: p.get("Value", "") for p in pairs.values() if "Key" in p})
    return found


def _tag_context(tags: dict[str, str], kind: str) -> dict:
    """aws:RequestTag/K + aws:TagKeys (kind "request") or aws:ResourceTag/K and the service's alias ("resource")."""
    context: dict = {}
    if kind == "request":
        for key, value in tags.items():
            context[f"aws:requesttag/{key}".lower()] = value
        if tags:
            context["aws:tagkeys"] = sorted(tags)
    else:
        for key, value in tags.items():
            for prefix in ("aws", "ec2", "elasticloadbalancing", "iam"):
                context[f"{prefix}:resourcetag/{key}".lower()] = value
    return context


def _new_resource_context(entry: dict, rtype: str, index: str = "") -> dict:
    """Keys AWS reads from the request for a resource the call creates (fumidai's policies use these)."""
    params = entry["params"]
    context: dict = {}
    if rtype == "instance" and "MetadataOptions.HttpTokens" in params:
        context["ec2:metadatahttptokens"] = params["MetadataOptions.HttpTokens"]
    if rtype == "volume" and f"BlockDeviceMapping.{index}.Ebs.Encrypted" in params:
        context["ec2:encrypted"] = params[f"BlockDeviceMapping.{index}.Ebs.Encrypted"]
    return context


# The parameter that names a new IAM resource (its ARN is known before it exists).
IAM_NAME_PARAM = {"role": "RoleName", "instance-profile": "InstanceProfileName"}


def _passed_roles(entry: dict) -> list[str]:
    """ARNs of the roles a call passes to a service (PASSES_ROLE)."""
    if entry["action"] == "iam:AddRoleToInstanceProfile":
        return [r["id"] for r in entry.get("resources", []) if r["type"] == "role"]
    return [arn for r in entry.get("resources", []) if r["type"] == "instance-profile" for arn in r.get("roles", [])]


def checks_for(entry: dict, sar: dict) -> list[Check]:
    """The authorisation checks AWS makes for one logged call."""
    action = entry["action"]
    call = f"{action} #{entry.get('line', '?')}"
    base = {"aws:requestedregion": entry["region"]}
    if action.startswith("ec2:"):
        base["ec2:region"] = entry["region"]
    if action in NO_PERMISSION_NEEDED:
        return [Check(action, "*", base, call)]
    types = resource_types(sar, action)
    if not types:
        return [Check(action, "*", base, call)]
    short = action.split(":", 1)[1]
    if CREATE_NAME.match(short) and action not in CREATES and action not in CREATES_NOTHING_SEPARATE:
        raise PolicyCheckError(f"{action} creates something: list what in CREATES (tests/integration/iam_policy.py)")

    tags_by_type = requested_tags(entry)
    direct_tagging = action in ("ec2:CreateTags", "elasticloadbalancing:AddTags")
    checks = []
    for role in _passed_roles(entry) if action in PASSES_ROLE else []:
        checks.append(Check("iam:PassRole", role, {**base, "iam:passedtoservice": PASSES_ROLE[action]},
                            f"{call}, passes the role"))
    for resource in entry.get("resources", []):
        rtype = resource["type"]
        if rtype not in types or (resource.get("exists") is False and rtype in CREATES.get(action, [])):
            continue  # not an IAM resource of this action (a route's target, ...), or the one it creates
        context = {**base, **_tag_context(resource["tags"], "resource")}
        if resource.get("owner"):
            context["ec2:owner"] = resource["owner"]
        if direct_tagging:
            context.update(_tag_context(tags_by_type.get("", {}), "request"))
        checks.append(Check(action, _arn(entry, rtype, resource["id"]), context, call))

    created = list(CREATES.get(action, []))
    created += [t for t in tags_by_type if t and t not in created]  # e.g. a tagged security-group-rule
    for rtype in created:
        if rtype not in types:
            continue
        tags = tags_by_type.get(rtype, {}) if action.startswith("ec2:") else tags_by_type.get("", {})
        # A new resource's ARN: its ID is not known yet; key pairs are named by their name, load balancers
        # and target groups by name and ID.
        if rtype == "key-pair":
            resource_id = entry["params"].get("KeyName", "(new)")
        elif rtype in IAM_NAME_PARAM:
            resource_id = entry["params"].get(IAM_NAME_PARAM[rtype], "(new)")
        elif rtype in ("loadbalancer/app", "targetgroup"):
            resource_id = f"{entry['params'].get('Name', '')}/(new)"
        else:
            resource_id = "(new)"
        instances = [""]
        if rtype == "volume":
            mappings = {k.split(".")[1] for k in entry["params"] if k.startswith("BlockDeviceMapping.")}
            instances = sorted(mappings) or [""]
        for index in instances:
            arn = _arn(entry, rtype, resource_id)
            context = {**base, **_tag_context(tags, "request"), **_new_resource_context(entry, rtype, index)}
            checks.append(Check(action, arn, context, call))
            if tags:  # tag on create: AWS authorises the tagging action too (EC2 and ELB name the creating action)
                service, creating = action.split(":", 1)
                tagging = TAG_ON_CREATE[rtype if service == "iam" else service]
                tag_context = {**base, **_tag_context(tags, "request")}
                if service != "iam":
                    tag_context[f"{service}:createaction"] = creating
                checks.append(Check(tagging, arn, tag_context, f"{call}, tag on create"))
    return checks or [Check(action, "*", base, call)]


# --------------------------------------------------------------------------- lint
def _sar_key(key: str) -> str:
    match = TAG_KEY_SUFFIX.match(key)
    return f"{match.group(1)}/${{TagKey}}" if match else key


def _types_covered(sar: dict, service: str, patterns: list[str]) -> set[str]:
    """The SAR resource types of a service whose ARNs a statement's Resource patterns can match: a sample ARN
    of the type matches the pattern, or the pattern (wildcards filled in) fits the type's ARN format."""
    covered = set()
    for rtype, template in sar[service]["resources"].items():
        sample = re.sub(r"\$\{[^}]+\}", "x1", template.replace("${Partition}", "aws"))
        template_re = re.compile("^" + re.sub(r"\\\$\\\{[^}]+\\\}", ".*",
                                              re.escape(template.replace("${Partition}", "aws"))) + "$")
        for pattern in patterns:
            if resource_matches(pattern, sample) or template_re.match(pattern.replace("*", "x").replace("?", "x")):
                covered.add(rtype.rstrip("/"))
    return covered


def lint(policy: dict, sar: dict) -> list[str]:
    """Problems AWS would not report but that make a statement dead or dishonest."""
    problems = []
    if policy.get("Version") != "2012-10-17":
        problems.append("Version must be 2012-10-17 (the older version has no policy variables)")
    sids = [s.get("Sid") for s in statements(policy)]
    if len(set(sids)) != len(sids) or None in sids:
        problems.append(f"every statement needs a unique Sid (docs/iam.md explains them by Sid): {sids}")
    for statement in statements(policy):
        sid = statement.get("Sid", "?")
        for element in ("NotAction", "NotResource", "Principal"):
            if element in statement:
                problems.append(f"{sid}: {element} is not used by fumidai's policies (and not evaluated here)")
        resources = as_list(statement["Resource"])
        for op in statement.get("Condition", {}):
            if op not in CONDITION_OPERATORS:
                problems.append(f"{sid}: condition operator {op} is not one tests/integration/iam_policy.py knows")
        for pattern in as_list(statement["Action"]):
            service = pattern.split(":", 1)[0]
            names = [a for a in sar.get(service, {}).get("actions", {}) if action_matches(pattern, f"{service}:{a}")]
            if not names:
                problems.append(f"{sid}: {pattern} matches no action in docs/iam/service-authorization.json")
            for name in names:
                row = sar[service]["actions"][name]
                types = {t.rstrip("*").rstrip("/") for t in row if t.rstrip("*")}
                covered = _types_covered(sar, service, resources) & types
                if resources != ["*"] and not covered:
                    known = sorted(types) or "no resource-level permissions: it needs Resource *"
                    problems.append(f"{sid}: {service}:{name} has no resource type matching {resources} ({known})")
                keys = set(row.get("", []))
                # IAM's reference lists a resource type's keys (aws:ResourceTag on a role) once, in its Resource
                # types table, not in each action's row: they apply to every action on that type.
                type_keys = sar[service].get("resource_condition_keys", {})
                for rtype, rkeys in row.items():
                    if rtype.rstrip("*").rstrip("/") in covered:
                        keys |= set(rkeys) | set(type_keys.get(rtype.rstrip("*").rstrip("/"), []))
                for pairs in statement.get("Condition", {}).values():
                    for key in pairs:
                        if _sar_key(key) not in keys:
                            problems.append(f"{sid}: {service}:{name} does not support condition key {key} "
                                            f"on {sorted(covered) or resources} (Service Authorization Reference)")
    return problems
