"""Faults the lab survives (issue 6): what breaks in a real VPC, and what must still hold.

Each test restores the lab as it found it, so later tests see the configured lab.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import uuid

from tests.lab.lab_helpers import ROOT, egress_source, served_by, server_status, wait_for

ANSIBLE_PLAYBOOK = str(ROOT / ".venv" / "bin" / "ansible-playbook")


def podman(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["podman", *args], capture_output=True, text=True, timeout=180, check=True)


def units_active(lab, name: str, *units: str) -> bool:
    proc = lab.host(name).run("systemctl is-active " + " ".join(units))
    return proc.stdout.split() == ["active"] * len(units)


def recap(output: str) -> dict[str, dict[str, int]]:
    text = output[output.rindex("PLAY RECAP"):]
    return {host: {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", rest)}
            for host, rest in re.findall(r"^(\S+)\s+:\s+(.*)$", text, re.M)}


def write_playbook(tmp_path, text: str):
    path = tmp_path / "playbook.yml"
    path.write_text(text)
    return path


# --- 1. the NAT instance restarts ------------------------------------------------------------


def test_nat_instance_restart_restores_rules_sysctls_and_egress_without_ansible(lab):
    nat = lab.by_role("nat")[0]
    behind = next(n for n in lab.by_role("web") if n["default_via"] == nat["ip"])
    assert egress_source(lab.host(behind["name"]), lab.internet_url) == nat["ip"], "egress works before"
    podman("restart", "-t", "20", nat["container"])
    assert wait_for(lambda: units_active(lab, nat["name"], "fumidai-lab-net.service", "fumidai-nat-rules.service"),
                    timeout=120), "the NAT instance's boot units never came up"
    host = lab.host(nat["name"])
    # podman starts the container with ip_forward=0 (as the AMI does): 1 now is the role's sysctl file at boot.
    assert host.run("sysctl -n net.ipv4.ip_forward").stdout.strip() == "1"
    sysctl_file = host.file("/etc/sysctl.d/60-fumidai-nat-instance.conf")
    assert sysctl_file.exists
    for line in sysctl_file.content_string.splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            key, value = (part.strip() for part in line.split("=", 1))
            assert host.run(f"sysctl -n {shlex.quote(key)}").stdout.strip() == value, f"{key} after the restart"
    # The role's own check: the live chains are exactly what its rules file declares.
    check = host.run("/usr/local/sbin/fumidai-nat-rules check")
    assert check.rc == 0, check.stdout + check.stderr
    rules = host.run("iptables-save").stdout
    assert "-A FORWARD -j FUMIDAI-NAT-FWD" in rules
    assert "-A POSTROUTING -j FUMIDAI-NAT-POST" in rules
    # What AWS enforces came back too, hooked before the role's chains in AWS's order (the subnet's ACL at its
    # edge, the source/dest check, the security groups); the check is off (no DROP).
    forward = [line for line in rules.splitlines() if line.startswith("-A FORWARD ")]
    assert forward == ["-A FORWARD -j AWS-NACL-IN", "-A FORWARD -j AWS-NACL-OUT", "-A FORWARD -j AWS-SRC-DST-CHECK",
                       "-A FORWARD -j AWS-SG-IN", "-A FORWARD -j AWS-SG-OUT", "-A FORWARD -j FUMIDAI-NAT-FWD"], forward
    assert "-A AWS-SRC-DST-CHECK -j DROP" not in rules
    assert wait_for(lambda: egress_source(lab.host(behind["name"]), lab.internet_url) == nat["ip"], timeout=60), \
        f"{behind['name']}'s egress did not resume through the restarted NAT instance"
    log = (ROOT / ".cache" / "lab" / "nodes" / "internet" / "requests.log").read_text().splitlines()
    assert log[-1].split()[1] == nat["ip"], "the lab internet saw the NAT instance's address"
    # Nobody logged in since the restart: no Ansible run put this back.
    assert "Accepted publickey" not in host.run("journalctl -b -u ssh --no-pager -o cat").stdout


# --- 2. a web host is down ---------------------------------------------------------------------

PING_WEB = """\
- name: Fault test - every web host answers
  hosts: web
  gather_facts: false
  tasks:
    - name: Reach the host through the bastion
      ansible.builtin.ping:
    - name: Read its hostname
      ansible.builtin.command: hostname
      changed_when: false
"""


def _alb_names(lab, requests: int = 8) -> set[str]:
    return set(served_by(lab, requests))


def _haproxy_status(lab, node: dict) -> str:
    return server_status(lab, node)


def test_web_host_down_alb_serves_the_other_and_ansible_finishes_the_rest(lab, tmp_path):
    web01, web02 = lab.node("web01"), lab.node("web02")
    podman("stop", "-t", "20", web01["container"])
    try:
        assert _alb_names(lab) == {"web02"}, "the ALB keeps serving from the host that is up"
        playbook = write_playbook(tmp_path, PING_WEB)
        proc = subprocess.run([ANSIBLE_PLAYBOOK, str(playbook), "-e", "@lab/vars.yml"], cwd=ROOT, env=lab.env,
                              capture_output=True, text=True, timeout=600)
        # 4: some host was unreachable (and none failed otherwise).
        assert proc.returncode == 4, proc.stdout[-4000:] + proc.stderr[-2000:]
        assert re.search(r"^fatal: \[web01\]: UNREACHABLE!", proc.stdout, re.M), proc.stdout[-4000:]
        hosts = recap(proc.stdout)
        assert hosts["web01"]["unreachable"] == 1, hosts
        assert hosts["web02"] == {**hosts["web02"], "ok": 2, "failed": 0, "unreachable": 0}, hosts
        assert re.search(r"^ok: \[web02\]", proc.stdout.split("TASK [Read its hostname]")[1], re.M), \
            "the play went on with web02 after web01 was unreachable"
        assert units_active(lab, "web02", "apache2.service")
    finally:
        podman("start", web01["container"])
    assert wait_for(lambda: units_active(lab, "web01", "fumidai-lab-net.service", "ssh.service", "apache2.service"),
                    timeout=120), "web01 did not come back with its services"
    assert wait_for(lambda: _haproxy_status(lab, web01) == "UP", timeout=90), "the ALB never saw web01 healthy"
    # Both serve again within a health check interval (once, a run saw only web01 for the first 8 requests).
    assert wait_for(lambda: _alb_names(lab) == {"web01", "web02"}, timeout=30), \
        f"the ALB does not serve both again: web01 {_haproxy_status(lab, web01)}, web02 {_haproxy_status(lab, web02)}"
    assert _haproxy_status(lab, web02) == "UP"


# --- 3. the bastion's sshd restarts in the middle of a run ------------------------------------

RESTART_DURING_RUN = """\
- name: Fault test - a run across a bastion sshd restart
  hosts: private
  gather_facts: false
  vars:
    marker_dir: /tmp/fumidai-fault-{run_id}
  tasks:
    - name: Write the first half
      ansible.builtin.copy:
        dest: "{{{{ marker_dir }}}}-first"
        content: "{{{{ inventory_hostname }}}}\\n"
        mode: "0644"
    - name: Wait while the bastion's sshd restarts
      ansible.builtin.pause:
        seconds: 10
    - name: Write the second half
      ansible.builtin.copy:
        dest: "{{{{ marker_dir }}}}-second"
        content: "{{{{ inventory_hostname }}}}\\n"
        mode: "0644"
    - name: Read both halves back
      ansible.builtin.command: cat {{{{ marker_dir }}}}-first {{{{ marker_dir }}}}-second
      changed_when: false
      register: halves
    - name: Both halves are there
      ansible.builtin.assert:
        that: halves.stdout_lines == [inventory_hostname, inventory_hostname]
"""


def _hop_control_path(lab) -> str:
    inventory = subprocess.run([str(ROOT / ".venv" / "bin" / "ansible-inventory"), "--host", "web01"],
                               cwd=ROOT, env=lab.env, capture_output=True, text=True, timeout=120, check=True)
    found = re.search(r"--control-path[ =]'?([^' \"]+)", inventory.stdout)
    assert found, inventory.stdout
    return found.group(1).replace("%%", "%")


def test_bastion_sshd_restart_during_a_run_completes_with_nothing_half_applied(lab, tmp_path):
    bastion = lab.by_role("bastion")[0]
    private = [n for n in lab.by_kind("instance") if n["default_via"] != lab.state["igw_ip"]]
    run_id = uuid.uuid4().hex[:8]
    playbook = write_playbook(tmp_path, RESTART_DURING_RUN.format(run_id=run_id))
    control_path = _hop_control_path(lab)
    sshd_pid = lab.host(bastion["name"]).run("systemctl show -p MainPID --value ssh").stdout.strip()
    proc = subprocess.Popen([ANSIBLE_PLAYBOOK, str(playbook), "-e", "@lab/vars.yml"], cwd=ROOT, env=lab.env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = []
    restarted = False
    try:
        for line in proc.stdout:
            output.append(line)
            if not restarted and line.startswith("TASK [Wait while the bastion's sshd restarts]"):
                restart = lab.host(bastion["name"]).run("systemctl restart ssh")
                assert restart.rc == 0, restart.stderr
                # A restart leaves running sessions alone; a crash or reboot would not: drop the shared
                # master too, so the second half must log in again through the restarted sshd.
                subprocess.run(["ssh", "-o", f"ControlPath={control_path}", "-O", "exit",
                                f"admin@{bastion['ip']}"], capture_output=True, timeout=30)
                restarted = True
        proc.wait(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = "".join(output)
    assert restarted, f"the run never reached the pause:\n{text[-4000:]}"
    assert lab.host(bastion["name"]).run("systemctl show -p MainPID --value ssh").stdout.strip() != sshd_pid
    assert proc.returncode == 0, text[-6000:]
    hosts = recap(text)
    assert {n["name"] for n in private} <= set(hosts), hosts
    for node in private:
        assert hosts[node["name"]]["failed"] == 0 and hosts[node["name"]]["unreachable"] == 0, hosts
        assert hosts[node["name"]]["changed"] == 2, f"{node['name']}: both halves written once: {hosts}"
        host = lab.host(node["name"])
        for half in ("first", "second"):
            marker = host.file(f"/tmp/fumidai-fault-{run_id}-{half}")
            assert marker.exists and marker.content_string == f"{node['name']}\n"
        host.run(f"rm -f /tmp/fumidai-fault-{run_id}-first /tmp/fumidai-fault-{run_id}-second")
    # The hop's master is back (opened again by the wrapper), through the restarted sshd.
    journal = lab.host(bastion["name"]).run("journalctl -u ssh --no-pager -o cat").stdout
    after_restart = journal[journal.rfind("Server listening"):]
    assert "Accepted publickey" in after_restart, journal[-3000:]
