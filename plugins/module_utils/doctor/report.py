"""The doctor's report of one walk: the verdict as a dict (the module's result, the JSON report) and as lines."""

from __future__ import annotations

from ansible_collections.fumidai.vpc.plugins.module_utils.doctor.hops import BLOCKED, DEGRADED, Walk
from ansible_collections.fumidai.vpc.plugins.module_utils.vpc_model import label, tags_dict


def report(result: Walk, origin: str) -> dict:
    """``origin``: where the path starts, in words (the registry's entry says it for each path)."""
    blocked = [h for h in result.hops if h["status"] == BLOCKED]
    degraded = [h for h in result.hops if h["status"] == DEGRADED]
    who = label(result.target)
    if blocked:
        first = blocked[0]
        summary = f"{result.path} path to {who} ({origin}) is BLOCKED at '{first['hop']}': {first['detail']}"
    elif degraded:
        summary = (f"{result.path} path to {who} ({origin}): every hop passes, DEGRADED at '{degraded[0]['hop']}': "
                   f"{degraded[0]['detail']}")
    else:
        summary = f"{result.path} path to {who} ({origin}): every hop passes"
    return {"path": result.path, "target": result.target["instance_id"], "target_name": tags_dict(result.target)
            .get("Name"), "vpc_id": result.target.get("vpc_id"), "blocked": bool(blocked), "summary": summary,
            "degraded": bool(degraded),
            "hops": result.hops, "lines": [f"{result.path} path to {who}, from {origin}, hop by hop:"]
            + render(result.hops, summary)}


def render(hops: list[dict], summary: str) -> list[str]:
    lines = []
    for number, hop in enumerate(hops, 1):
        lines.append(f"{number:>2}. [{hop['status']}] {hop['hop']}: {hop['detail']}")
        if hop["fix"]:
            lines.append(f"      fix: {hop['fix']}")
    lines.append(summary)
    return lines
