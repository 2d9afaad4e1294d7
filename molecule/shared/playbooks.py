"""For the scenarios' verify steps: runs the bundle's own playbooks against the scenario's hosts (the
scenario's inventory, SSH to the hosts, the project's ansible.cfg and roles, per-task timings, the
output written to a log file as it runs: tail -f it during a long upgrade), names the hosts of an
inventory group, the supervisor programs bklog/app.yml declares, asks a host with curl, and waits
for a condition."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def _app_programs() -> list[str]:
    """Every supervisor program of bklog/app.yml (an all-in-one host runs them all), named by the
    filter every role names them with."""
    spec = importlib.util.spec_from_file_location("bklog_programs", ROOT / "plugins" / "filter" / "bklog_programs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    names = module.bklog_programs(yaml.safe_load((ROOT / "bklog" / "app.yml").read_text()))
    return sorted([names["api"], names["beat"], *names["workers"].values()])


PROGRAMS = _app_programs()
# For `bklog shell -c`: prints {index set: lines} as JSON on its last line.
COUNT_LINES = ("import json; from bklog.logs.models import IndexSet; "
               "print(json.dumps({s.name: s.lines.count() for s in IndexSet.objects.all()}))")


def inventory_hosts(group: str) -> list[str]:
    return sorted(yaml.safe_load(Path(os.environ["MOLECULE_INVENTORY_FILE"]).read_text())[group]["hosts"])


def running_pids(name: str) -> dict[str, str]:
    """{program: pid} of the host's RUNNING supervisor programs ("NAME RUNNING pid 12, uptime ...")."""
    import testinfra  # the verify steps' dependency, not the bench scripts'

    out = testinfra.get_host(f"podman://{name}").run("supervisorctl status").stdout
    return {line.split()[0]: line.split("pid ")[1].split(",")[0] for line in out.splitlines() if " RUNNING " in line}


def curl(host, *args: str) -> tuple[int, str]:
    """curl on a testinfra host: (status, body). testinfra quotes each argument given for a %s."""
    out = host.check_output("curl -sS -o /tmp/body -w '%%{http_code}' " + " ".join(["%s"] * len(args))
                            + "; echo; cat /tmp/body", *args)
    status, _, body = out.partition("\n")
    return int(status), body


def plain(output: str) -> str:
    """A playbook's output without its colours."""
    return re.sub(r"\x1b\[[0-9;]*m", "", output)


def changed_per_host(run) -> dict[str, int]:
    """{host: tasks changed} from a run's PLAY RECAP."""
    return {host: int(n) for host, n in re.findall(r"^(\S+)\s+: ok=\d+\s+changed=(\d+)", plain(run.stdout), re.M)}


def changed_tasks(run) -> dict[str, list[str]]:
    """{host: [task that reported changed]}: what a run that should change nothing did."""
    changed: dict[str, list[str]] = {}
    task = "?"
    for line in plain(run.stdout).splitlines():
        if line.startswith("TASK ["):
            task = line[len("TASK ["):].split("]")[0]
        elif match := re.match(r"changed: \[([^\]\s]+)", line):
            changed.setdefault(match.group(1), []).append(task)
    return changed


def wait_until(predicate, what: str, timeout: float = 90, every: float = 1):
    deadline = time.time() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.time() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


def run_playbook(name: str, *extra: str, timeout: int = 1800, forks: int = 8) -> subprocess.CompletedProcess:
    env = {**os.environ, "ANSIBLE_ROLES_PATH": str(ROOT / "roles"), "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
           "ANSIBLE_FORKS": str(forks), "ANSIBLE_CALLBACKS_ENABLED": "ansible.posix.profile_tasks"}
    scenario = Path(os.environ.get("MOLECULE_SCENARIO_DIRECTORY", "scenario")).name
    started = time.time()
    log_dir = Path(os.environ.get("BKLOG_MOLECULE_LOG_DIR", "/tmp"))
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / f"bklog-{scenario}-{name}-{int(started)}.log"
    with log.open("w") as out:
        run = subprocess.run(["ansible-playbook", "-i", str(Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent),
                              str(ROOT / "playbooks" / name), *extra], env=env, stdout=out, stderr=subprocess.STDOUT,
                             text=True, timeout=timeout)
    run.seconds = time.time() - started
    run.stdout = log.read_text()
    run.log = log
    return run
