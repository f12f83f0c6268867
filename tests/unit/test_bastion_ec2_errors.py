"""bastion_ec2 errors: unknown or missing region, endpoint down, bad credentials, missing permission, throttling."""

from __future__ import annotations

import boto3
import pytest
from ansible.errors import AnsibleError
from moto import mock_aws
from moto.core import set_initial_no_auth_action_count

from tests.support.aws_seed import REGION
from tests.unit import inventory_helpers as helpers
from tests.unit.inventory_helpers import run_inventory

aws = helpers.aws  # the fixture: in-process moto with the project's images, an AwsSeed


def test_unknown_region_is_one_clear_error(aws, tmp_path):
    with pytest.raises(AnsibleError, match=r"unknown region 'xx-nowhere-9'"):
        run_inventory(tmp_path, regions=["xx-nowhere-9"])
    with pytest.raises(AnsibleError, match=r"unknown region 'Tokyo': not a region name"):
        run_inventory(tmp_path, regions=["Tokyo"])


def test_region_resolution(aws, tmp_path, monkeypatch):
    aws.project()
    monkeypatch.delenv("AWS_REGION")
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    with pytest.raises(AnsibleError, match="no region configured"):
        run_inventory(tmp_path)
    assert "web01" in run_inventory(tmp_path, fallback_region=REGION).hosts
    # AWS_REGION wins over the fallback (as in amazon.aws modules): an empty region, no hosts.
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    assert run_inventory(tmp_path, fallback_region=REGION).hosts == set()


def test_endpoint_down_names_the_endpoint(aws, tmp_path):
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    endpoint = f"http://127.0.0.1:{port}"
    with pytest.raises(AnsibleError) as err:
        run_inventory(tmp_path, endpoint_url=endpoint, retries=1)
    assert f"cannot reach the EC2 endpoint {endpoint} for region {REGION}" in str(err.value)


@set_initial_no_auth_action_count(0)
def test_bad_credentials_and_missing_permission(aws, tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIANOTAREALKEY00000")
    with pytest.raises(AnsibleError, match=r"bad AWS credentials for region ap-northeast-1 .*AuthFailure"):
        run_inventory(tmp_path)


def test_missing_permission_names_the_action(tmp_path, monkeypatch):
    @set_initial_no_auth_action_count(2)
    @mock_aws
    def scenario():
        iam = boto3.client("iam", region_name="us-east-1")
        iam.create_user(UserName="reader")
        key = iam.create_access_key(UserName="reader")["AccessKey"]
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", key["AccessKeyId"])
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", key["SecretAccessKey"])
        monkeypatch.setenv("AWS_REGION", REGION)
        monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
        for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_EC2", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
            monkeypatch.delenv(name, raising=False)
        with pytest.raises(AnsibleError, match=r"missing permission ec2:Describe\w+ in region ap-northeast-1"):
            run_inventory(tmp_path)

    scenario()


def _inject(monkeypatch, decide):
    """Make some EC2 calls answer with an error, the rest reach moto."""
    import boto3.session
    from botocore.awsrequest import AWSResponse

    original = boto3.session.Session.client

    def client(self, *args, **kwargs):
        made = original(self, *args, **kwargs)
        region = kwargs.get("region_name")

        def before_send(request, **_):
            code = decide(region, request)
            if code:
                body = (f"<Response><Errors><Error><Code>{code}</Code><Message>injected</Message></Error></Errors>"
                        "<RequestID>x</RequestID></Response>").encode()
                return AWSResponse(request.url, 400, {}, _Raw(body))
            return None

        made.meta.events.register_first("before-send.ec2", before_send)
        return made

    monkeypatch.setattr(boto3.session.Session, "client", client)


class _Raw:
    def __init__(self, body: bytes):
        self.body = body

    def stream(self, **_):
        yield self.body


def test_throttling_is_retried(aws, tmp_path, monkeypatch):
    aws.project()
    seen = []

    def throttle_first_two(region, request):
        body = request.body or b""
        if b"DescribeInstances" in (body if isinstance(body, bytes) else body.encode()) and len(seen) < 2:
            seen.append(1)
            return "RequestLimitExceeded"
        return None

    _inject(monkeypatch, throttle_first_two)
    result = run_inventory(tmp_path)
    assert len(seen) == 2
    assert result.hosts == {"bastion", "nat-instance", "web01", "web02"}


def test_a_failing_region_is_an_error_unless_skipped(aws, tmp_path, monkeypatch):
    aws.project()
    _inject(monkeypatch, lambda region, request: "UnauthorizedOperation" if region == "us-east-1" else None)
    with pytest.raises(AnsibleError, match=r"missing permission ec2:Describe\w+ in region us-east-1"):
        run_inventory(tmp_path, regions=[REGION, "us-east-1"])
    result = run_inventory(tmp_path, regions=[REGION, "us-east-1"], skip_failed_regions=True)
    assert result.hosts == {"bastion", "nat-instance", "web01", "web02"}
    assert len(result.warnings) == 1 and "skipping region us-east-1" in result.warnings[0]
