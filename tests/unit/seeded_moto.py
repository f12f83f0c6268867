"""The project's VPC as provisioning builds it (AwsSeed), in moto in-process: for the read tests of the doctor
and the audit."""

from __future__ import annotations

import contextlib

import boto3
from moto import mock_aws

from tests.support.aws_seed import REGION, AwsSeed, project_images


@contextlib.contextmanager
def seeded_project(monkeypatch):
    """(ec2, elbv2, Stack) with the AWS variables that would point boto3 elsewhere unset."""
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_EC2", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with project_images(), mock_aws():
        ec2 = boto3.client("ec2", region_name=REGION)
        elbv2 = boto3.client("elbv2", region_name=REGION)
        yield ec2, elbv2, AwsSeed(ec2, elbv2).project()
