"""playbooks/audit.yml against moto: the topology fumidai builds is clean; a
deliberately broken one has every violation found, on the right resource,
and the play fails; hostile tag values are printed escaped and never
templated."""

from __future__ import annotations

import base64
import json
import struct
from pathlib import Path

import pytest

from tests.support.aws_seed import REGION, AwsSeed
from tests.support.playbook import run_report_playbook  # noqa: E402

WORLD = "0.0.0.0/0"
NAT_SUBNET = "10.0.12.0/24"  # private-subnet-2, the one routed through the NAT instance


def rule(protocol: str, port: int | None = None, cidr: str | None = None, group: str | None = None) -> dict:
    perm = {"IpProtocol": protocol, "FromPort": -1 if port is None else port, "ToPort": -1 if port is None else port}
    if cidr:
        perm["IpRanges"] = [{"CidrIp": cidr}]
    if group:
        perm["UserIdGroupPairs"] = [{"GroupId": group}]
    return perm


def pin(path: Path, instance_ids) -> Path:
    """A known_hosts file in fumidai's format with one (syntactically valid) ed25519 key per instance."""
    lines = ["# pinned by the test"]
    for number, instance_id in enumerate(instance_ids):
        blob = struct.pack(">I", 11) + b"ssh-ed25519" + struct.pack(">I", 32) + bytes([number]) * 32
        lines.append(f"{instance_id} ssh-ed25519 {base64.b64encode(blob).decode()}")
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def topo(ec2, elbv2):
    """fumidai's VPC with the security groups as roles/aws_security_groups builds them (the seeder's)."""
    return AwsSeed(ec2, elbv2).project()


@pytest.fixture
def known_hosts(topo, tmp_path) -> Path:
    return pin(tmp_path / "known_hosts", topo.instances.values())


def audit(inventory, tmp_path, *extra: str, **kwargs):
    return run_report_playbook("playbooks/audit.yml", "audit_output", tmp_path / "audit.json",
                               "-i", inventory, *extra, **kwargs)


def test_clean_topology(topo, known_hosts, inventory, tmp_path):
    # The known_hosts file is found the way group_vars finds it: FUMIDAI_KNOWN_HOSTS.
    proc, report = audit(inventory, tmp_path, env={"FUMIDAI_KNOWN_HOSTS": str(known_hosts)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert report["failed"] is False and report["violations"] == [] and report["notes"] == []
    assert report["known_hosts_file"] == str(known_hosts)
    assert report["summary"].startswith(f"clean: no violation in fumidai-vpc ({topo.vpc_id})")
    # bastion, nat-instance, web01, web02 and their root volumes were all looked at.
    assert "4 instances, 4 volumes checked" in report["summary"]
    assert "clean: no violation" in proc.stdout


def test_explicit_vpc_id(topo, known_hosts, inventory, tmp_path):
    proc, report = audit(inventory, tmp_path, "-e", f"vpc_id={topo.vpc_id}", "-e", f"known_hosts_file={known_hosts}")
    assert proc.returncode == 0, proc.stdout
    assert topo.vpc_id in report["summary"]


def test_nothing_to_audit_is_a_clear_error(aws_env, inventory, tmp_path):
    proc, report = audit(inventory, tmp_path)
    assert proc.returncode != 0
    assert "No VPC tagged Project=fumidai" in proc.stdout
    assert report == {}


def test_malformed_vpc_id_is_refused(aws_env, inventory, tmp_path):
    proc, _ = audit(inventory, tmp_path, "-e", "vpc_id=my-vpc")
    assert proc.returncode != 0
    assert "vpc_id must look like vpc-" in proc.stdout


def test_broken_topology_every_violation_found(topo, ec2, inventory, tmp_path):
    sgs = topo.sgs
    # SSH open to the world, over IPv4 on the bastion and IPv6 on the ALB.
    ec2.authorize_security_group_ingress(GroupId=sgs["bastion"], IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
    ec2.authorize_security_group_ingress(GroupId=sgs["alb"], IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "Ipv6Ranges": [{"CidrIpv6": "::/0"}]}])
    # The bastion: SSH from half the internet twice over (each range broader than a /8), and its egress open.
    ec2.authorize_security_group_ingress(GroupId=sgs["bastion"], IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22,
         "IpRanges": [{"CidrIp": "0.0.0.0/1"}, {"CidrIp": "128.0.0.0/1"}]}])
    ec2.authorize_security_group_egress(GroupId=sgs["bastion"], IpPermissions=[rule("-1", cidr=WORLD)])
    # The NAT instance: a proxy port open to the internet, SSH from outside the VPC and from the private
    # subnet it serves (its own sshd), source/dest check on.
    ec2.authorize_security_group_ingress(GroupId=sgs["nat"], IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 3128, "ToPort": 3128, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]},
        {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22,
         "IpRanges": [{"CidrIp": "198.51.100.0/24"}, {"CidrIp": NAT_SUBNET}]}])
    ec2.modify_instance_attribute(InstanceId=topo.instances["nat-instance"], SourceDestCheck={"Value": True})
    # Web servers reachable on 80 from the whole VPC, not only the ALB.
    ec2.authorize_security_group_ingress(GroupId=sgs["web"], IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80, "IpRanges": [{"CidrIp": "10.0.0.0/16"}]}])
    # IMDSv1 on web01.
    ec2.modify_instance_metadata_options(InstanceId=topo.instances["web01"], HttpTokens="optional")
    # A private instance with a public IP.
    image_id = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    root = ec2.describe_instances(InstanceIds=[topo.instances["web01"]])["Reservations"][0]["Instances"][0]
    root_volume = root["BlockDeviceMappings"][0]["Ebs"]["VolumeId"]
    snapshot = ec2.describe_volumes(VolumeIds=[root_volume])["Volumes"][0]["SnapshotId"]
    stray = ec2.run_instances(
        ImageId=image_id, InstanceType="t3.micro", MinCount=1, MaxCount=1,
        NetworkInterfaces=[{"DeviceIndex": 0, "SubnetId": topo.subnets["private-subnet-1"], "Groups": [sgs["web"]],
                            "AssociatePublicIpAddress": True}],
        MetadataOptions={"HttpTokens": "required"},
        BlockDeviceMappings=[{"DeviceName": "/dev/xvda", "Ebs": {"Encrypted": True, "SnapshotId": snapshot}}],
        TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": "Name", "Value": "stray"},
                                                                 {"Key": "Project", "Value": "fumidai"}]}],
    )["Instances"][0]["InstanceId"]
    # An unencrypted data volume on web02 (made from a snapshot: see aws_seed.root_snapshot).
    data = ec2.create_volume(Size=1, AvailabilityZone=f"{REGION}c", SnapshotId=snapshot, Encrypted=False,
                             TagSpecifications=[{"ResourceType": "volume",
                                                 "Tags": [{"Key": "Name", "Value": "web02-data"}]}])["VolumeId"]
    ec2.attach_volume(VolumeId=data, InstanceId=topo.instances["web02"], Device="/dev/xvdf")

    # web02's host key was never pinned (nor was the stray's).
    known_hosts = pin(tmp_path / "known_hosts", [i for n, i in topo.instances.items() if n != "web02"])

    proc, report = audit(inventory, tmp_path, "-e", f"known_hosts_file={known_hosts}")
    assert proc.returncode != 0, proc.stdout
    assert report["failed"] is True
    found = {}
    for violation in report["violations"]:
        found.setdefault(violation["check"], set()).add(violation["resource_id"])
    web_ids = {topo.instances["web01"], topo.instances["web02"]}
    assert found == {
        "ssh_open_to_world": {sgs["bastion"], sgs["alb"]},
        "open_to_internet": {sgs["nat"]},
        "nat_ssh_from_outside": {topo.instances["nat-instance"]},
        "nat_source_dest_check": {topo.instances["nat-instance"]},
        "nat_sg_too_wide": {topo.instances["nat-instance"]},
        "web_http_not_only_alb": web_ids,
        "imdsv1_allowed": {topo.instances["web01"]},
        "private_instance_public_ip": {stray},
        "unencrypted_volume": {data},
        "broad_admin_cidrs": {topo.instances["bastion"]},
        "bastion_egress_open": {topo.instances["bastion"]},
        "no_pinned_host_key": {topo.instances["web02"], stray},
    }, json.dumps(report["violations"], indent=1)
    assert "VIOLATION" in proc.stdout and "violation(s) in fumidai-vpc" in proc.stdout
    nat_check = next(v for v in report["violations"] if v["check"] == "nat_source_dest_check")
    assert "--no-source-dest-check" in nat_check["fix"]
    # Each new rule names what it found.
    messages = {}
    for violation in report["violations"]:
        messages.setdefault(violation["check"], []).append(violation["message"])
    assert len(messages["broad_admin_cidrs"]) == 1
    assert "0.0.0.0/1 is broader than a /8" in messages["broad_admin_cidrs"][0]
    assert "128.0.0.0/1 is broader than a /8" in messages["broad_admin_cidrs"][0]
    assert messages["bastion_egress_open"] == [
        f"bastion ({topo.instances['bastion']}) may open all traffic to 0.0.0.0/0 (outbound rule of fumidai-bastion "
        f"({sgs['bastion']})): it needs only SSH into its VPC (10.0.0.0/16) and TCP 80, 443 for updates; anything "
        f"more lets whoever takes the bastion reach the internet or the VPC freely"]
    too_wide = sorted(m.split(" allows ")[1].split(" (")[0] for m in messages["nat_sg_too_wide"])
    assert too_wide == ["TCP 22 from 10.0.12.0/24", "TCP 22 from 198.51.100.0/24", "TCP 3128 from 0.0.0.0/0"]
    assert all(f"there is no line for it in {known_hosts}" in m for m in messages["no_pinned_host_key"])


def test_ssh_from_anywhere_with_the_opt_in(topo, ec2, known_hosts, inventory, tmp_path):
    """allow_ssh_from_anywhere is honoured as preflight and the bastion role honour it: the bastion's SSH from
    anywhere (and from ranges too broad) is noted, not reported; the same on any other group still is."""
    ec2.authorize_security_group_ingress(GroupId=topo.sgs["bastion"], IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22,
         "IpRanges": [{"CidrIp": "0.0.0.0/0"}, {"CidrIp": "0.0.0.0/1"}]}])
    proc, report = audit(inventory, tmp_path, "-e", f"known_hosts_file={known_hosts}",
                         "-e", "allow_ssh_from_anywhere=true")
    assert proc.returncode == 0, proc.stdout
    assert report["violations"] == []
    assert report["notes"] == [
        f"allow_ssh_from_anywhere is true: SSH from anywhere to the bastion's security group fumidai-bastion "
        f"({topo.sgs['bastion']}) is accepted as the design's choice, not reported",
        f"allow_ssh_from_anywhere is true: bastion ({topo.instances['bastion']})'s SSH sources broader than the "
        f"admin limit (192.0.2.0/24, 0.0.0.0/1) are accepted as the design's choice, not reported"]
    assert all(f"[NOTE] {note}" in proc.stdout for note in report["notes"])
    ec2.authorize_security_group_ingress(GroupId=topo.sgs["web"], IpPermissions=[rule("tcp", 22, WORLD)])
    proc, report = audit(inventory, tmp_path, "-e", f"known_hosts_file={known_hosts}",
                         "-e", "allow_ssh_from_anywhere=true")
    assert proc.returncode != 0
    assert [(v["check"], v["resource_id"]) for v in report["violations"]] == [("ssh_open_to_world", topo.sgs["web"])]


def test_hostile_tag_values_are_printed_escaped_and_never_templated(topo, ec2, known_hosts, inventory, tmp_path):
    marker = tmp_path / "templated"
    hostile = {  # Name tags: a forged report line, Jinja that would create a file, bidi/line-separator tricks
        "web01": "web01\n[VIOLATION] forged: all is well\n      fix: nothing",
        "web02": f"{{{{ lookup('ansible.builtin.pipe', 'touch {marker}') }}}}{{% if true %}}x{{% endif %}}",
        "bastion": "踏み台\u202egnp.exe\u2028[PASS]",
    }
    for name, value in hostile.items():
        ec2.create_tags(Resources=[topo.instances[name]], Tags=[{"Key": "Name", "Value": value}])
        ec2.modify_instance_metadata_options(InstanceId=topo.instances[name], HttpTokens="optional")
    ec2.create_tags(Resources=[topo.vpc_id], Tags=[{"Key": "Name", "Value": "v" * 300}])
    proc, report = audit(inventory, tmp_path, "-e", f"known_hosts_file={known_hosts}")
    assert proc.returncode != 0, proc.stdout
    assert not marker.exists()
    assert [v["check"] for v in report["violations"]] == ["imdsv1_allowed"] * 3
    for violation in report["violations"]:
        shown = violation["resource"]
        assert shown.startswith('"') and shown.endswith(f'" ({violation["resource_id"]})'), shown
        assert not any(bad in shown for bad in ("\n", "{{", "{%", "\u202e", "\u2028")), shown
    assert report["summary"].startswith('3 violation(s) in "' + "v" * 64 + '…" (')
    # The console shows three violation lines, their fixes and the summary: the names added none.
    block = proc.stdout.split("TASK [Show every violation]", 1)[1].split("TASK [", 1)[0]
    starts = [line.split()[0] for line in block.splitlines() if line.strip()]
    assert starts.count("[VIOLATION]") == 3 and starts.count("fix:") == 3, block  # forged text stays in its line
    assert "\n[VIOLATION] forged" not in proc.stdout and "{{ lookup" not in proc.stdout
    assert "\u202e" not in proc.stdout and "\u2028" not in proc.stdout and "v" * 65 not in proc.stdout


def test_doctor_and_audit_after_the_provision_playbook(provisioned_stack, inventory, tmp_path):
    """The project's own provisioning (the shared provisioned stack), then the doctor on every path and
    the audit: all clean."""
    admin = {"admin_cidrs": list(provisioned_stack.admin_cidrs)}
    # Provisioning pinned every instance's host key in the stack's file; the audit reads the same one.
    env = {**provisioned_stack.env, "FUMIDAI_OUTPUTS_FILE": str(tmp_path / "outputs.yml")}
    for target in ("web01", "web02"):
        for path in ("ssh", "http", "egress"):
            report_file = tmp_path / f"{target}-{path}.json"
            proc, report = run_report_playbook("playbooks/doctor.yml", "doctor_output", report_file,
                                               "-i", inventory, "-e", json.dumps(admin),
                                               "-e", f"target={target}", "-e", f"path={path}", env=env)
            assert proc.returncode == 0 and not report["blocked"], (target, path, report.get("hops"), proc.stdout)
    volumes = provisioned_stack.client("ec2").describe_volumes()["Volumes"]
    assert all("SnapshotId" in v for v in volumes), (
        "moto omits SnapshotId for volumes not made from a snapshot (AWS returns ''), which makes "
        "amazon.aws.ec2_vol_info fail with KeyError 'snapshot_id': lab/moto_server.py needs the fix "
        "that defaults moto's Volume.snapshot_id to ''")
    proc, report = audit(inventory, tmp_path, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert report["violations"] == [], report["violations"]
    assert report["known_hosts_file"] == env["FUMIDAI_KNOWN_HOSTS"]
