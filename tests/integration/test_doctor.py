"""playbooks/doctor.yml against moto: the project's topology passes every
path; one fault per test blocks the right hop with the right fix."""

from __future__ import annotations

import json
import textwrap

import pytest
from botocore.exceptions import ClientError

from tests.support.aws_seed import ADMIN_CIDR, PROJECT, AwsSeed, Stack, project_plan
from tests.support.playbook import run_report_playbook  # noqa: E402

ADMIN_IP = "192.0.2.10/32"  # inside ADMIN_CIDR


@pytest.fixture
def topo(ec2, elbv2):
    return AwsSeed(ec2, elbv2).project()


def doctor(inventory, tmp_path, target: str, path: str, *extra: str) -> tuple[object, dict]:
    """Run the doctor; return the process and its JSON report (when it got that far)."""
    return run_report_playbook("playbooks/doctor.yml", "doctor_output", tmp_path / f"doctor-{path}-{target}.json",
                               "-i", inventory, "-e", f"target={target}", "-e", f"path={path}",
                               "-e", f"source_cidr={ADMIN_IP}", *extra)


def console(text: str) -> str:
    """The console output with YAML's line folding and '' quoting undone."""
    return " ".join(text.split()).replace("''", "'")


def hop(report: dict, name: str) -> dict:
    matches = [h for h in report["hops"] if h["hop"] == name]
    assert matches, f"no hop {name!r} in {[h['hop'] for h in report['hops']]}"
    return matches[0]


def assert_blocked(proc, report: dict, hop_name: str, *fix_words: str, detail_words=()) -> dict:
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output
    assert report["blocked"] is True
    blocked = [h for h in report["hops"] if h["status"] == "BLOCKED"]
    assert blocked and blocked[0]["hop"] == hop_name, json.dumps(report["hops"], indent=1)
    for word in fix_words:
        assert word in blocked[0]["fix"], blocked[0]
    for word in detail_words:
        assert word in blocked[0]["detail"], blocked[0]
    assert "[BLOCKED]" in output and console(report["summary"]) in console(output)
    return blocked[0]


@pytest.mark.parametrize("path", ["ssh", "http", "egress"])
@pytest.mark.parametrize("target", ["web01", "web02"])
def test_clean_topology_every_path_passes(topo, inventory, tmp_path, target, path):
    proc, report = doctor(inventory, tmp_path, target, path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert report["blocked"] is False
    assert report["target"] == topo.instances[target]
    assert report["hops"] and all(h["status"] == "PASS" for h in report["hops"]), report["hops"]
    assert report["summary"].endswith("every hop passes")
    assert console(report["summary"]) in console(proc.stdout)
    assert "[BLOCKED]" not in proc.stdout


def test_target_by_instance_id_and_json_format(topo, inventory, tmp_path):
    proc, report = doctor(inventory, tmp_path, topo.instances["web02"], "egress", "-e", "doctor_format=json")
    assert proc.returncode == 0, proc.stdout
    assert report["target_name"] == "web02"
    # The console shows the same document, as a YAML literal block holding the JSON.
    block = proc.stdout.split("msg: |-\n", 1)[1].split("\n\n", 1)[0]
    printed = json.loads(textwrap.dedent(block))
    assert printed == report


def test_unknown_target_fails_before_walking(topo, inventory, tmp_path):
    proc, report = doctor(inventory, tmp_path, "web99", "ssh")
    assert proc.returncode != 0
    assert "No live instance named 'web99'" in proc.stdout
    assert report == {}


def test_bad_path_is_refused(topo, inventory, tmp_path):
    proc, _ = doctor(inventory, tmp_path, "web01", "telnet")
    assert proc.returncode != 0
    assert "Usage: -e target=" in proc.stdout


def test_missing_nat_route(topo, ec2, inventory, tmp_path):
    ec2.delete_route(RouteTableId=topo.route_tables["fumidai-private-subnet-2"], DestinationCidrBlock="0.0.0.0/0")
    proc, report = doctor(inventory, tmp_path, "web02", "egress")
    assert_blocked(proc, report, "default route", "Add 0.0.0.0/0 -> a NAT gateway",
                   detail_words=("private-subnet-2", "has no 0.0.0.0/0 route"))
    # The other private subnet (NAT gateway) is unaffected.
    proc, report = doctor(inventory, tmp_path, "web01", "egress")
    assert proc.returncode == 0, proc.stdout


def test_nat_instance_source_dest_check_on(topo, ec2, inventory, tmp_path):
    ec2.modify_instance_attribute(InstanceId=topo.instances["nat-instance"], SourceDestCheck={"Value": True})
    proc, report = doctor(inventory, tmp_path, "web02", "egress")
    blocked = assert_blocked(proc, report, "NAT", "Disable it", "--no-source-dest-check",
                             detail_words=("private-subnet-2", "nat-instance", topo.instances["nat-instance"],
                                           "source/destination check is on: AWS drops forwarded packets"))
    assert "Change source/destination check" in blocked["fix"]


def test_web_sg_missing_alb_rule(topo, ec2, inventory, tmp_path):
    ec2.revoke_security_group_ingress(GroupId=topo.sgs["web"], IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80, "UserIdGroupPairs": [{"GroupId": topo.sgs["alb"]}]}])
    proc, report = doctor(inventory, tmp_path, "web01", "http")
    assert_blocked(proc, report, "target security group", "TCP 80 from the ALB's security group",
                   f"--source-group {topo.sgs['alb']}", detail_words=("fumidai-web",))


def test_bastion_sg_not_allowing_admin_cidr(topo, ec2, inventory, tmp_path):
    ec2.revoke_security_group_ingress(GroupId=topo.sgs["bastion"], IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": ADMIN_CIDR}]}])
    ec2.authorize_security_group_ingress(GroupId=topo.sgs["bastion"], IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": "198.51.100.0/24"}]}])
    proc, report = doctor(inventory, tmp_path, "web01", "ssh")
    assert_blocked(proc, report, "bastion security group", f"TCP 22 from {ADMIN_IP}", f"--cidr {ADMIN_IP}",
                   detail_words=("fumidai-bastion",))


def test_web_sg_allows_ssh_only_from_wrong_sg(topo, ec2, inventory, tmp_path):
    ec2.revoke_security_group_ingress(GroupId=topo.sgs["web"], IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "UserIdGroupPairs": [{"GroupId": topo.sgs["bastion"]}]}])
    ec2.authorize_security_group_ingress(GroupId=topo.sgs["web"], IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "UserIdGroupPairs": [{"GroupId": topo.sgs["nat"]}]}])
    proc, report = doctor(inventory, tmp_path, "web02", "ssh")
    assert_blocked(proc, report, "target security group", f"--source-group {topo.sgs['bastion']}",
                   detail_words=("does not allow TCP 22 from the bastion",))


def test_alb_in_one_public_subnet_only(topo, elbv2, inventory, tmp_path):
    # moto, like AWS, refuses an ALB with one subnet ("More than 1 availability
    # zone must be specified"); the literal one-subnet case is unit-tested on a
    # hand-built state (tests/unit/test_doctor_paths.py::test_alb_in_one_subnet_only).
    # Here the ALB keeps two AZs but only one public subnet: its second node
    # sits in private-subnet-2, unreachable from the internet.
    elbv2.set_subnets(LoadBalancerArn=topo.alb_arn,
                      Subnets=[topo.subnets["public-subnet-1"], topo.subnets["private-subnet-2"]])
    proc, report = doctor(inventory, tmp_path, "web01", "http")
    assert_blocked(proc, report, "load balancer subnets", "Move the ALB to public subnets",
                   detail_words=("private subnet(s) private-subnet-2", topo.subnets["private-subnet-2"]))


def test_target_not_registered(topo, elbv2, inventory, tmp_path):
    elbv2.deregister_targets(TargetGroupArn=topo.tg_arn, Targets=[{"Id": topo.instances["web02"], "Port": 80}])
    proc, report = doctor(inventory, tmp_path, "web02", "http")
    assert_blocked(proc, report, "target registration", "register-targets", f"Id={topo.instances['web02']}",
                   detail_words=("not registered in target group fumidai-web",))


def gateway_detached_before_the_hosts(ec2) -> Stack:
    """provision.yml's network, public route included, whose internet gateway someone detached before any host
    had a public address; the bastion and the web servers launched afterwards. That is the order AWS allows: it
    refuses the detach once a public address is mapped in the VPC, and without an attached gateway it refuses an
    Elastic IP association (Gateway.NotAttached), fails a public NAT gateway and an internet-facing ALB, but still
    maps a public IP at launch: the bastion has one (and no Elastic IP, NAT gateway or ALB exists)."""
    seed, plan = AwsSeed(ec2), project_plan()
    stack = Stack(plan.name, seed.vpc(plan.name, plan.cidr))
    for subnet in plan.subnets:
        stack.subnets[subnet.name] = seed.subnet(stack.vpc_id, subnet.name, subnet.cidr, subnet.zone, subnet.tier)
    stack.igw_id = seed.igw(stack.vpc_id, f"{PROJECT}-igw")
    public = [stack.subnets[s.name] for s in plan.subnets if s.tier == "public"]
    stack.route_tables[f"{PROJECT}-public"] = seed.route_table(stack.vpc_id, public, f"{PROJECT}-public",
                                                               GatewayId=stack.igw_id)
    ec2.detach_internet_gateway(InternetGatewayId=stack.igw_id, VpcId=stack.vpc_id)
    stack.sgs = seed.project_groups(stack.vpc_id, plan)
    for host in plan.hosts:
        if host.role in ("bastion", "web"):
            stack.hosts[host.name] = seed.instance(stack.subnets[host.subnet], host.name, host.role,
                                                   public=host.role == "bastion", groups=[stack.sgs[host.role]])
    return stack


def test_the_gateway_of_a_vpc_with_public_addresses_is_not_detached(topo, ec2):
    """The local API refuses it as AWS does, so a fault is staged as AWS allows it (next test)."""
    with pytest.raises(ClientError) as refused:
        ec2.detach_internet_gateway(InternetGatewayId=topo.igw_id, VpcId=topo.vpc_id)
    assert refused.value.response["Error"]["Code"] == "DependencyViolation"
    assert "mapped public address" in refused.value.response["Error"]["Message"]
    assert [a["VpcId"] for a in ec2.describe_internet_gateways(
        InternetGatewayIds=[topo.igw_id])["InternetGateways"][0]["Attachments"]] == [topo.vpc_id]


def test_igw_detached(ec2, inventory, tmp_path):
    stack = gateway_detached_before_the_hosts(ec2)
    assert stack.hosts["bastion"]["public"]  # the hops before the gateway pass
    proc, report = doctor(inventory, tmp_path, "web01", "ssh")
    assert_blocked(proc, report, "internet gateway", "Attach it", f"--internet-gateway-id {stack.igw_id}",
                   detail_words=("fumidai-igw", "is not attached"))
    # The fix it gives is the only one needed: attached, the same VPC passes.
    ec2.attach_internet_gateway(InternetGatewayId=stack.igw_id, VpcId=stack.vpc_id)
    proc, report = doctor(inventory, tmp_path, "web01", "ssh")
    assert (proc.returncode, report["blocked"]) == (0, False), proc.stdout + proc.stderr


def test_nacl_denying_22(topo, ec2, inventory, tmp_path):
    ec2.create_network_acl_entry(NetworkAclId=topo.nacl_id, RuleNumber=50, Protocol="6", RuleAction="deny",
                                 Egress=False, CidrBlock="0.0.0.0/0", PortRange={"From": 22, "To": 22})
    proc, report = doctor(inventory, tmp_path, "web01", "ssh")
    blocked = assert_blocked(proc, report, "bastion network ACL", "numbered below 50",
                             detail_words=("rule 50 denies it", "TCP 22 inbound"))
    assert topo.nacl_id in blocked["detail"]
    # The deny also cuts bastion -> web01 (different subnets): reported on that hop too.
    assert hop(report, "network ACLs bastion to target")["status"] == "BLOCKED"


def test_hostile_tag_values_are_printed_escaped_and_never_templated(topo, ec2, inventory, tmp_path):
    """Name tags are untrusted: a forged hop line, Jinja that would create a file, bidi and line-separator
    tricks and a very long name are shown escaped and capped, never templated; the JSON stays valid."""
    marker = tmp_path / "templated"
    names = {
        topo.instances["web02"]: "web02\n 9. [PASS] forged hop: every hop passes",
        topo.subnets["private-subnet-2"]: f"{{{{ lookup('ansible.builtin.pipe', 'touch {marker}') }}}}",
        topo.sgs["nat"]: "踏み台\u202egnp.exe\u2028[BLOCKED]",
        topo.route_tables["fumidai-private-subnet-2"]: "r" * 300,
    }
    for resource, name in names.items():
        ec2.create_tags(Resources=[resource], Tags=[{"Key": "Name", "Value": name}])
    proc, report = doctor(inventory, tmp_path, topo.instances["web02"], "egress", "-e", "doctor_format=text")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not marker.exists()
    assert report["target_name"] == names[topo.instances["web02"]]  # the JSON carries the raw value, escaped
    text = "\n".join(f"{h['hop']}: {h['detail']}" for h in report["hops"])
    assert '"web02\\n 9. [PASS] forged hop: every hop passes"' in report["summary"]
    assert "\\x7b{ lookup(" in text and "\\u202e" in text and "r" * 64 + "…" in text
    assert not any(bad in text for bad in ("\n 9.", "{{", "\u202e", "\u2028")) and "r" * 65 not in text
    block = proc.stdout.split("TASK [Show the verdict of every hop]", 1)[1].split("TASK [", 1)[0]
    numbered = [line.split()[0] for line in block.splitlines() if line.strip()[:1].isdigit()]
    assert numbered == [f"{n}." for n in range(1, len(report["hops"]) + 1)], block
    assert "{{ lookup" not in proc.stdout and "\u202e" not in proc.stdout
