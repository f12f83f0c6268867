"""The harness of the IAM policy tests (tests/integration/test_iam_policies.py, test_iam_nat_standby.py): a
moto server with IAM enforcement (iam_recording_server.py, switched on through /moto-api/reset-auth once the
users exist), users holding the action projection of docs/iam/ documents, and flows run as one of them with the
calls that user made (docs/iam.md, "How it is tested")."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import boto3

from lab import moto_local
from tests.integration import iam_policy
from tests.support.playbook import ROOT, run_playbook, run_report_playbook

REGION = "ap-northeast-1"
ADMIN_CIDR = "192.168.250.0/24"
VENV_BIN = Path(sys.executable).parent
SERVER = Path(__file__).resolve().parent / "iam_recording_server.py"
AUTH_ERRORS = {"AccessDenied", "UnauthorizedOperation", "AuthFailure", "InvalidClientTokenId",
               "SignatureDoesNotMatch"}


@dataclass
class Flow:
    name: str
    user: str
    proc: subprocess.CompletedProcess
    entries: list[dict]
    report: dict | None = None
    seconds: float = 0.0

    def output(self) -> str:
        return self.proc.stdout + self.proc.stderr

    def denied(self) -> list[str]:
        return [f"{e['action']} ({e['error']}, log line {e['line']})" for e in self.entries
                if e["error"] in AUTH_ERRORS]


class IamServer:
    """The recording moto server, its IAM users and its request log."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.log = tmp / "requests.jsonl"
        self.port = moto_local.free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        with open(tmp / "server.out", "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, str(SERVER), "--request-log", str(self.log),
                 "--host", "127.0.0.1", "--port", str(self.port)],
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        self.keys: dict[str, tuple[str, str]] = {}

    def stop(self) -> None:
        moto_local.stop_pid(self.proc.pid)

    def entries(self) -> list[dict]:
        if not self.log.exists():
            return []
        lines = self.log.read_text(encoding="utf-8").splitlines()
        return [{**json.loads(line), "line": number} for number, line in enumerate(lines, 1)]

    def create_users(self, users: dict[str, tuple[str, str | None]]) -> None:
        """Before enforcement: one user per ``users`` entry ({user: (policy name, action taken out or None)}),
        holding the projection of its policy ("provision+nat-standby": both documents). The documents of
        docs/iam/ are created too (not attached), so moto's IAM validates their syntax."""
        iam = boto3.client("iam", region_name=REGION, endpoint_url=self.endpoint,
                           aws_access_key_id="testing", aws_secret_access_key="testing")
        for name in iam_policy.POLICY_FILES:
            iam.create_policy(PolicyName=f"fumidai-{name}", PolicyDocument=json.dumps(iam_policy.load_policy(name)))
        for user, (policy_name, removed) in users.items():
            document = iam_policy.load_policy(policy_name)
            if removed:
                document = iam_policy.without_action(document, removed)
            arn = iam.create_policy(PolicyName=f"{user}-actions",
                                    PolicyDocument=json.dumps(iam_policy.projection(document)))["Policy"]["Arn"]
            iam.create_user(UserName=user)
            iam.attach_user_policy(UserName=user, PolicyArn=arn)
            key = iam.create_access_key(UserName=user)["AccessKey"]
            self.keys[user] = (key["AccessKeyId"], key["SecretAccessKey"])

    def enforce(self) -> None:
        """INITIAL_NO_AUTH_ACTION_COUNT = 0 from now on: every request is authenticated and authorised."""
        # Not form-encoded (urllib's default): moto reads the count from the raw body.
        request = urllib.request.Request(f"{self.endpoint}/moto-api/reset-auth", data=b"0", method="POST",
                                         headers={"Content-Type": "text/plain"})
        with urllib.request.urlopen(request, timeout=10) as answer:
            assert json.loads(answer.read())["status"] == "ok"

    def env(self, user: str) -> dict[str, str]:
        key_id, secret = self.keys[user]
        return {**moto_local.environment(self.endpoint, REGION), "AWS_ACCESS_KEY_ID": key_id,
                "AWS_SECRET_ACCESS_KEY": secret, "ANSIBLE_INVENTORY_CACHE": "false",
                "FUMIDAI_OUTPUTS_FILE": str(self.tmp / "outputs.yml"),
                "FUMIDAI_KNOWN_HOSTS": str(self.tmp / "known_hosts")}

    def run(self, name: str, user: str, *playbook_args: str, command: list[str] | None = None,
            report: tuple[str, str] | None = None) -> Flow:
        """Run a playbook (or a command) as ``user``; keep the calls that user made meanwhile.
        ``report``: (the playbook's output variable, file name) for the doctor's and the audit's JSON."""
        before = len(self.entries())
        started = time.monotonic()
        env = self.env(user)
        result = None
        if command:
            proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600,
                                  env={**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
                                       "ANSIBLE_NOCOLOR": "1", **env})
        elif report:
            proc, result = run_report_playbook(playbook_args[0], report[0], self.tmp / report[1],
                                               *playbook_args[1:], env=env)
        else:
            proc = run_playbook(*playbook_args, env=env)
        key_id = self.keys[user][0]
        entries = [e for e in self.entries()[before:] if e["access_key"] == key_id]
        return Flow(name, user, proc, entries, result, time.monotonic() - started)



@contextlib.contextmanager
def enforcing_server(tmp: Path, users: dict[str, tuple[str, str | None]]):
    """The recording server with ``users`` created and IAM enforcement on; stopped on exit."""
    server = IamServer(tmp)
    try:
        moto_local.wait_until_up(server.endpoint)
        server.create_users(users)
        server.enforce()
        yield server
    finally:
        server.stop()


def local_controller(tmp: Path) -> tuple[tuple[str, str], Path]:
    """The playbooks' inventory (localhost, the project's group_vars) and a fresh SSH key: (-i args, key)."""
    key = tmp / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    (tmp / "hosts").write_text(f"localhost ansible_connection=local ansible_python_interpreter={sys.executable}\n")
    (tmp / "group_vars").symlink_to(ROOT / "inventory" / "group_vars")
    return ("-i", str(tmp / "hosts")), key


def keep_for_reading(tmp: Path, done: dict[str, Flow]) -> None:
    """What ran, for whoever reads a failure (and the run times in docs/iam.md): flows.json and each output."""
    (tmp / "flows.json").write_text(json.dumps(
        [{"flow": f.name, "user": f.user, "returncode": f.proc.returncode, "seconds": round(f.seconds, 1),
          "calls": len(f.entries), "refused": f.denied()} for f in done.values()], indent=1))
    for flow in done.values():
        (tmp / f"{flow.name.replace(' ', '_').replace(':', '')}.out").write_text(flow.output())


def ran_clean(flow: Flow, policy_name: str) -> str:
    """'' when the flow finished and no call was refused; else what went wrong, naming refused actions."""
    denied = flow.denied()
    if denied:
        files = " and ".join(f"docs/iam/{iam_policy.POLICY_FILES[p].name}" for p in policy_name.split("+"))
        return f"{flow.name}: refused {denied}: add these to {files} (and docs/iam.md)"
    return ""
