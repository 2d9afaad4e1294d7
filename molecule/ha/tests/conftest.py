"""Shared by the scenario's checks: the hosts (testinfra's podman backend), the balancers' floating
address, tokens made on the fleet, and running the bundle's own playbooks against the scenario."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.parse
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


def alive(name: str) -> bool:
    out = subprocess.run(["podman", "inspect", "-f", "{{.State.Running}}", name], capture_output=True, text=True)
    return out.stdout.strip() == "true"


def patroni_roles() -> dict[str, str]:
    """Each live data host's role as its own Patroni says (GET /primary, /replica: 200 or not)."""
    roles = {}
    for name in group("bklog_postgresql"):
        if not alive(name):
            roles[name] = "down"
            continue
        h = host(name)
        code = lambda path: h.run(f"curl -s -o /dev/null -w '%{{http_code}}' http://127.0.0.1:8008{path}").stdout  # noqa: E731
        roles[name] = "primary" if code("/primary") == "200" else "replica" if code("/replica") == "200" else "other"
    return roles


def lead_consul(name: str) -> None:
    """Make name's Consul server the Raft leader (Consul's transfer-leader), and wait until it is."""
    servers = {s["Node"]: s for s in consul("/v1/operator/raft/configuration")["Servers"]}
    if not servers[name]["Leader"]:
        host(name).check_output("curl -sSf -X POST 'http://127.0.0.1:8500/v1/operator/raft/transfer-leader?id=%s'",
                                servers[name]["ID"])
    wait_until(lambda: any(s["Leader"] for s in consul("/v1/operator/raft/configuration")["Servers"] if s["Node"] == name),
               f"{name} the Consul leader", timeout=30, every=0.5)


def patroni_timeline(name: str) -> int:
    """The timeline name's Patroni reports (GET /patroni): every promotion starts a new one, so an
    unchanged timeline on the same primary means it was never demoted in between."""
    return json.loads(host(name).check_output("curl -sf http://127.0.0.1:8008/patroni"))["timeline"]


# The service reaches PostgreSQL through each member's PgBouncer (group_vars: postgresql_pgbouncer_enabled).
PGBOUNCER_PORT = 6432


def pgbouncer(name: str, command: str) -> list[list[str]]:
    """A SHOW command on a member's PgBouncer admin console (postgres through the socket), as rows."""
    out = host(name).check_output(f"runuser -u postgres -- psql --no-psqlrc -h /var/run/postgresql -p {PGBOUNCER_PORT} "
                                  f"-d pgbouncer -AtF '|' -c '{command}'")
    return [row.split("|") for row in out.splitlines() if row]


def pgbouncer_service_clients(name: str) -> int:
    """Clients of the service's database on a member's PgBouncer (SHOW CLIENTS: type, user, database, ...)."""
    return sum(1 for row in pgbouncer(name, "SHOW CLIENTS") if row[2] == "bklog")


# The monitoring host's Prometheus (roles/monitoring), as test_3_monitoring and the drills ask it.
def prometheus(path: str, **params) -> dict:
    query = f"?{urllib.parse.urlencode(params)}" if params else ""
    answer = json.loads(host(group("bklog_monitoring")[0]).check_output(
        "curl -sS %s", f"http://127.0.0.1:9090/api/v1/{path}{query}"))
    assert answer["status"] == "success", answer
    return answer["data"]


def values(expr: str) -> dict[str, float]:
    """{instance (and name, when the series has one): value} of an instant query."""
    return {",".join(filter(None, (r["metric"].get("instance"), r["metric"].get("name")))): float(r["value"][1])
            for r in prometheus("query", query=expr)["result"]}


def firing(alert: str) -> list[dict]:
    return [a["labels"] for a in prometheus("alerts")["alerts"]
            if a["labels"]["alertname"] == alert and a["state"] == "firing"]


def playbook(name: str, *extra: str, timeout: int = 1800) -> subprocess.CompletedProcess:
    return run_playbook(name, *extra, timeout=timeout)


def errors_at(failures: list[dict]) -> dict[str, list[str]]:
    """What the balancers' and API hosts' nginx logged as errors in the seconds requests failed in
    (the load's "at": this machine's clock, as the hosts'), and gunicorn's warnings and errors of
    those minutes: which hop failed and why, for an assertion's message."""
    seconds = sorted({f["at"] for f in failures if f.get("at")})[:5]
    if not seconds:
        return {}
    at_second = "|".join(seconds)
    at_minute = "|".join(sorted({s[:5] for s in seconds}))
    found = {}
    for name in group("bklog_lb") + group("bklog_api"):
        if not alive(name):
            continue
        command = f"grep -hE ' ({at_second}) ' /var/log/nginx/bklog.error.log /var/log/nginx/error.log"
        if name in group("bklog_api"):
            command += f"; grep -hE ' ({at_minute}):[0-9]{{2}} .*\\[(WARNING|ERROR|CRITICAL)\\]' /var/log/bklog/bklog-api.log"
        found[name] = host(name).run(command).stdout.splitlines()[-10:]
    return found


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
