"""The end of site.yml: playbooks/alb_ready.yml (roles/aws_alb_ready) against a moto server that reports the
target health a lab's ALB sees.

One stack per module: a moto server started with a lab directory (as the lab starts it), provisioned once by a
run that ends with the wait, as site.yml does. A stand-in lab publishes each instance's console (provisioning
pins host keys from it) and serves the ALB's HAProxy stats socket (tests/fake_haproxy.py: real HAProxy 2.6
``show stat`` rows), so each test sets the health the load balancer sees and runs the wait alone, with short
timeouts. The site check requests a stand-in ALB on 127.0.0.1: the DNS names moto makes up are never requested.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import boto3
import pytest

from lab import moto_local, moto_server
from tests.support.fake_haproxy import FakeStatsSocket
from tests.support.playbook import ROOT, run_playbook

REGION = "ap-northeast-1"
ADMIN_CIDR = "192.168.250.0/24"
WEB = ("web01", "web02")
ALB_READY = "playbooks/alb_ready.yml"
FAST = ("-e", "aws_alb_ready_poll_interval=1")


class ConsolePublisher:
    """What the lab does for the local API: each instance's console, as cloud-init prints it, once it exists."""

    def __init__(self, ec2, console_dir: Path):
        self.ec2, self.console_dir = ec2, console_dir
        self.console_dir.mkdir(parents=True, exist_ok=True)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            reservations = self.ec2.describe_instances()["Reservations"]
            for instance in (i for r in reservations for i in r["Instances"]):
                path = self.console_dir / instance["InstanceId"]
                if not path.exists():
                    path.write_text(moto_server.synthetic_console(instance["InstanceId"]))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """A lab-dir moto server, provisioned by provision.yml + alb_ready.yml in one run (as site.yml runs them)."""
    tmp = tmp_path_factory.mktemp("alb_ready")
    lab_dir = tmp / "lab"
    port = moto_local.free_port()
    endpoint = f"http://127.0.0.1:{port}"
    proc = moto_local.spawn(port, tmp / "server.log", lab_dir=lab_dir)
    try:
        moto_local.wait_until_up(endpoint)
        session = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION)
        ec2, elbv2 = (session.client(name, endpoint_url=endpoint) for name in ("ec2", "elbv2"))
        (tmp / "hosts").write_text(
            f"localhost ansible_connection=local ansible_python_interpreter={sys.executable}\n")
        (tmp / "group_vars").symlink_to(ROOT / "inventory" / "group_vars")
        key = tmp / "id_ed25519"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
        # The json callback: every task's result, so the tests read the messages exactly as the role built them.
        env = {**moto_local.environment(endpoint), "FUMIDAI_OUTPUTS_FILE": str(tmp / "outputs.yml"),
               "FUMIDAI_KNOWN_HOSTS": str(tmp / "known_hosts"), "ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.json"}
        args = ["-i", str(tmp / "hosts"),
                "-e", json.dumps({"admin_cidrs": [ADMIN_CIDR], "ssh_public_key_path": f"{key}.pub"})]
        # site.yml without configure (no hosts to configure here): the wait sees provisioning's facts.
        both = tmp / "provision_then_wait.yml"
        both.write_text(f"---\n- import_playbook: {ROOT}/playbooks/provision.yml\n"
                        f"- import_playbook: {ROOT}/{ALB_READY}\n")
        publisher = ConsolePublisher(ec2, lab_dir / "console")
        try:
            provisioned = run_playbook(str(both), *args, env=env)
        finally:
            publisher.stop()
        assert provisioned.returncode == 0, provisioned.stdout[-6000:] + provisioned.stderr[-3000:]
        group = elbv2.describe_target_groups(Names=["fumidai-web"])["TargetGroups"][0]["TargetGroupArn"]
        reservations = ec2.describe_instances(Filters=[{"Name": "tag:Role", "Values": ["web"]},
                                                       {"Name": "instance-state-name", "Values": ["running"]}])
        ids = {next(t["Value"] for t in i["Tags"] if t["Key"] == "Name"): i["InstanceId"]
               for r in reservations["Reservations"] for i in r["Instances"]}
        assert sorted(ids) == list(WEB)
        haproxy = FakeStatsSocket(lab_dir / "alb" / "fumidai-alb" / "stats.sock", "fumidai-web")
        try:
            yield {"env": env, "args": args, "ids": ids, "elbv2": elbv2, "ec2": ec2, "group": group,
                   "haproxy": haproxy, "provisioned": provisioned}
        finally:
            haproxy.close()
    finally:
        moto_local.stop_pid(proc.pid)


def wait(stack, *extra: str):
    """Run the wait alone (playbooks/alb_ready.yml); return the process and how long it took."""
    started = time.monotonic()
    proc = run_playbook(ALB_READY, *stack["args"], *extra, env=stack["env"])
    return proc, time.monotonic() - started


def results(proc) -> dict[str, dict]:
    """Each task's result for localhost, by task name without the role prefix (the json callback's report)."""
    report = json.loads(proc.stdout)
    return {task["task"]["name"].split(" : ", 1)[-1]: task["hosts"].get("localhost", {})
            for play in report["plays"] for task in play["tasks"]}


def message(proc, task: str) -> str:
    result = results(proc)[task]
    assert "msg" in result and not result.get("skipped"), f"{task}: {result}"
    return result["msg"]


def failure(proc) -> str:
    """The message of the task that stopped the run."""
    assert proc.returncode == 2, f"expected a failed task (2), got {proc.returncode}:\n{proc.stdout[-4000:]}"
    failed = [r for r in results(proc).values() if r.get("failed")]
    return failed[-1]["msg"]


def set_health(stack, **states: str) -> None:
    """What the lab ALB's HAProxy reports per web host (keys of fake_haproxy.SERVER_ROWS)."""
    stack["haproxy"].set({stack["ids"][name]: state for name, state in states.items()})


# --- the wait in the provisioning run (site.yml's order) ---------------------------------------------

HEALTHY = "Every web host is healthy behind the ALB"
WAIT = "Wait until every target is healthy, giving up after seconds {}"
SKIPPED = "Skip the site check on a local AWS API without an address for its ALB"
SITE_OK = "Every web host answers through the ALB"


def test_wait_at_the_end_of_provisioning_uses_its_facts(stack):
    done = results(stack["provisioned"])
    assert done[HEALTHY]["msg"] == "Target group fumidai-web: 2 target(s), all healthy (web01, web02)."
    # provisioning's aws_instances_web was used: the web servers were not looked up again
    assert done["Find this stack's running web servers"].get("skipped") is True
    # a local API and no aws_alb_ready_url: no request to the DNS name moto made up
    assert done[SKIPPED]["msg"].startswith("Site check through the ALB skipped: AWS calls go to a custom endpoint")
    assert done["Request the site until each web host's page has answered"].get("skipped") is True
    assert done[SITE_OK].get("skipped") is True


# --- target health -----------------------------------------------------------------------------

def test_all_healthy_passes_at_once(stack):
    set_health(stack, web01="up", web02="up")
    asked = stack["haproxy"].requests
    proc, _ = wait(stack, *FAST)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    done = results(proc)
    assert done[HEALTHY]["msg"] == "Target group fumidai-web: 2 target(s), all healthy (web01, web02)."
    # computed: interval 30 s x (healthy threshold 5 + 1) + check timeout 5 s + margin 120 s
    assert done[WAIT.format(305)]["attempts"] == 1
    assert done["Find this stack's running web servers"].get("skipped") is not True  # alone: looked up
    assert stack["haproxy"].requests > asked  # moto asked the lab ALB
    assert done[SKIPPED]["msg"].startswith("Site check through the ALB skipped")


@pytest.mark.parametrize(("state", "reason"), [
    ("down_500", "Target.ResponseCodeMismatch: Health checks failed with these codes: [500]"),
    ("down_l4con", "Target.FailedHealthChecks: Health checks failed"),
])
def test_an_unhealthy_target_fails_after_the_timeout_naming_it(stack, state, reason):
    set_health(stack, web01="up", web02=state)
    asked = stack["haproxy"].requests
    proc, took = wait(stack, "-e", "aws_alb_ready_timeout=3", *FAST)
    web02 = stack["ids"]["web02"]
    assert failure(proc) == (
        "After 3 s (aws_alb_ready_timeout), the ALB still does not send requests to every web host.\n"
        "Target group fumidai-web reports:\n"
        f"- web02 ({web02}): unhealthy, {reason}\n"
        "Ask the doctor why, hop by hop:\n"
        "  ansible-playbook fumidai.vpc.doctor -e target=web02 -e path=http")
    # the first read, then 1 + 3 attempts (3 s at 1 s intervals): each asks the lab ALB at least once
    assert stack["haproxy"].requests >= asked + 5
    assert took >= 3


def test_an_initial_target_that_turns_healthy_mid_wait_passes(stack):
    set_health(stack, web01="initial", web02="up")
    # The first read and at least the wait's first attempt see web01 initial (moto asks the lab ALB at
    # least once per DescribeTargetHealth, today once per target); later attempts see it healthy.
    stack["haproxy"].set_after(4, {stack["ids"]["web01"]: "up", stack["ids"]["web02"]: "up"})
    proc, took = wait(stack, "-e", "aws_alb_ready_timeout=60", *FAST)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    done = results(proc)
    assert done[WAIT.format(60)]["attempts"] > 1, "the wait should have seen web01 initial first"
    assert done[HEALTHY]["msg"] == "Target group fumidai-web: 2 target(s), all healthy (web01, web02)."
    assert took < 60


def test_an_unregistered_web_host_fails_at_once(stack):
    set_health(stack, web01="up", web02="up")
    web02 = stack["ids"]["web02"]
    stack["elbv2"].deregister_targets(TargetGroupArn=stack["group"], Targets=[{"Id": web02, "Port": 80}])
    try:
        proc, _ = wait(stack, *FAST)
    finally:
        stack["elbv2"].register_targets(TargetGroupArn=stack["group"], Targets=[{"Id": web02, "Port": 80}])
    assert failure(proc) == (
        f"web02 ({web02}) is not registered in target group fumidai-web, so the ALB sends it no requests. "
        "Provisioning registers every web server: re-run ansible-playbook fumidai.vpc.provision.")
    assert WAIT.format(305) not in results(proc)


def test_a_target_group_that_is_not_this_stacks_is_refused(stack):
    vpc = stack["ec2"].describe_vpcs(Filters=[{"Name": "tag:Project", "Values": ["fumidai"]}])["Vpcs"][0]["VpcId"]
    stack["elbv2"].create_target_group(Name="someone-elses", Protocol="HTTP", Port=80, VpcId=vpc,
                                       Tags=[{"Key": "Project", "Value": "other"}])
    proc, _ = wait(stack, "-e", "aws_alb_ready_target_group_name=someone-elses")
    assert failure(proc).startswith("The target group someone-elses does not carry the tag Project=fumidai: "
                                    "it is not this stack's")
    proc, _ = wait(stack, "-e", "aws_alb_ready_target_group_name=nothing-here")
    assert failure(proc).startswith(f"There is no target group nothing-here in {REGION}: provision first")


@pytest.mark.parametrize(("setting", "problem"), [
    ("aws_alb_ready_url=ftp://example.com/", 'aws_alb_ready_url: "ftp://example.com/" is not an http:// or https://'
                                             " address"),
    ("aws_alb_ready_poll_interval=0", "aws_alb_ready_poll_interval: at least 1 (seconds)"),
])
def test_bad_settings_stop_before_any_aws_call(stack, setting, problem):
    proc, _ = wait(stack, "-e", setting)
    assert failure(proc) == problem
    assert "Read the target group and its targets' health" not in results(proc)


# --- the site through the ALB ----------------------------------------------------------------------

PAGE = ('<!DOCTYPE html>\n<html lang="en">\n<head>\n  <meta charset="utf-8">\n  <title>fumidai: {name}</title>\n'
        '</head>\n<body>\n  <h1>fumidai web tier</h1>\n  <p>Served by <strong id="served-by">{name}</strong>'
        ' (hostname {name}).</p>\n</body>\n</html>\n')


class StandInAlb:
    """An HTTP server on 127.0.0.1 answering like the ALB would: a script of (status, served-by) answers, repeated."""

    def __init__(self, answers: list[tuple[int, str]]):
        self.answers, self.requests = answers, 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's name
                status, name = outer.answers[outer.requests % len(outer.answers)]
                outer.requests += 1
                body = PAGE.format(name=name).encode() if status == 200 else b"<html>503</html>"
                self.send_response(status)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_site_check_passes_when_every_web_host_answers(stack):
    set_health(stack, web01="up", web02="up")
    alb = StandInAlb([(503, ""), (200, "web01"), (200, "web02")])
    try:
        proc, _ = wait(stack, "-e", f"aws_alb_ready_url={alb.url}", "-e", "aws_alb_ready_url_retry_delay=0", *FAST)
    finally:
        alb.close()
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert re.fullmatch(r"The site answers through the ALB from every web host: 3 request\(s\) in [\d.]+s: "
                        r"web01 x1, web02 x1; no page: HTTP 503 x1\.", message(proc, SITE_OK))
    assert alb.requests == 3  # it stopped as soon as both had answered


def test_site_check_names_the_web_host_never_seen_and_escapes_what_pages_say(stack):
    set_health(stack, web01="up", web02="up")
    hostile = "web02\n\x1b[31m{{ lookup('pipe', 'id') }}"  # shown escaped, never counted as web02
    alb = StandInAlb([(200, "web01"), (200, hostile)])
    try:
        proc, _ = wait(stack, "-e", f"aws_alb_ready_url={alb.url}", "-e", "aws_alb_ready_url_requests_per_host=3",
                       *FAST)
    finally:
        alb.close()
    assert alb.requests == 6  # 3 per web host, then it gave up
    assert re.fullmatch(
        rf"web02 never answered through the ALB at {re.escape(alb.url)}, although the target group reports it"
        r" healthy \(6 request\(s\) in [\d.]+s: web01 x3; other pages: "
        + re.escape("\"web02\\n\\x1b[31m\\x7b{ lookup('pipe', 'id') }}\" x3; ")
        + r"limits: aws_alb_ready_url_requests_per_host, aws_alb_ready_url_timeout\). Ask the doctor: "
        r"ansible-playbook fumidai.vpc.doctor -e target=web02 -e path=http", failure(proc))
    assert "\x1b" not in proc.stdout and "\\u001b" not in proc.stdout  # not even in the module's own result
