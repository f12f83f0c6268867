"""lab/moto_server.py: what DescribeTargetHealth reports from the lab ALB's HAProxy.

``target_health_from_haproxy`` is checked on real ``show stat`` rows of HAProxy 2.6.12 (the lab image's
version; tests/fake_haproxy.py says how each was produced), and ``serve_lab_target_health`` end to end:
moto in-process, an ALB with a target group of two instances, and a stats socket at
``<lab dir>/alb/<load balancer name>/stats.sock`` answering ``show stat``.
"""

from __future__ import annotations

import csv
import io

import pytest
from moto.elbv2.models import FakeTargetGroup

from lab import moto_server
from tests.support.aws_seed import in_process
from tests.support.fake_haproxy import HEADER, SERVER_ROWS, FakeStatsSocket, server_row, show_stat

REGION = "ap-northeast-1"


def parsed(state: str, backend: str = "fumidai-web", server: str = "i-0123456789abcdef0") -> dict:
    """A real row as csv.DictReader gives it under the real header (what haproxy_stats returns)."""
    text = HEADER.lstrip("# ") + "\n" + server_row(state, backend, server) + "\n"
    return next(csv.DictReader(io.StringIO(text)))


# --- the mapping, row by row ---------------------------------------------------------------------

@pytest.mark.parametrize(("state", "expected"), [
    ("up", ("healthy", None, None)),
    ("no_check", ("healthy", None, None)),
    # One failed check is not enough: AWS, like HAProxy, keeps routing until the unhealthy threshold.
    ("going_down", ("healthy", None, None)),
    ("initial", ("initial", "Elb.InitialHealthChecking", "Initial health checks in progress")),
    ("down_500", ("unhealthy", "Target.ResponseCodeMismatch", "Health checks failed with these codes: [500]")),
    ("down_l4con", ("unhealthy", "Target.FailedHealthChecks", "Health checks failed")),
    ("down_l7rsp", ("unhealthy", "Target.FailedHealthChecks", "Health checks failed")),
    ("down_l7tout", ("unhealthy", "Target.Timeout", "Request timed out")),
    # "* " marks a check in progress; the status shown is the last completed one.
    ("down_l7tout_checking", ("unhealthy", "Target.Timeout", "Request timed out")),
    # Passing again but below the healthy threshold: still unhealthy, as AWS keeps it until then.
    ("going_up", ("unhealthy", "Target.FailedHealthChecks", "Health checks failed (now passing: DOWN 1/3)")),
    ("drain", ("draining", "Target.DeregistrationInProgress", "Target deregistration is in progress")),
    ("maint", ("draining", "Target.DeregistrationInProgress", "Target deregistration is in progress")),
])
def test_target_health_from_a_real_haproxy_row(state, expected):
    assert moto_server.target_health_from_haproxy(parsed(state)) == expected


def test_every_captured_row_parses_under_the_real_header():
    header = HEADER.lstrip("# ").split(",")
    for state in SERVER_ROWS:
        row = parsed(state)
        assert row["pxname"] == "fumidai-web" and row["svname"] == "i-0123456789abcdef0", state
        # The row has exactly the header's columns (no shifted column would go unnoticed).
        assert len(server_row(state, "b", "s").split(",")) == len(header), state


def test_haproxy_stats_reads_show_stat_from_a_socket(tmp_path):
    servers = {"i-0000000000000e001": "up", "i-0000000000000e002": "down_l4con"}
    fake = FakeStatsSocket(tmp_path / "stats.sock", "fumidai-web", servers)
    try:
        rows = moto_server.haproxy_stats(tmp_path / "stats.sock")
    finally:
        fake.close()
    assert [(r["pxname"], r["svname"], r["status"]) for r in rows] == [
        ("listener_80", "FRONTEND", "OPEN"),
        ("fumidai-web", "i-0000000000000e001", "UP"),
        ("fumidai-web", "i-0000000000000e002", "DOWN"),
        ("fumidai-web", "BACKEND", "UP"),
    ]
    assert fake.requests == 1
    assert show_stat("fumidai-web", servers).startswith("# pxname,svname,")


# --- DescribeTargetHealth with a lab directory -----------------------------------------------------

@pytest.fixture
def lab_alb(tmp_path, monkeypatch):
    """moto in-process with the lab's target health served from tmp_path; an ALB in front of two instances."""
    # serve_lab_target_health replaces FakeTargetGroup.health_for: put the original back afterwards.
    monkeypatch.setattr(FakeTargetGroup, "health_for", FakeTargetGroup.health_for)
    with in_process(REGION) as seed:
        moto_server.serve_lab_target_health(tmp_path)
        stack = seed.project()  # the ALB fumidai-alb, its target group fumidai-web holding web01 and web02
        elbv2, group = seed.elbv2, stack.tg_arn
        ids = [stack.instances["web01"], stack.instances["web02"]]

        def health() -> dict:
            found = elbv2.describe_target_health(TargetGroupArn=group)["TargetHealthDescriptions"]
            return {d["Target"]["Id"]: (d["TargetHealth"]["State"], d["TargetHealth"].get("Reason"),
                                        d["TargetHealth"].get("Description")) for d in found}

        yield {"ids": ids, "health": health, "socket": tmp_path / "alb" / "fumidai-alb" / "stats.sock"}


def test_target_health_follows_the_lab_alb(lab_alb):
    first, second = lab_alb["ids"]
    fake = FakeStatsSocket(lab_alb["socket"], "fumidai-web", {first: "up", second: "down_500"})
    try:
        assert lab_alb["health"]() == {
            first: ("healthy", None, None),
            second: ("unhealthy", "Target.ResponseCodeMismatch", "Health checks failed with these codes: [500]"),
        }
        fake.set({first: "initial", second: "up"})
        assert lab_alb["health"]() == {
            first: ("initial", "Elb.InitialHealthChecking", "Initial health checks in progress"),
            second: ("healthy", None, None),
        }
    finally:
        fake.close()


def test_without_the_lab_alb_socket_moto_decides(lab_alb):
    """No stats socket for this load balancer: moto's own answer (healthy for a running instance)."""
    assert set(lab_alb["health"]().values()) == {("healthy", None, None)}


def test_a_lab_alb_that_does_not_answer_is_reported_unavailable(lab_alb):
    lab_alb["socket"].parent.mkdir(parents=True)
    lab_alb["socket"].touch()  # a socket file left behind by a stopped HAProxy: nothing listens
    assert set(lab_alb["health"]().values()) == {
        ("unavailable", "Elb.InternalError", "The lab's load balancer (HAProxy) does not answer")}
