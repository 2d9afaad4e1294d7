"""Shared by the scenario's checks: the hosts (testinfra's podman backend), the balancers' floating
address, tokens made on the fleet, and running the bundle's own playbooks against the scenario."""

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
from playbooks import inventory_hosts, run_playbook, wait_until  # noqa: E402,F401 (the tests import them from here)
ROOT = Path(__file__).resolve().parents[3]
SCENARIO = Path(__file__).resolve().parents[1]
# The balancers' floating address (group_vars/all.yml): the load goes where clients go.
VIP = yaml.safe_load((SCENARIO / "group_vars" / "all.yml").read_text())["keepalived_virtual_ipaddress"]
LB = f"http://{VIP}"
# What the rolling upgrades (test_6_rollout) and the kills (test_7_failover) measured, for
# bench/fleet_bench.py and bench/ha_bench.py: in BKLOG_BENCH_DIR (the benches set it), else beside
# the playbook logs.
BENCH_DIR = Path(os.environ.get("BKLOG_BENCH_DIR") or os.environ.get("BKLOG_MOLECULE_LOG_DIR") or "/tmp")
ROLLOUTS = BENCH_DIR / "bklog-ha-rollouts.jsonl"
FIGURES = BENCH_DIR / "bklog-ha-figures.json"

group = inventory_hosts


def host(name: str):
    return testinfra.get_host(f"podman://{name}")

def consul(path: str):
    """The catalog as the first Consul server sees it."""
    return json.loads(host(group("bklog_consul_servers")[0]).check_output("curl -sS http://127.0.0.1:8500%s", path))


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
