"""playbooks/status.yml on the all-in-one hosts: healthy fleet = exit 0 with every program, its
uptime, the release and the backlog per queue; a stopped worker = non-zero exit naming it."""

from __future__ import annotations

import json

import pytest
import testinfra

from playbooks import inventory_hosts, run_playbook

QUEUES = {"default", "celery", "async_export", "pipeline", "pipeline_priority"}

def _status(tmp_path, *extra):
    out = tmp_path / f"status-{len(list(tmp_path.iterdir()))}.json"
    run = run_playbook("status.yml", "-e", f"bklog_status_output={out}",
                       # the hosts share this machine's disk, whatever its use
                       "-e", "bklog_status_max_disk_percent=99", *extra, timeout=300)
    return run, json.loads(out.read_text())


def test_healthy_fleet_reports_everything_and_exits_zero(tmp_path):
    run, report = _status(tmp_path)
    assert run.returncode == 0, run.stdout[-4000:]
    assert report["healthy"] is True and report["unreachable"] == []
    assert sorted(report["hosts"]) == inventory_hosts("bklog")
    for name, host in report["hosts"].items():
        running = testinfra.get_host(f"podman://{name}").check_output("basename $(readlink /opt/bklog/current)")
        assert host["release"]["running"] == running and running in host["release"]["kept"]
        programs = {p["name"]: p for p in host["programs"]}
        assert len(programs) == 5 and all(p["state"] == "RUNNING" and p["uptime"] for p in programs.values())
        assert set(host["backlog"]["queues"]) == QUEUES
        assert 0 < host["resources"]["disk_used_percent"] < 100 and host["problems"] == []
    # The table: a header, a line per host, a line per program.
    assert "HEALTH" in run.stdout and run.stdout.count("healthy") >= len(inventory_hosts("bklog"))
    assert "bklog-worker-pipeline" in run.stdout and "uptime" in run.stdout


@pytest.fixture
def stopped_worker():
    name = inventory_hosts("bklog")[0]
    host = testinfra.get_host(f"podman://{name}")
    host.check_output("supervisorctl stop bklog-worker-default")
    yield name
    host.check_output("supervisorctl start bklog-worker-default")


def test_a_stopped_worker_makes_the_run_fail_and_names_it(tmp_path, stopped_worker):
    run, report = _status(tmp_path, "-e", "bklog_status_format=json")
    assert run.returncode != 0
    assert f"unhealthy: {stopped_worker}" in run.stdout
    assert report["healthy"] is False
    sick = report["hosts"][stopped_worker]
    assert sick["healthy"] is False and len(sick["problems"]) == 1
    assert sick["problems"][0].startswith("bklog-worker-default is STOPPED")
    others = [h for h in report["hosts"] if h != stopped_worker]
    assert all(report["hosts"][h]["healthy"] for h in others)
    assert '{"healthy": false' in run.stdout  # printed as JSON (bklog_status_format=json), not as the table
    assert "HEALTH" not in run.stdout
