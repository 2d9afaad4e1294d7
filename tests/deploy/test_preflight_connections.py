"""preflight.yml's database connection budget: one connection per gunicorn worker (2 x cores where
the inventory leaves bklog_app_gunicorn_workers at 0) and per Celery pool process (app.yml's
concurrency, celery_workers_overrides per host), summed over the fleet, must fit in 80 % of
max_connections less the reserved ones. The hosts are this machine (local connection, 2 cores
here are read from its facts); nothing is installed."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def preflight(tmp_path: Path, max_connections: int | None, limit: str | None = None,
              own_database: bool = False, database_host: dict | None = None) -> tuple[int, str]:
    local = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
    cores = os.cpu_count() or 1
    inventory = {"all": {
        "vars": {"bklog_app_database_url": "postgres://bklog:pw@p1:5432/bklog", "bklog_preflight_data_tier": False,
                 "bklog_preflight_timeout": 1, "bklog_preflight_min_cpu_cores": 1, "bklog_preflight_min_memory_mb": 1},
        "children": {
            "bklog": {"children": {
                # Exactly 32 connections whatever this machine's cores: a1's 2 x cores are made up by a2.
                "bklog_api": {"hosts": {"a1": local, "a2": {**local, "bklog_app_gunicorn_workers": 10 - 2 * cores}}},
                "bklog_workers": {"hosts": {
                    "w1": {**local, "celery_workers_enabled": ["pipeline"],
                           "celery_workers_overrides": {"pipeline": {"concurrency": 10}}},
                    "w2": local,  # every program of app.yml: 4 + 4 + 4
                }},
            }},
            "bklog_postgresql": {"hosts": {} if own_database else {
                "p1": {**local, **({"postgresql_max_connections": max_connections} if max_connections else {}),
                       **(database_host or {})}}},
        }}}
    if own_database:
        inventory["all"]["vars"]["bklog_preflight_database_max_connections"] = max_connections
    (tmp_path / "hosts.yml").write_text(yaml.safe_dump(inventory))
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_ROLES_PATH": str(ROOT / "roles"),
           "ANSIBLE_NOCOLOR": "1"}
    run = subprocess.run([str(BIN / "ansible-playbook"), "-i", str(tmp_path), str(ROOT / "playbooks" / "preflight.yml"),
                          *(["--limit", limit] if limit else [])],
                         env=env, capture_output=True, text=True, timeout=600)
    return run.returncode, " ".join((run.stdout + run.stderr).split())


@pytest.mark.parametrize("max_connections, fits", [
    (50, True),    # (50 - 10) x 80 % = 32: exactly the fleet's 32
    (49, False),   # 31
    (None, True),  # the postgresql role's default (200)
])
def test_the_fleet_must_fit_in_the_database(tmp_path, max_connections, fits):
    rc, output = preflight(tmp_path, max_connections)
    assert "database connections: the fleet opens 32 (a1: " in output, output[-3000:]
    problem = re.search(r"database connections: the fleet would open 32 \(.*?\)\. Fix: put PgBouncer in front", output)
    if fits:
        assert rc == 0 and problem is None, output[-3000:]
    else:
        assert rc != 0 and problem and "w1 10" in problem.group(0) and "w2 12" in problem.group(0), output[-3000:]
        assert "preflight failed on a1" in output


def test_a_database_of_the_fleets_own_is_checked_against_the_inventorys_number(tmp_path):
    rc, output = preflight(tmp_path, 20, own_database=True)
    assert rc != 0 and "more than 80 % of the 20 PostgreSQL accepts" in output, output[-3000:]


@pytest.mark.parametrize("limit", ["a1,w1,p1", "p1"])  # p1 alone: a play with no app host at all
def test_a_limited_run_does_not_guess_the_hosts_it_did_not_ask(tmp_path, limit):
    rc, output = preflight(tmp_path, 20, limit=limit)
    assert rc == 0 and "database connections" not in output, output[-3000:]


@pytest.mark.parametrize("pgbouncer, problem", [
    # 49 refuses the fleet's 32 connections (above), not PgBouncer's pool of 20 ((49 - 10) x 80 % = 31).
    ({}, None),
    # All 32 meet on the primary's PgBouncer: 39 clients at 80 % is 31.
    ({"postgresql_pgbouncer_max_client_conn": 39}, "more than 80 % of its postgresql_pgbouncer_max_client_conn (39)"),
    ({"postgresql_pgbouncer_pool_size": 32}, "PgBouncer's pool (postgresql_pgbouncer_pool_size 32) is more than 80 %"),
])
def test_with_pgbouncer_the_fleet_fits_in_its_clients_and_its_pool_in_the_database(tmp_path, pgbouncer, problem):
    rc, output = preflight(tmp_path, 49, database_host={"postgresql_pgbouncer_enabled": True, **pgbouncer})
    assert "the fleet opens 32 (a1: " in output and "to PgBouncer, which takes" in output, output[-3000:]
    assert "Fix: put PgBouncer in front" not in output
    if problem is None:
        assert rc == 0, output[-3000:]
    else:
        assert rc != 0 and problem in output, output[-3000:]
