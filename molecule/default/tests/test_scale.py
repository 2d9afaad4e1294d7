"""playbooks/scale_workers.yml: a queue's concurrency and the hosts that run a worker change with
only the affected programs restarting (the others keep their process ids), and --limit confines
it to the named host. Ends with the hosts as it found them."""

from __future__ import annotations

import json
from pathlib import Path

import testinfra
import yaml

from playbooks import PROGRAMS, inventory_hosts, run_playbook, running_pids

ROOT = Path(__file__).resolve().parents[3]
# The scenario's inventory variables (inventories/local): its per-host worker overrides.
OVERRIDES = yaml.safe_load((ROOT / "inventories" / "local" / "group_vars" / "all" / "main.yml").read_text())[
    "celery_workers_overrides"]

def _program_conf(host, program: str) -> str:
    """The [program:NAME] section of the host's one Celery program file ('' when it has none)."""
    sections = host.file("/etc/supervisor/conf.d/bklog-celery.conf").content_string.split("\n[program:")
    return next((s for s in sections if s.startswith(program + "]")), "")


def _scale(*extra: str):
    run = run_playbook("scale_workers.yml", *extra, timeout=600)
    assert run.returncode == 0, run.stdout[-5000:]
    return run


def test_scaling_restarts_only_the_changed_programs():
    target, other = inventory_hosts("bklog")
    before = {h: running_pids(h) for h in (target, other)}
    assert sorted(before[target]) == PROGRAMS

    # The pipeline worker's concurrency on one host (the other workers' overrides as they are).
    concurrency = OVERRIDES["pipeline"]["concurrency"] + 1
    _scale("--limit", target, "-e", json.dumps(
        {"celery_workers_overrides": {**OVERRIDES, "pipeline": {**OVERRIDES["pipeline"], "concurrency": concurrency}}}))
    after = running_pids(target)
    assert after["bklog-worker-pipeline"] != before[target]["bklog-worker-pipeline"]
    assert {p: after[p] for p in PROGRAMS if p != "bklog-worker-pipeline"} == \
           {p: before[target][p] for p in PROGRAMS if p != "bklog-worker-pipeline"}
    host = testinfra.get_host(f"podman://{target}")
    assert f" -c {concurrency} " in _program_conf(host, "bklog-worker-pipeline")
    assert running_pids(other) == before[other]  # --limit: the other host untouched

    # The async_export worker moved off that host (pipeline back to the inventory's concurrency).
    _scale("--limit", target, "-e", json.dumps({"celery_workers_enabled": ["default", "pipeline"]}))
    moved = running_pids(target)
    assert "bklog-worker-async_export" not in moved
    assert _program_conf(host, "bklog-worker-async_export") == ""
    for program in ("bklog-api", "bklog-beat", "bklog-worker-default"):
        assert moved[program] == before[target][program], program

    # Back to the inventory's own settings.
    _scale("--limit", target)
    restored = running_pids(target)
    assert sorted(restored) == PROGRAMS
    for program in ("bklog-api", "bklog-beat", "bklog-worker-default"):
        assert restored[program] == before[target][program], program
    assert f" -c {OVERRIDES['pipeline']['concurrency']} " in _program_conf(host, "bklog-worker-pipeline")
