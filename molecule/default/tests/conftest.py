"""Shared by the all-in-one scenario's checks: molecule/shared's helpers on the path (the tests
import them from `playbooks`), and each API host as a testinfra host."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import testinfra

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "shared"))
from playbooks import inventory_hosts  # noqa: E402


@pytest.fixture(scope="module", params=inventory_hosts("bklog_api"))
def host(request):
    """Each API host, checked through podman exec (testinfra's podman backend, one exec per check)."""
    h = testinfra.get_host(f"podman://{request.param}")
    h.name = request.param
    return h
