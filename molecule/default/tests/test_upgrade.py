"""A second deploy of a new version: the previous release is kept, `current` flips, and every
program runs the new one. Runs last (after test_default.py): it changes the hosts."""

from __future__ import annotations

import json
import os
from pathlib import Path

import testinfra
import yaml

from playbooks import inventory_hosts, run_playbook, running_pids


def test_redeploy_of_a_new_version_keeps_the_previous_release():
    inventory_file = Path(os.environ["MOLECULE_INVENTORY_FILE"])
    hosts = sorted(yaml.safe_load(inventory_file.read_text())["bklog_api"]["hosts"])
    before = {h: testinfra.get_host(f"podman://{h}").check_output("readlink /opt/bklog/current") for h in hosts}
    run = run_playbook("site.yml", "-e", "bklog_version=9.9.9", timeout=1200)
    assert run.returncode == 0, run.stdout[-6000:]
    for name in hosts:
        host = testinfra.get_host(f"podman://{name}")
        assert host.check_output("readlink /opt/bklog/current") == "/opt/bklog/releases/9.9.9"
        assert host.file(before[name]).is_directory and host.file(f"{before[name]}/.complete").exists
        health = json.loads(host.check_output("curl -sS http://127.0.0.1/healthz"))
        assert health["version"] == "9.9.9"
        status = host.check_output("supervisorctl status")
        assert status.count("RUNNING") == 5, status
        # Workers restarted onto the new release too: their import path is the new virtualenv.
        for program in ("bklog-worker-pipeline", "bklog-beat"):
            pid = host.check_output(f"supervisorctl pid {program}")
            environ = host.check_output(f"tr '\\0' '\\n' < /proc/{pid}/cmdline | head -1")
            assert environ.startswith("/opt/bklog/current/") or "9.9.9" in environ


def test_a_rerun_restarts_exactly_the_programs_older_than_their_release_or_environment():
    """What a failed run leaves behind (the environment changed, the restart never ran) is finished
    by the next run on that host; on the other host, where nothing changed, nothing restarts."""
    names = inventory_hosts("bklog")
    stale, untouched = names[0], names[1]
    testinfra.get_host(f"podman://{stale}").check_output("touch /etc/bklog/bklog.env")
    before = {name: running_pids(name) for name in names}
    assert len(before[stale]) == 5, before
    run = run_playbook("site.yml", "-e", "bklog_version=9.9.9", timeout=1200)
    assert run.returncode == 0, run.stdout[-6000:]
    after = {name: running_pids(name) for name in names}
    assert after[untouched] == before[untouched]
    assert sorted(after[stale]) == sorted(before[stale])
    assert all(after[stale][p] != before[stale][p] for p in before[stale]), (before[stale], after[stale])
