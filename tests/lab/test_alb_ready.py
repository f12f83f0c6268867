"""The lab's ALB serves every web host when site.yml says it is done (issue 16), and the wait says who it does not.

This module sorts first in tests/lab, so its first test runs right after the session's bring-up (the lab
fixture: provision, hosts, site.yml, ssh-config): a visitor curling the ALB at that moment must get every web
host within the first few requests, with no 503 in between. Then one web host's Apache is stopped: the wait at
the end of site.yml (playbooks/alb_ready.yml, run here alone through the lab's own environment) fails naming
it, with the reason the lab ALB's health checks give (reported by the lab's AWS API), and the doctor's http
path to it stops at "target health" with that reason; started again, both pass.
"""

from __future__ import annotations

import html
import http.client
import json
import re
import subprocess

from tests.lab.lab_helpers import ROOT, first_blocked, moto_client, run_doctor, wait_for

SERVED_BY = re.compile(r'<strong id="served-by">([^<]*)</strong>')


def alb_answer(lab) -> tuple[int, str | None]:
    """One request to the lab ALB, as a visitor makes it: the status and the page's served-by text."""
    conn = http.client.HTTPConnection(lab.alb["ip"], 80, timeout=10)
    try:
        conn.request("GET", "/")
        response = conn.getresponse()
        body = response.read().decode(errors="replace")
    finally:
        conn.close()
    match = SERVED_BY.search(body)
    return response.status, html.unescape(match.group(1)) if match else None


def run_wait(lab, *extra: str) -> tuple[subprocess.CompletedProcess, dict[str, dict]]:
    """playbooks/alb_ready.yml as the lab's own runs call playbooks, checking the site at the lab ALB's address;
    the process and each task's result by name (the json callback's report)."""
    cmd = [str(ROOT / ".venv" / "bin" / "ansible-playbook"), "playbooks/alb_ready.yml", "-e", "@lab/vars.yml",
           "-e", "@.cache/lab/web_instances.yml", "-e", f"aws_alb_ready_url=http://{lab.alb['ip']}/", *extra]
    proc = subprocess.run(cmd, cwd=ROOT, env={**lab.env, "ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.json"},
                          capture_output=True, text=True, timeout=600)
    try:
        report = json.loads(proc.stdout)
    except ValueError:
        raise AssertionError(f"no json report (exit {proc.returncode}):\n{proc.stdout[-3000:]}\n"
                             f"{proc.stderr[-3000:]}") from None
    return proc, {task["task"]["name"].split(" : ", 1)[-1]: task["hosts"].get("localhost", {})
                  for play in report["plays"] for task in play["tasks"]}


def target_state(lab, instance_id: str) -> str:
    """What the lab's AWS API (DescribeTargetHealth) says about one target."""
    group = lab.alb["target_groups"][0]["target_group_arn"]
    found = moto_client(lab.env, "elbv2").describe_target_health(
        TargetGroupArn=group, Targets=[{"Id": instance_id, "Port": 80}])["TargetHealthDescriptions"]
    return found[0]["TargetHealth"]["State"]


def health_timeout(lab, counts: str) -> float:
    """Long enough for the lab ALB to change its mind: a threshold of checks, one interval more, some slack."""
    group = lab.alb["target_groups"][0]
    return group.get("health_check_interval_seconds", 30) * (group.get(counts, 5) + 1) + 15


def test_every_web_host_answers_within_the_first_requests_after_bring_up(lab):
    web = sorted(n["name"] for n in lab.by_role("web"))
    answers = [alb_answer(lab) for _ in range(2 * len(web))]
    assert [status for status, _ in answers] == [200] * len(answers), f"the ALB right after bring-up: {answers}"
    assert sorted({name for _, name in answers}) == web, f"the ALB right after bring-up: {answers}"


def test_wait_and_doctor_name_a_web_host_whose_apache_is_stopped_and_pass_once_it_is_back(lab, tmp_path):
    node = lab.by_role("web")[0]
    name, instance_id = node["name"], node["resource_id"]
    host = lab.host(name)
    assert host.run("systemctl stop apache2").rc == 0
    try:
        assert wait_for(lambda: target_state(lab, instance_id) == "unhealthy",
                        health_timeout(lab, "unhealthy_threshold_count")), \
            f"the lab's AWS API never reported {name} unhealthy (is its moto server started with --lab-dir?)"
        failed, results = run_wait(lab, "-e", "aws_alb_ready_timeout=10", "-e", "aws_alb_ready_poll_interval=2")
        # The doctor reads the same API: the http path to that host passes every configuration hop and stops at
        # the ALB's own verdict, with the lab's reason; another web host's http path passes.
        doctor = run_doctor(lab, name, "http", tmp_path)
        other = run_doctor(lab, lab.by_role("web")[1]["name"], "http", tmp_path)
    finally:
        assert host.run("systemctl start apache2").rc == 0
    assert failed.returncode == 2, failed.stdout[-6000:] + failed.stderr[-2000:]
    # Only this web host is named: the others stay healthy behind the lab ALB.
    assert results["Fail with the targets that are not healthy and how to find out why"]["msg"] == (
        "After 10 s (aws_alb_ready_timeout), the ALB still does not send requests to every web host.\n"
        "Target group fumidai-web reports:\n"
        f"- {name} ({instance_id}): unhealthy, Target.FailedHealthChecks: Health checks failed\n"
        "Ask the doctor why, hop by hop:\n"
        f"  ansible-playbook fumidai.vpc.doctor -e target={name} -e path=http")
    assert doctor["blocked"] and first_blocked(doctor) == "target health", json.dumps(doctor["hops"], indent=1)
    assert all(h["status"] == "PASS" for h in doctor["hops"][:-1]), json.dumps(doctor["hops"], indent=1)
    health = doctor["hops"][-1]
    assert health["hop"] == "target health"
    assert "is unhealthy in target group fumidai-web (Health checks failed)" in health["detail"], health
    assert not other["blocked"], other["summary"]

    # Apache is back: the wait (its default timeout, computed from the health check) ends when the lab ALB
    # has seen enough passing checks, and the site answers from every web host again.
    passed, results = run_wait(lab)
    assert passed.returncode == 0, passed.stdout[-6000:] + passed.stderr[-2000:]
    web = sorted(n["name"] for n in lab.by_role("web"))
    assert results["Every web host is healthy behind the ALB"]["msg"] == (
        f"Target group fumidai-web: {len(web)} target(s), all healthy ({', '.join(web)}).")
    assert results["Every web host answers through the ALB"]["msg"].startswith(
        "The site answers through the ALB from every web host:")
