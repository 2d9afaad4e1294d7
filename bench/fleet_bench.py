"""Fleet benchmark: deploy wall time against the number of hosts (1, 2, 4 all-in-one hosts at
once) and a rolling upgrade of the same hosts, in batches of `--serial` hosts, with the wall time
of each batch. It shows what grows with hosts and what with batches.

    uv run python bench/fleet_bench.py [--hosts 1 2 4] [--serial 2] [--fleet] [--write]

--fleet also runs `molecule test -s ha` and reports its upgrades under load through the floating
address: wall time, time of each batch, requests served and failed, lines and exports.
--fleet-results FILE reports them from a run made elsewhere instead: the bklog-ha-rollouts.jsonl
its verify step wrote beside the playbook logs (BKLOG_MOLECULE_LOG_DIR, or /tmp).

Hosts are podman containers from scripts/build-images.sh, reached over SSH (as molecule does),
each a whole all-in-one installation (nginx, gunicorn, workers, Redis, SQLite). Requests served
and failed during upgrades under load are measured by molecule/ha (see docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import math
import os
import re
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from hosts import boot_hosts, inventory_vars  # noqa: E402
from results import append_section, molecule_measured  # noqa: E402
BIN = Path(sys.executable).parent
PREFIX = "bklog-fleetbench"


def playbook(inventory: Path, name: str, *extra: str) -> tuple[float, str]:
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "PATH": f"{BIN}:{os.environ['PATH']}",
           "ANSIBLE_FORKS": "8", "ANSIBLE_CALLBACKS_ENABLED": "ansible.posix.profile_tasks"}
    started = time.perf_counter()
    result = subprocess.run([str(BIN / "ansible-playbook"), "-i", str(inventory), str(ROOT / "playbooks" / name), *extra],
                            env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(result.stdout[-4000:] + result.stderr[-2000:])
    return elapsed, result.stdout


def task_starts(log: str) -> list[tuple[str, datetime]]:
    """(task name, start time) of every task, from profile_tasks' timestamp under each header."""
    return [(match.group(1), datetime.strptime(" ".join(match.group(2).split()), "%A %d %B %Y %H:%M:%S"))
            for match in re.finditer(r"TASK \[([^\]]+)\].*?\n(\w+ \d+ \w+ \d{4} +\d\d:\d\d:\d\d)", log)]


def batch_seconds(stamps: list[tuple[str, datetime]]) -> list[float]:
    """Wall time of each batch of the serial play (task_starts of its log): a batch starts at its
    'Note the running release' task and ends where the next one starts (or the play ends)."""
    starts = [t for name, t in stamps if name == "Note the running release"]
    end = stamps[-1][1] if stamps else None
    return [((starts[i + 1] if i + 1 < len(starts) else end) - s).total_seconds() for i, s in enumerate(starts)]


def drained_seconds(stamps: list[tuple[str, datetime]]) -> list[float]:
    """How long each batch was out of traffic (issue 21's target): from its first 'Mark the host down
    on every balancer' to the end of the balancers' reload after 'Put the host back on every
    balancer' (the start of the task after that reload, or the play's end)."""
    windows, drained_at, put_back, reloading = [], None, False, False
    for name, at in stamps:
        if reloading:
            windows.append((at - drained_at).total_seconds())
            drained_at, put_back, reloading = None, False, False
        if name.endswith("Mark the host down on every balancer") and drained_at is None:
            drained_at = at
        elif name.endswith("Put the host back on every balancer") and drained_at is not None:
            put_back = True
        elif name.endswith("Reload the balancers") and put_back:
            reloading = True
    if reloading:
        windows.append((stamps[-1][1] - drained_at).total_seconds())
    return windows


def fleet_section(results: Path | None) -> str:
    """`molecule test -s ha`, its upgrades measured by its own tests (test_6_rollout.py)."""
    import json

    total = None
    if results is None:
        results, total = molecule_measured("ha", "bklog-ha-rollouts.jsonl")
    out = results

    lines = [
        f"## Rolling upgrades of the HA fleet under load — {datetime.now().strftime('%Y-%m-%d %H:%M')}",
        "",
        f"Machine: {os.cpu_count()} cores; `molecule/ha` (three data hosts: Consul servers, Patroni, Redis with "
        "Sentinel; 2 app hosts, Debian 13 and 12, each the API and every worker; 2 balancers sharing a floating "
        "address), reached over SSH. Load through the floating address during each playbook: "
        f"{json.loads(out.read_text().splitlines()[0]).get('load', 'not recorded')}. One host per batch (serial 1). "
        + (f"Whole `molecule test -s ha`: {total / 60:.1f} min. " if total else "")
        + f"One run (bench/fleet_bench.py, from {'its own molecule run' if total else results.name}).",
        "",
        "| playbook | wall s | s per batch (each) | s drained, drain to undrain (each) | requests served | failed "
        "| lines ingested (all searchable) | exports (all done) |",
        "| --- | ---: | --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for run in map(json.loads, out.read_text().splitlines()):
        stamps = task_starts(Path(run["log"]).read_text())
        batches, drained = batch_seconds(stamps), drained_seconds(stamps)
        lines.append(f"| {run['playbook']} {run['args']} | {run['seconds']:.0f} | {', '.join(f'{b:.0f}' for b in batches)} | "
                     f"{', '.join(f'{d:.0f}' for d in drained)} | "
                     f"{run['served']} | {run['failed']} | {run['lines']} | {run['exports']} |")
    return "\n".join(lines) + "\n\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--hosts", type=int, nargs="*", default=[1, 2, 4], help="none: the fleet part only")
    parser.add_argument("--serial", type=int, default=2)
    parser.add_argument("--no-upgrade", action="store_true", help="deploy times only")
    parser.add_argument("--fleet", action="store_true")
    parser.add_argument("--fleet-results", type=Path)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    fleet_text = fleet_section(args.fleet_results) if args.fleet or args.fleet_results else ""
    subprocess.run([str(ROOT / "scripts" / "build-images.sh"), "bookworm"], check=True, capture_output=True)
    rows = []
    for count in args.hosts:
        names = [f"{PREFIX}-{i}" for i in range(1, count + 1)]
        work = Path(tempfile.mkdtemp(prefix="bklog-fleet-bench-"))
        (work / "group_vars").symlink_to(ROOT / "inventories" / "local" / "group_vars")
        try:
            addresses = boot_hosts(names)
            hosts = "".join(f"            {n}:\n              ansible_host: {addresses[n]}\n" for n in names)
            (work / "hosts.yml").write_text(
                "all:\n  children:\n    bklog:\n      children:\n"
                + "".join(f"        {g}:\n          hosts:\n{hosts}" for g in ("bklog_api", "bklog_workers", "bklog_redis"))
                + "  vars:\n" + inventory_vars()
                + "    bklog_rollout_smoke_token: bench-smoke-0123456789abcdef\n"
                # every host is a whole installation: each runs its own beat and its own Redis
                + "    celery_workers_beat_hosts: ['{{ inventory_hostname }}']\n"
                + "    redis_sentinel: false\n")
            deploy_s, _ = playbook(work, "site.yml")
            upgrade_s, batches = float("nan"), []
            if not args.no_upgrade:
                upgrade_s, log = playbook(work, "rolling_upgrade.yml", "-e", f"bklog_version=1.5.{count}",
                                          "-e", f"bklog_rollout_serial={args.serial}")
                batches = batch_seconds(task_starts(log))
        finally:
            subprocess.run(["podman", "rm", "-f", *names], capture_output=True)
        rows.append((count, deploy_s, upgrade_s, batches))
        upgrade_text = "" if args.no_upgrade else (
            f", rolling upgrade {upgrade_s:.0f} s, batches {', '.join(f'{b:.0f}' for b in batches)} s")
        print(f"{count} host(s): deploy {deploy_s:.0f} s{upgrade_text}", file=sys.stderr)

    if not rows:
        print(fleet_text)
        if args.write and fleet_text:
            append_section(fleet_text)
        return
    # --no-upgrade: the deploy columns only (no upgrade ran: nothing to print for it).
    upgrade = not args.no_upgrade
    title = "Fleet deploy and rolling upgrade" if upgrade else "Fleet deploy"
    lines = [
        f"## {title} against the number of hosts — {datetime.now().strftime('%Y-%m-%d %H:%M')}",
        "",
        f"Machine: {os.cpu_count()} cores; the hosts are podman containers (Debian 12, systemd) on this one machine, "
        f"reached over SSH, forks 8; each host an all-in-one installation. `site.yml` on fresh hosts"
        + (f", then `rolling_upgrade.yml` to a new version with serial {args.serial}" if upgrade else "")
        + ". One run each (bench/fleet_bench.py).",
        "",
        "| hosts | deploy s | deploy s per host |" + (" upgrade batches | upgrade s | s per batch (each) |" if upgrade else ""),
        "| ---: | ---: | ---: |" + (" ---: | ---: | --- |" if upgrade else ""),
    ]
    for count, deploy_s, upgrade_s, batches in rows:
        lines.append(f"| {count} | {deploy_s:.0f} | {deploy_s / count:.0f} |" + (
            f" {math.ceil(count / args.serial)} | {upgrade_s:.0f} | {', '.join(f'{b:.0f}' for b in batches)} |"
            if upgrade else ""))
    first, last = rows[0], rows[-1]
    ratios = f"deploy x{last[1] / first[1]:.2f}"
    if upgrade:
        ratios += (f", upgrade x{last[2] / first[2]:.2f} "
                   f"({math.ceil(first[0] / args.serial)} to {math.ceil(last[0] / args.serial)} batches)")
    lines += ["", f"From {first[0]} to {last[0]} hosts: {ratios}. "
              "The hosts share this machine's 2 cores, so per-host work (pip installs, service starts) also "
              "competes for CPU; on separate VMs only the controller is shared.", ""]
    text = fleet_text + "\n".join(lines)
    print(text)
    if args.write:
        append_section(text)


if __name__ == "__main__":
    main()
