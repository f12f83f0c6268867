"""What tests/integration/test_teardown.py builds and checks with: the moto account seen through boto3, the two
stacks' playbook runs, the unrecorded twin stack, and readers of a run's output."""

from __future__ import annotations

import datetime
import json
import re
import subprocess
import sys
from pathlib import Path

import boto3
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from lab import moto_local
from tests.support.playbook import ROOT, run_playbook

REGION = "ap-northeast-1"
ACCOUNT = "123456789012"  # moto's
OTHER_ACCOUNT = "210987654321"
RECAP = re.compile(r"^localhost\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)
LIVE = ("pending", "running", "stopping", "stopped")
PLAN_TASK = re.compile(r"TASK \[fumidai\.vpc\.aws_teardown : Show what teardown deletes\][^\n]*\n"
                       r"ok: \[localhost\] => (\{.*?\n\})", re.S)


def recap(proc: subprocess.CompletedProcess) -> dict[str, int]:
    match = RECAP.search(proc.stdout)
    assert match, f"no PLAY RECAP for localhost:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return dict(zip(("ok", "changed", "unreachable", "failed"), map(int, match.groups()), strict=True))


def one_line(proc: subprocess.CompletedProcess) -> str:
    """The run's output with YAML line folding undone, for matching messages."""
    return re.sub(r"\s*\n\s*", " ", proc.stdout)


def self_signed_certificate() -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fumidai.example.com")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=30)).sign(key, hashes.SHA256()))
    return (cert.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()))


def tag(resource: dict, key: str = "Name") -> str:
    return {t["Key"]: t["Value"] for t in resource.get("Tags") or []}.get(key, "")


class Account:
    """boto3 views of the moto account: everything it holds, and one stack's resources."""

    def __init__(self, endpoint: str):
        session = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION)
        self.ec2 = session.client("ec2", endpoint_url=endpoint)
        self.elbv2 = session.client("elbv2", endpoint_url=endpoint)
        self.acm = session.client("acm", endpoint_url=endpoint)

    def instances(self, **filters) -> list[dict]:
        flt = [{"Name": "instance-state-name", "Values": list(LIVE)}]
        flt += [{"Name": k, "Values": [v]} for k, v in filters.items()]
        return [i for r in self.ec2.describe_instances(Filters=flt)["Reservations"] for i in r["Instances"]]

    def everything(self) -> dict[str, dict]:
        """Every resource of the region by kind, {id: what identifies its state}: equal snapshots = nothing changed."""
        ec2, elbv2 = self.ec2, self.elbv2
        return {
            "vpcs": {v["VpcId"]: tag(v) for v in ec2.describe_vpcs()["Vpcs"]},
            "subnets": {s["SubnetId"]: s["VpcId"] for s in ec2.describe_subnets()["Subnets"]},
            "security groups": {g["GroupId"]: len(g["IpPermissions"])
                                for g in ec2.describe_security_groups()["SecurityGroups"]},
            "route tables": {t["RouteTableId"]: len(t["Associations"])
                             for t in ec2.describe_route_tables()["RouteTables"]},
            "internet gateways": {g["InternetGatewayId"]: [a["VpcId"] for a in g["Attachments"]]
                                  for g in ec2.describe_internet_gateways()["InternetGateways"]},
            "nat gateways": {g["NatGatewayId"]: g["State"] for g in ec2.describe_nat_gateways()["NatGateways"]
                             if g["State"] in ("pending", "available")},
            "instances": {i["InstanceId"]: i["State"]["Name"] for i in self.instances()},
            "addresses": {a["AllocationId"]: a.get("AssociationId") for a in ec2.describe_addresses()["Addresses"]},
            "key pairs": {k["KeyPairId"]: k["KeyName"] for k in ec2.describe_key_pairs()["KeyPairs"]},
            "load balancers": {lb["LoadBalancerArn"]: lb["LoadBalancerName"]
                               for lb in elbv2.describe_load_balancers()["LoadBalancers"]},
            "target groups": {tg["TargetGroupArn"]: tg["TargetGroupName"]
                              for tg in elbv2.describe_target_groups()["TargetGroups"]},
        }

    def stack(self, record: dict) -> dict[tuple[str, str], str]:
        """One stack's resources as teardown lists them: {(kind, id): name}, from its record and its VPC."""
        ec2, vpc = self.ec2, [{"Name": "vpc-id", "Values": [record["vpc_id"]]}]
        found: dict[tuple[str, str], str] = {}
        for lb in self.elbv2.describe_load_balancers()["LoadBalancers"]:
            if lb["VpcId"] == record["vpc_id"]:
                found["load-balancer", lb["LoadBalancerArn"]] = lb["LoadBalancerName"]
        for tg in self.elbv2.describe_target_groups()["TargetGroups"]:
            if tg["VpcId"] == record["vpc_id"]:
                found["target-group", tg["TargetGroupArn"]] = tg["TargetGroupName"]
        for i in self.instances(**{"vpc-id": record["vpc_id"]}):
            found["instance", i["InstanceId"]] = tag(i)
        for t in ec2.describe_route_tables(Filters=vpc)["RouteTables"]:
            if not any(a.get("Main") for a in t["Associations"]):
                found["route-table", t["RouteTableId"]] = tag(t)
        for g in ec2.describe_nat_gateways(Filters=vpc)["NatGateways"]:
            if g["State"] in ("pending", "available"):
                found["nat-gateway", g["NatGatewayId"]] = tag(g)
        for a in ec2.describe_addresses(Filters=[{"Name": "allocation-id",
                                                  "Values": record["eip_allocation_ids"]}])["Addresses"]:
            found["eip", a["AllocationId"]] = f"{a['PublicIp']}, {tag(a)}"
        for g in ec2.describe_security_groups(Filters=vpc)["SecurityGroups"]:
            if g["GroupName"] != "default":
                found["security-group", g["GroupId"]] = g["GroupName"]
        for s in ec2.describe_subnets(Filters=vpc)["Subnets"]:
            found["subnet", s["SubnetId"]] = tag(s)
        for g in ec2.describe_internet_gateways(Filters=[{"Name": "attachment.vpc-id",
                                                          "Values": [record["vpc_id"]]}])["InternetGateways"]:
            found["internet-gateway", g["InternetGatewayId"]] = tag(g)
        for v in ec2.describe_vpcs(Filters=vpc)["Vpcs"]:
            found["vpc", v["VpcId"]] = tag(v)
        for k in ec2.describe_key_pairs(Filters=[{"Name": "key-pair-id",
                                                  "Values": [record["key_pair"]["id"]]}])["KeyPairs"]:
            found["key-pair", k["KeyPairId"]] = k["KeyName"]
        return found


def listed(proc: subprocess.CompletedProcess) -> dict[tuple[str, str], str]:
    """What a teardown run (with the JSON result format) listed: {(kind, id): name}."""
    match = PLAN_TASK.search(proc.stdout)
    assert match, proc.stdout[-3000:]
    lines = json.loads(match.group(1))["msg"]
    entries = [re.fullmatch(r"(\S+) (\S+) \((.*)\)", line) for line in lines[1:]]
    assert all(entries), lines
    return {(m.group(1), m.group(2)): m.group(3) for m in entries}


class Stacks:
    """The module's moto account, its two stacks' environments and the playbook runs."""

    def __init__(self, endpoint: str, tmp: Path):
        self.endpoint, self.tmp = endpoint, tmp
        self.account = Account(endpoint)
        (tmp / "hosts").write_text(f"localhost ansible_connection=local ansible_python_interpreter={sys.executable}\n")
        (tmp / "group_vars").symlink_to(ROOT / "inventory" / "group_vars")
        key = tmp / "id_ed25519"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
        cert, private_key = self_signed_certificate()
        self.cert_arn = self.account.acm.import_certificate(Certificate=cert, PrivateKey=private_key)["CertificateArn"]
        base = {"admin_cidrs": ["192.168.250.0/24"], "ssh_public_key_path": f"{key}.pub"}
        self.extra = {"a": {**base, "alb_certificate_arn": self.cert_arn},
                      "b": {**base, "project_name": "second",
                            "web_instances": [{"name": "web01", "subnet": "private-subnet-1"}]}}
        self.outputs = {"a": tmp / "a" / "outputs.yml", "b": tmp / "b" / "outputs.yml"}

    def env(self, stack: str) -> dict[str, str]:
        return {**moto_local.environment(self.endpoint), "FUMIDAI_OUTPUTS_FILE": str(self.outputs[stack]),
                "ANSIBLE_CALLBACK_RESULT_FORMAT": "json"}

    def run(self, playbook: str, stack: str, *args: str) -> subprocess.CompletedProcess:
        return run_playbook(playbook, "-i", str(self.tmp / "hosts"), "-e", json.dumps(self.extra[stack]), *args,
                            env=self.env(stack))

    def provision(self, stack: str) -> subprocess.CompletedProcess:
        return self.run("playbooks/provision.yml", stack)

    def teardown(self, stack: str, *args: str) -> subprocess.CompletedProcess:
        return self.run("playbooks/teardown.yml", stack, *args)

    def record(self, stack: str) -> dict:
        return yaml.safe_load(self.outputs[stack].read_text())["stack"]

    def edit_record(self, stack: str, **changes) -> None:
        outputs = yaml.safe_load(self.outputs[stack].read_text())
        outputs["stack"].update(changes)
        self.outputs[stack].write_text(yaml.safe_dump(outputs, sort_keys=False))


def build_twin(ec2, image: str) -> dict[str, str]:
    """Another stack of project fumidai in its own VPC (as another checkout would leave it), recorded nowhere."""
    def spec(kind: str, name: str) -> list[dict]:
        return [{"ResourceType": kind,
                 "Tags": [{"Key": "Project", "Value": "fumidai"}, {"Key": "Name", "Value": name}]}]

    vpc = ec2.create_vpc(CidrBlock="10.1.0.0/16", TagSpecifications=spec("vpc", "fumidai-vpc"))["Vpc"]
    twin = {"vpc": vpc["VpcId"]}
    twin["subnet"] = ec2.create_subnet(VpcId=twin["vpc"], CidrBlock="10.1.1.0/24", AvailabilityZone=f"{REGION}a",
                                       TagSpecifications=spec("subnet", "public-subnet-1"))["Subnet"]["SubnetId"]
    twin["group"] = ec2.create_security_group(GroupName="fumidai-web", Description="twin", VpcId=twin["vpc"],
                                              TagSpecifications=spec("security-group", "fumidai-web"))["GroupId"]
    twin["igw"] = ec2.create_internet_gateway(
        TagSpecifications=spec("internet-gateway", "twin-igw"))["InternetGateway"]["InternetGatewayId"]
    ec2.attach_internet_gateway(InternetGatewayId=twin["igw"], VpcId=twin["vpc"])
    twin["instance"] = ec2.run_instances(ImageId=image, InstanceType="t3.micro", MinCount=1, MaxCount=1,
                                         SubnetId=twin["subnet"], SecurityGroupIds=[twin["group"]],
                                         TagSpecifications=spec("instance", "web01"))["Instances"][0]["InstanceId"]
    return twin


def build_unrelated(ec2, image: str) -> tuple[str, str, str]:
    """Unrelated: an instance in the default VPC with the project tag (and a name of ours), and a project-tagged
    EIP attached to it. Returns (instance ID, allocation ID, association ID)."""
    default_subnet = ec2.describe_subnets(Filters=[{"Name": "default-for-az", "Values": ["true"]}])["Subnets"][0]
    spec = [{"ResourceType": "instance", "Tags": [{"Key": "Project", "Value": "fumidai"},
                                                  {"Key": "Name", "Value": "bastion"}]}]
    instance = ec2.run_instances(ImageId=image, InstanceType="t3.micro", MinCount=1, MaxCount=1,
                                 SubnetId=default_subnet["SubnetId"],
                                 TagSpecifications=spec)["Instances"][0]["InstanceId"]
    address = ec2.allocate_address(Domain="vpc", TagSpecifications=[
        {"ResourceType": "elastic-ip", "Tags": [{"Key": "Project", "Value": "fumidai"},
                                                {"Key": "Name", "Value": "unrelated-eip"}]}])
    association = ec2.associate_address(AllocationId=address["AllocationId"], InstanceId=instance)["AssociationId"]
    return instance, address["AllocationId"], association


def twin_intact(snapshot: dict, twin: dict[str, str]) -> bool:
    return (twin["vpc"] in snapshot["vpcs"] and twin["subnet"] in snapshot["subnets"]
            and twin["group"] in snapshot["security groups"]
            and snapshot["internet gateways"].get(twin["igw"]) == [twin["vpc"]]
            and snapshot["instances"].get(twin["instance"]) == "running")
