"""playbooks/preflight.yml, the first play of site.yml: every failed check of every host is
reported at once with its fix, and nothing is changed. Read-only: runs before test_rollout.py.
(The clock check is not made to fail here: the containers share this machine's clock and may not
set their own.)"""

from __future__ import annotations

import json

from conftest import group, playbook

# A sentinel asked with a wrong password, and a database where nothing listens (a balancer).
SENTINEL = group("bklog_redis")[0]
NO_DATABASE = group("bklog_lb")[0]
PROBLEMS = {
    "bklog_preflight_ports": {"80": ["apache2"]},           # nginx holds port 80: not the allowed program
    "bklog_preflight_min_free_disk_mb": 99_999_999,
    "bklog_preflight_min_memory_mb": 99_999_999,
    "bklog_preflight_min_cpu_cores": 512,
    "bklog_preflight_redis_url": f"sentinel://:wrong-password@{SENTINEL}:26379/0",
    "bklog_preflight_database_url": f"postgres://bklog:pw@{NO_DATABASE}:5432/bklog",
}


def test_a_clean_fleet_passes():
    run = playbook("preflight.yml")
    assert run.returncode == 0, run.stdout[-4000:]


def test_every_failed_check_of_every_host_is_reported_and_nothing_changes():
    run = playbook("site.yml", "-e", json.dumps(PROBLEMS))
    out = " ".join(run.stdout.split())
    assert run.returncode != 0
    for name in group("bklog"):
        assert f"preflight failed on {name}: 6 problem(s)" in out, out[-4000:]
    for expected in ("memory: ", "asks for 99999999 MB", "core(s), bklog/app.yml asks for 512",
                     "at least 99999999 MB needed", "port 80: held by nginx, which is not apache2",
                     f"database: {NO_DATABASE}:5432 does not answer from this host",
                     f"redis: {SENTINEL} refused the configured password (-WRONGPASS)",
                     "Fix: bklog_app_redis_url's password must match"):
        assert expected in out, expected
    # Stopped before anything was built or any role touched a host (validate.yml's checks ran before).
    for task in ("TASK [bklog_build : Build", "TASK [consul : Create the consul group", "TASK [supervisor : Install",
                 "TASK [bklog_app : Create the service group", "TASK [nginx : Install nginx", "TASK [redis : Install"):
        assert task not in run.stdout, task


def test_hosts_that_pass_stop_too_when_another_fails():
    # Only the app hosts fail (their database is unreachable); the data hosts and the balancers
    # pass, and the run still stops for every host, the controller included.
    run = playbook("site.yml", "-e", f"bklog_preflight_database_url=postgres://bklog:pw@{NO_DATABASE}:5432/bklog")
    out = " ".join(run.stdout.split())
    assert run.returncode != 0
    assert f"preflight failed on {', '.join(group('bklog'))}: nothing was changed" in out, out[-3000:]
    assert "TASK [bklog_build : Build" not in run.stdout and "TASK [consul : Create the consul group" not in run.stdout
