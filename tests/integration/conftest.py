"""Integration fixtures: the shared provisioned stack (tests/integration/provisioned.py)."""

from __future__ import annotations

import pytest

from tests.integration import provisioned

provisioned_stack = pytest.fixture(scope="session")(provisioned.provisioned_stack)
