"""Runs the bundle's own playbooks against a molecule scenario's hosts, from its verify step:
the scenario's inventory (SSH to the hosts), the project's ansible.cfg and roles, per-task timings,
and the output written to a log file as it runs (tail -f it during a long upgrade)."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_playbook(name: str, *extra: str, timeout: int = 1800, forks: int = 8) -> subprocess.CompletedProcess:
    env = {**os.environ, "ANSIBLE_ROLES_PATH": str(ROOT / "roles"), "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
           "ANSIBLE_FORKS": str(forks), "ANSIBLE_CALLBACKS_ENABLED": "ansible.posix.profile_tasks"}
    scenario = Path(os.environ.get("MOLECULE_SCENARIO_DIRECTORY", "scenario")).name
    started = time.time()
    log = Path(os.environ.get("BKLOG_MOLECULE_LOG_DIR", "/tmp")) / f"bklog-{scenario}-{name}-{int(started)}.log"
    with log.open("w") as out:
        run = subprocess.run(["ansible-playbook", "-i", str(Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent),
                              str(ROOT / "playbooks" / name), *extra], env=env, stdout=out, stderr=subprocess.STDOUT,
                             text=True, timeout=timeout)
    run.seconds = time.time() - started
    run.stdout = log.read_text()
    run.log = log
    return run
