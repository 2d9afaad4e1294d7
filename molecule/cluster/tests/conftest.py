"""Shared by the cluster checks: the hosts (testinfra's podman backend), the balancer's address,
tokens made on the fleet, and running the bundle's own playbooks against the scenario."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import testinfra
import yaml

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "shared"))
from playbooks import run_playbook  # noqa: E402
ROOT = Path(__file__).resolve().parents[3]
LB = "http://127.0.0.1:18080"


def inventory() -> dict:
    return yaml.safe_load(Path(os.environ["MOLECULE_INVENTORY_FILE"]).read_text())


def group(name: str) -> list[str]:
    return sorted(inventory()[name]["hosts"])


def host(name: str):
    return testinfra.get_host(f"podman://{name}")


def wait_until(predicate, what: str, timeout: float = 90, every: float = 1):
    deadline = time.time() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.time() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


def consul(path: str):
    """The catalog as the Consul server on the infra host sees it."""
    return json.loads(host(group("bklog_lb")[0]).check_output("curl -sS http://127.0.0.1:8500%s", path))


def playbook(name: str, *extra: str, timeout: int = 1800) -> subprocess.CompletedProcess:
    return run_playbook(name, *extra, timeout=timeout)


def running_versions() -> dict[str, str]:
    return {h: host(h).check_output("cat /opt/bklog/current/.complete") for h in group("bklog")}


@pytest.fixture(scope="session")
def admin_token() -> str:
    api = host(group("bklog_api")[0])
    name = f"verify-{int(time.time())}"
    return api.check_output(f"/usr/local/bin/bklog create_api_token {name}").splitlines()[-1]


@pytest.fixture(scope="session")
def new_load(admin_token):
    """Makes a Load on a new index set (created through the balancer): one per playbook run, so
    its line count is that run's alone."""
    from load import Load

    def make() -> Load:
        client = Load(LB, "", "", admin_token)
        name = f"load-{time.time_ns()}"
        status, body = client.request("POST", "/api/v1/index_sets", json.dumps({"name": name}).encode())
        assert status == 201, body
        return Load(LB, name, json.loads(body)["ingest_token"], admin_token)

    return make
