"""The lab's planner without podman: moto-shaped descriptions in, addresses, routes,
firewall rules and HAProxy configuration out. Fast; runs before the end-to-end tests."""

from __future__ import annotations

import copy
import ipaddress

import pytest
import yaml

from lab import config, settings, steps
from lab.kinds import KINDS
from lab.plan import build_plan
from lab.proc import LabError
from lab.render.alb import render_haproxy

OFFICE = ipaddress.ip_network("192.168.250.0/24")


def _tags(name, **extra):
    return {"Name": name, "Project": "fumidai", **extra}


def _route_table(subnet_id, **target):
    return {"vpc_id": "vpc-1", "associations": [{"subnet_id": subnet_id, "main": False}],
            "routes": [{"destination_cidr_block": "10.0.0.0/16", "gateway_id": "local"},
                       {"destination_cidr_block": "0.0.0.0/0", **target}]}


def _instance(iid, name, role, subnet, ip, sg, public=False, check=True):
    return {"instance_id": iid, "private_ip_address": ip, "subnet_id": subnet, "tags": _tags(name, Role=role),
            "public_ip_address": "198.51.100.7" if public else None, "source_dest_check": check, "key_name": "fumidai",
            "network_interfaces": [{"network_interface_id": f"eni-{iid}", "mac_address": "02:00:00:00:00:01",
                                    "groups": [{"group_id": sg}]}]}


@pytest.fixture
def topo():
    subnets = [("subnet-pub1", "public-subnet-1", "10.0.1.0/24", "a"),
               ("subnet-pub2", "public-subnet-2", "10.0.2.0/24", "c"),
               ("subnet-prv1", "private-subnet-1", "10.0.11.0/24", "a"),
               ("subnet-prv2", "private-subnet-2", "10.0.12.0/24", "c")]
    return {
        "vpc": {"vpc_id": "vpc-1", "cidr_block": "10.0.0.0/16"},
        "subnets": [{"subnet_id": sid, "cidr_block": cidr, "availability_zone": f"ap-northeast-1{az}",
                     "tags": _tags(name)} for sid, name, cidr, az in subnets],
        "route_tables": [_route_table("subnet-pub1", gateway_id="igw-1"),
                         _route_table("subnet-pub2", gateway_id="igw-1"),
                         _route_table("subnet-prv1", nat_gateway_id="nat-1"),
                         _route_table("subnet-prv2", instance_id="i-00000000000000a70")],
        "security_groups": [
            {"group_id": "sg-bastion", "group_name": "bastion", "ip_permissions": [
                {"ip_protocol": "tcp", "from_port": 22, "to_port": 22, "ip_ranges": [{"cidr_ip": "192.168.250.0/24"}]}],
             "ip_permissions_egress": [{"ip_protocol": "-1", "ip_ranges": [{"cidr_ip": "0.0.0.0/0"}]}]},
            {"group_id": "sg-web", "group_name": "web", "ip_permissions": [
                {"ip_protocol": "tcp", "from_port": 80, "to_port": 80, "user_id_group_pairs": [{"group_id": "sg-alb"}]},
                {"ip_protocol": "tcp", "from_port": 22, "to_port": 22,
                 "user_id_group_pairs": [{"group_id": "sg-bastion"}]}],
             "ip_permissions_egress": [{"ip_protocol": "-1", "ip_ranges": [{"cidr_ip": "0.0.0.0/0"}]}]},
            {"group_id": "sg-nat", "group_name": "nat", "ip_permissions": [
                {"ip_protocol": "-1", "ip_ranges": [{"cidr_ip": "10.0.12.0/24"}]}], "ip_permissions_egress": []},
            {"group_id": "sg-alb", "group_name": "alb", "ip_permissions": [
                {"ip_protocol": "tcp", "from_port": 80, "to_port": 80, "ip_ranges": [{"cidr_ip": "0.0.0.0/0"}]}],
             "ip_permissions_egress": [{"ip_protocol": "-1", "ip_ranges": [{"cidr_ip": "0.0.0.0/0"}]}]},
        ],
        # moto 5.2 puts a NAT gateway at a random 10.x address outside its subnet.
        "nat_gateways": [{"nat_gateway_id": "nat-1", "subnet_id": "subnet-pub1", "tags": _tags("natgw"),
                          "nat_gateway_addresses": [{"private_ip": "10.144.62.31", "public_ip": "198.51.100.9"}]}],
        "internet_gateways": [{"internet_gateway_id": "igw-1"}],
        "instances": [_instance("i-00000000000000ba5", "bastion", "bastion", "subnet-pub1", "10.0.1.4", "sg-bastion",
                                True),
                      _instance("i-00000000000000a70", "nat-instance", "nat", "subnet-pub2", "10.0.2.4", "sg-nat",
                                True, False),
                      _instance("i-00000000000000e01", "web01", "web", "subnet-prv1", "10.0.11.4", "sg-web"),
                      _instance("i-00000000000000e02", "web02", "web", "subnet-prv2", "10.0.12.4", "sg-web")],
        "albs": [{"load_balancer_name": "fumidai-alb", "load_balancer_arn": "arn:alb", "scheme": "internet-facing",
                  "dns_name": "fumidai-alb-1.ap-northeast-1.elb.amazonaws.com", "security_groups": ["sg-alb"],
                  "availability_zones": [{"subnet_id": "subnet-pub2"}, {"subnet_id": "subnet-pub1"}],
                  "listeners": [{"protocol": "HTTP", "port": 80,
                                 "default_actions": [{"type": "forward", "target_group_arn": "arn:tg"}]}],
                  "target_groups": [{"target_group_arn": "arn:tg", "target_group_name": "fumidai-web", "port": 80,
                                     "health_check_path": "/healthz", "health_check_interval_seconds": 5,
                                     "health_check_timeout_seconds": 2, "healthy_threshold_count": 2,
                                     "unhealthy_threshold_count": 3, "matcher": {"http_code": "200-202"},
                                     "targets": [{"id": "i-00000000000000e01", "port": 80},
                                                 {"id": "i-00000000000000e02", "port": 80}]}]}],
        "key_pairs": {"fumidai": {"PublicKey": "ssh-ed25519 AAAAtest lab"}},
    }


@pytest.fixture
def plan(topo):
    return build_plan(topo, OFFICE)


def _node(plan, name):
    return next(n for n in plan["nodes"] if n["name"] == name)


def _net_script(plan, node):
    """What the node's kind renders as its net.sh (the kinds table: one renderer per kind)."""
    return KINDS[node["kind"]].files(plan, node)["net.sh"][0]


def test_instances_keep_moto_addresses_and_routes_follow_route_tables(plan):
    igw, natgw, nat = plan["igw_ip"], _node(plan, "natgw")["ip"], _node(plan, "nat-instance")["ip"]
    assert _node(plan, "bastion")["ip"] == "10.0.1.4"
    assert _node(plan, "bastion")["default_via"] == igw
    assert _node(plan, "nat-instance")["default_via"] == igw
    assert _node(plan, "web01")["default_via"] == natgw
    assert _node(plan, "web02")["default_via"] == nat == "10.0.2.4"


def test_lab_addresses_stay_out_of_subnets_and_the_nat_gateway_in_its_own(plan):
    subnets = [ipaddress.ip_network(c) for c in ("10.0.1.0/24", "10.0.2.0/24", "10.0.11.0/24", "10.0.12.0/24")]
    for address in (plan["igw_ip"], plan["vgw_ip"]):
        assert ipaddress.ip_address(address) in ipaddress.ip_network("10.0.0.0/16")
        assert not any(ipaddress.ip_address(address) in s for s in subnets)
    natgw = _node(plan, "natgw")
    assert ipaddress.ip_address(natgw["ip"]) in subnets[0]
    assert natgw["notes"], "moving the NAT gateway into its subnet is reported"
    alb = _node(plan, "fumidai-alb")
    assert ipaddress.ip_address(alb["ip"]) in subnets[0], "the ALB goes to its first subnet by AZ"
    addresses = [n["ip"] for n in plan["nodes"]]
    assert len(addresses) == len(set(addresses))
    assert plan["office_host_ip"] == "192.168.250.1" and plan["office_router_ip"] == "192.168.250.254"


def test_security_groups_become_default_deny_rules_with_references_resolved(plan):
    script = _net_script(plan, _node(plan, "web01"))
    alb_ip = _node(plan, "fumidai-alb")["ip"]
    assert f"-A AWS-SG-IN -s {alb_ip} -p tcp --dport 80 " in script
    assert "-A AWS-SG-IN -s 10.0.1.4 -p tcp --dport 22 " in script
    assert "192.168.250.0/24 -p tcp" not in script, "the office is not in the web SG"
    assert script.index("--dport 22") < script.index("-A AWS-SG-IN -j DROP")
    assert "AWS-SRC-DST-CHECK -j DROP" in script
    assert "ssh-ed25519 AAAAtest lab" in script, "the key pair is authorised as cloud-init would"
    assert "ip route replace default via" in script


def test_nat_instance_without_source_dest_check_forwards_and_without_egress_rules_sends_nothing(plan):
    script = _net_script(plan, _node(plan, "nat-instance"))
    assert "AWS-SRC-DST-CHECK -j DROP" not in script
    assert "-A AWS-SG-IN -s 10.0.12.0/24 -m comment" in script
    egress = [line for line in script.splitlines() if "-A AWS-SG-OUT" in line]
    assert egress[-1].endswith("-j DROP") and not any("-d " in line for line in egress)


def test_internet_gateway_forwards_only_for_public_addresses(plan):
    script = _net_script(plan, _node(plan, "internet-gateway"))
    for name in ("bastion", "nat-instance", "natgw", "fumidai-alb"):
        assert f"-s {_node(plan, name)['ip']} -d 198.18.0.0/24 -j ACCEPT" in script
    for name in ("web01", "web02"):
        assert f"-s {_node(plan, name)['ip']} " not in script


def test_haproxy_follows_listeners_target_groups_and_health_checks(plan):
    config = render_haproxy(plan, plan["albs"][0])
    assert f"bind {_node(plan, 'fumidai-alb')['ip']}:80" in config
    assert "option httpchk GET /healthz" in config
    assert "http-check expect rstatus ^(200|201|202)$" in config
    assert "inter 5s rise 2 fall 3" in config and "timeout check 2s" in config
    assert "server i-00000000000000e01 10.0.11.4:80 check" in config
    assert "server i-00000000000000e02 10.0.12.4:80 check" in config


# --------------------------------------------------------------------------- lab_web_count


def test_web_count_deals_web_servers_over_the_private_subnets_and_passes_preflight():
    from ansible_collections.fumidai.vpc.plugins.filter.fumidai_net import fumidai_web_instance_problems

    subnets = [{"name": "private-subnet-1", "tier": "private"}, {"name": "private-subnet-2", "tier": "private"}]
    hosts = settings.web_instances(20, ["private-subnet-1", "private-subnet-2"])
    assert [h["name"] for h in hosts[:3]] == ["web01", "web02", "web03"]
    assert hosts[-1] == {"name": "web20", "subnet": "private-subnet-2"}
    assert [h["subnet"] for h in hosts].count("private-subnet-1") == 10
    assert fumidai_web_instance_problems(hosts, subnets) == []
    # The default is the project's own pair, so the standard lab is unchanged.
    assert settings.web_instances(2, ["private-subnet-1", "private-subnet-2"]) == [
        {"name": "web01", "subnet": "private-subnet-1"}, {"name": "web02", "subnet": "private-subnet-2"}]
    assert settings.web_instances(100, ["private-subnet-1"])[-1]["name"] == "web100"
    assert settings.web_instances(100, ["private-subnet-1"])[0]["name"] == "web001"


def test_web_count_precedence_and_bad_values(tmp_path, monkeypatch):
    monkeypatch.setattr(config, "CACHE", tmp_path)
    monkeypatch.setattr(config, "WEB_INSTANCES_FILE", tmp_path / "web_instances.yml")
    monkeypatch.delenv(config.WEB_COUNT_ENV, raising=False)
    assert settings.lab_vars()["lab_web_count"] == 2
    assert settings.resolve_web_count(None) == 2            # lab/vars.yml
    settings.write_web_instances(5)
    assert settings.resolve_web_count(None) == 5            # what the lab was provisioned with
    monkeypatch.setenv(config.WEB_COUNT_ENV, "7")
    assert settings.resolve_web_count(None) == 7            # the environment
    assert settings.resolve_web_count(20) == 20             # --web-count
    for bad, message in ((0, "between 1 and 100"), (101, "between 1 and 100")):
        with pytest.raises(LabError, match=message):
            settings.resolve_web_count(bad)
    monkeypatch.setenv(config.WEB_COUNT_ENV, "twenty")
    with pytest.raises(LabError, match="FUMIDAI_LAB_WEB_COUNT: .* whole number"):
        settings.resolve_web_count(None)


def test_playbooks_get_the_generated_web_instances_after_lab_vars(tmp_path, monkeypatch):
    monkeypatch.setattr(config, "CACHE", tmp_path)
    generated = tmp_path / "web_instances.yml"
    monkeypatch.setattr(config, "WEB_INSTANCES_FILE", generated)
    monkeypatch.setattr(config, "ROOT", tmp_path.parent)
    monkeypatch.setattr(config, "LAB_VARS", tmp_path / "vars.yml")
    (tmp_path / "vars.yml").write_text("lab_web_subnets: [private-subnet-2]\n")
    monkeypatch.setattr(steps, "ansible_env", lambda: {})
    settings.write_web_instances(3)
    commands = []
    monkeypatch.setattr(steps.subprocess, "run",
                        lambda cmd, **_: commands.append(cmd) or steps.subprocess.CompletedProcess(cmd, 0))
    steps.playbook("playbooks/provision.yml")
    relative = f"@{tmp_path.name}"
    assert commands == [["ansible-playbook", "playbooks/provision.yml", "-e", f"{relative}/vars.yml",
                         "-e", f"{relative}/web_instances.yml"]]
    assert yaml.safe_load(generated.read_text())["web_instances"] == [
        {"name": f"web0{n}", "subnet": "private-subnet-2"} for n in (1, 2, 3)]


@pytest.mark.parametrize(("field", "value"), [
    ("target_group_name", "web\n    server evil 198.18.0.9:80"),
    ("health_check_path", "/healthz\n    server evil 198.18.0.9:80"),
    ("health_check_path", "/a b"),
    ("matcher", {"http_code": "200\nbackend evil"}),
])
def test_haproxy_refuses_api_strings_that_would_become_config(plan, field, value):
    alb = copy.deepcopy(plan["albs"][0])
    alb["target_groups"][0][field] = value
    with pytest.raises(LabError, match="is not a form AWS accepts"):
        render_haproxy(plan, alb)


def test_haproxy_refuses_a_target_that_is_neither_an_instance_nor_an_address(plan):
    alb = copy.deepcopy(plan["albs"][0])
    alb["target_groups"][0]["targets"][0]["id"] = "i-web01 backup"
    with pytest.raises(LabError, match="target 'i-web01 backup'"):
        render_haproxy(plan, alb)


# --------------------------------------------------------------------------- the model's rules, IPv6, login, kinds


def test_ipv6_ranges_go_to_ip6tables_only_and_never_widen(topo):
    web = next(g for g in topo["security_groups"] if g["group_id"] == "sg-web")
    web["ip_permissions"].append({"ip_protocol": "tcp", "from_port": 443, "to_port": 443,
                                  "ipv6_ranges": [{"cidr_ipv6": "2001:db8::/32"}],
                                  "ip_ranges": [{"cidr_ip": "203.0.113.0/24"}]})
    web["ip_permissions"].append({"ip_protocol": "icmpv6", "from_port": 128, "to_port": -1,
                                  "ipv6_ranges": [{"cidr_ipv6": "::/0"}]})
    plan = build_plan(topo, OFFICE)
    script = _net_script(plan, _node(plan, "web01"))
    v4 = [line for line in script.splitlines() if line.startswith("iptables ")]
    v6 = [line for line in script.splitlines() if line.startswith("ip6tables ")]
    assert any("-s 203.0.113.0/24 -p tcp --dport 443 " in line for line in v4)
    assert any("-A AWS-SG-IN -s 2001:db8::/32 -p tcp --dport 443 " in line for line in v6)
    assert any("-A AWS-SG-IN -s ::/0 -p ipv6-icmp --icmpv6-type 128 " in line for line in v6)
    assert not any(":" in line.split("--comment")[0] for line in v4 if "-A AWS-SG" in line), "no v6 range in iptables"
    # Default deny in both families, after the allows.
    assert v6.index("ip6tables -w -A AWS-SG-IN -j DROP") > max(i for i, line in enumerate(v6) if "2001:db8" in line)
    assert "ip6tables -w -A AWS-SG-OUT -j DROP" in v6 and "jump6_first INPUT AWS-SG-IN 1" in script


def test_instance_groups_come_from_the_model_instance_list_and_primary_interface(topo):
    topo["instances"][2]["security_groups"] = [{"group_id": "sg-nat"}]
    plan = build_plan(topo, OFFICE)
    assert _node(plan, "web01")["security_groups"] == ["sg-nat", "sg-web"]
    assert "-A AWS-SG-IN -s 10.0.12.0/24 -m comment" in _net_script(plan, _node(plan, "web01"))


def test_login_user_follows_each_instance_image_and_is_created_when_missing(topo):
    topo["images"] = [{"image_id": "ami-al2023", "owner_id": "137112412989",
                       "name": "al2023-ami-2023.9.20251014.0-kernel-6.1-x86_64", "platform_details": "Linux/UNIX"}]
    topo["instances"][2]["image_id"] = "ami-al2023"
    plan = build_plan(topo, OFFICE)
    assert _node(plan, "web01")["login_user"] == "ec2-user"
    assert _node(plan, "web02")["login_user"] == "admin", "an image the mapping does not know: the default OS's user"
    script = _net_script(plan, _node(plan, "web01"))
    assert "if ! getent passwd ec2-user >/dev/null; then\n  useradd --create-home --shell /bin/bash ec2-user" in script
    assert "echo 'ec2-user ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/90-fumidai-lab-ec2-user" in script
    assert 'install -d -m 0700 -o ec2-user -g ec2-user "$home/.ssh"' in script
    topo["ami_os"] = "al2023"
    assert _node(build_plan(topo, OFFICE), "web02")["login_user"] == "ec2-user", "the lab's ami_os is the default"


def test_every_kind_in_a_plan_has_one_table_entry_with_files_and_container_settings(plan, tmp_path):
    from lab.render import internet

    for node in [*plan["nodes"], internet.node(plan)]:
        kind = KINDS[node["kind"]]
        files = kind.files(plan, node)
        assert files, node["kind"]
        args = kind.run_args(plan, node, tmp_path)
        assert config.IMAGE in args, node["kind"]
        assert ("net.sh" in files) == bool(kind.apply_net), node["kind"]


def test_values_with_line_breaks_never_reach_a_generated_file(plan):
    plan["key_pairs"]["fumidai"]["PublicKey"] = "ssh-ed25519 AAAA\nrm -rf /"
    with pytest.raises(LabError, match="line break"):
        _net_script(plan, _node(plan, "web01"))


def test_playbooks_get_the_image_os_the_lab_was_provisioned_with(tmp_path, monkeypatch):
    monkeypatch.setattr(config, "CACHE", tmp_path)
    monkeypatch.setattr(config, "WEB_INSTANCES_FILE", tmp_path / "web_instances.yml")
    monkeypatch.setattr(config, "ROOT", tmp_path.parent)
    monkeypatch.setattr(config, "LAB_VARS", tmp_path / "vars.yml")
    monkeypatch.setattr(steps, "ansible_env", lambda: {})
    commands = []
    monkeypatch.setattr(steps.subprocess, "run",
                        lambda cmd, **_: commands.append(cmd) or steps.subprocess.CompletedProcess(cmd, 0))
    settings.write_ami_os(settings.resolve_ami_os("al2023"))
    steps.playbook("site.yml")
    assert commands[-1][-2:] == ["-e", "ami_os=al2023"]
    with pytest.raises(LabError, match="not an OS name"):
        settings.resolve_ami_os("al2023 -e x=1")
    settings.write_ami_os(None)
    steps.playbook("site.yml")
    assert "ami_os=al2023" not in commands[-1]


def test_the_fanout_bench_hosts_are_a_kind_of_their_own_with_checked_sshd_settings(tmp_path):
    from lab.hosts import container_args, write_node_files
    from lab.render import sshd_host

    node = sshd_host.node("bastion", "fumidai-bench-bastion-x", "10.88.220.10", "admin", "ssh-ed25519 AAAAk bench",
                          ("MaxStartups=10:30:100", "AllowTcpForwarding=yes"), "VERBOSE")
    files_dir = write_node_files({}, node, base=tmp_path)
    script = (files_dir / "sshd-host.sh").read_text()
    assert "echo 'ssh-ed25519 AAAAk bench' > \"$home/.ssh/authorized_keys\"" in script
    assert script.rstrip().endswith("-o LogLevel=VERBOSE -o MaxStartups=10:30:100 -o AllowTcpForwarding=yes")
    args = container_args({}, node, files_dir)
    assert args[:2] == ["--network", "podman:ip=10.88.220.10"], "a plain container, as the bench always had"
    with pytest.raises(LabError, match="refusing sshd settings"):
        KINDS["sshd_host"].files({}, {**node, "sshd_options": ["MaxStartups=1 -o PermitRootLogin=yes"]})
