"""Helpers for the doctor's unit tests: walk a path on hand-built state, find the first blocked hop."""

from __future__ import annotations

from ansible_collections.fumidai.vpc.plugins.module_utils.doctor.hops import BLOCKED
from ansible_collections.fumidai.vpc.plugins.module_utils.doctor.registry import walk

ADMIN_IP = "192.0.2.10/32"


def run(state: dict, target: str, path: str, **kwargs) -> dict:
    kwargs.setdefault("source_cidr", ADMIN_IP if path == "ssh" else None)
    return walk(state, path, target, **kwargs)


def first_blocked(report: dict) -> dict:
    blocked = [h for h in report["hops"] if h["status"] == BLOCKED]
    assert blocked, report["lines"]
    return blocked[0]


def assert_blocked_at(report: dict, hop: str, *fix_words: str, detail=()) -> dict:
    assert report["blocked"] is True
    found = first_blocked(report)
    assert found["hop"] == hop, report["lines"]
    for word in fix_words:
        assert word in found["fix"], found
    for word in detail:
        assert word in found["detail"], found
    assert f"BLOCKED at '{hop}'" in report["summary"]
    return found

