"""The project's VPC as provisioning builds it (AwsSeed), in moto in-process: for the read tests of the doctor
and the audit."""

from __future__ import annotations

import contextlib

from tests.support.aws_seed import in_process


@contextlib.contextmanager
def seeded_project():
    """(ec2, elbv2, Stack) with the AWS variables that would point boto3 elsewhere unset (aws_seed.in_process)."""
    with in_process() as seed:
        yield seed.ec2, seed.elbv2, seed.project()
