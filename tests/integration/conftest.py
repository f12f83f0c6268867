"""Integration fixtures: the one provisioned stack, and the grouping that keeps its users on one worker.

Every module is its own pytest-xdist group (`--dist loadgroup` then behaves as `--dist loadfile` did: a
module's tests on one worker), except the modules marked with tests/integration/provisioned.XDIST_GROUP,
which share one group and so one provisioning (see tests/integration/provisioned.py).
"""

from __future__ import annotations

import pytest

from tests.integration import provisioned


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items):
    """Before xdist names the groups: a module without a group of its own is one (as with loadfile)."""
    for item in items:
        if item.get_closest_marker("xdist_group") is None:
            item.add_marker(pytest.mark.xdist_group(item.module.__name__))


provisioned_stack = pytest.fixture(scope="session")(provisioned.provisioned_stack)
