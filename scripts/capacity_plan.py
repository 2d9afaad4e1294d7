#!/usr/bin/env python3
"""Capacity planner: from log lines a day, the guide's recommended fleet (API instances, Celery
worker hosts, database layout) with the 20-30 % headroom it advises, and optionally an inventory
skeleton for it.

    scripts/capacity_plan.py 80000000                  # 80 M lines a day
    scripts/capacity_plan.py 3e8 --headroom 0.3 --json
    scripts/capacity_plan.py 80M --inventory inventories/mycorp --env prod

The guide's table (性能基准测试与容量规划): < 100 M lines a day: 2 API, 4 workers, primary-replica
database; 100-500 M: 4 and 8, a database cluster; above: 8+ and 16+, a sharded cluster. The
headroom is applied to the volume before choosing the tier (a fleet at 90 M with 25 % headroom
plans for 112.5 M); above 500 M the top tier scales in proportion.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

APP_SPEC = Path(__file__).resolve().parents[1] / "bklog" / "app.yml"


class InventoryDumper(yaml.SafeDumper):
    """YAML as inventories are written by hand: a host with no variables is `name:`, not `name: null`."""


InventoryDumper.add_representer(type(None), lambda dumper, _: dumper.represent_scalar("tag:yaml.org,2002:null", ""))

TIERS = [  # (up to lines a day, API instances, worker hosts, database layout)
    (100_000_000, 2, 4, "primary-replica"),
    (500_000_000, 4, 8, "cluster"),
]
TOP_TIER = (500_000_000, 8, 16, "sharded cluster")


@dataclass
class Plan:
    lines_per_day: int
    headroom: float
    planned_lines_per_day: int
    api_instances: int
    worker_hosts: int
    database: str
    average_lines_per_second: float
    workers_by_queue: dict


def parse_volume(text: str) -> int:
    """80000000, 8e7, 80M, 0.5G (lines a day)."""
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?(?:e[0-9]+)?)\s*([kKmMgGbB]?)\s*", text)
    if not match:
        raise ValueError(f"lines a day must be a number like 80000000, 8e7 or 80M (got {text!r})")
    value = float(match.group(1)) * {"": 1, "k": 1e3, "m": 1e6, "g": 1e9, "b": 1e9}[match.group(2).lower()]
    if value <= 0:
        raise ValueError(f"lines a day must be above 0 (got {text!r})")
    return int(value)


def worker_programs() -> list[dict]:
    """The worker programs of bklog/app.yml (the one list of them), in its order."""
    return yaml.safe_load(APP_SPEC.read_text(encoding="utf-8"))["celery"]["workers"]


def split_workers(hosts: int) -> dict:
    """The worker hosts shared among app.yml's programs by their fleet_share (the pipeline carries
    every line, exports are occasional), at least one each; what rounding leaves goes to the
    first (the default queue's, which runs beat too)."""
    programs = worker_programs()
    total = sum(w["fleet_share"] for w in programs)
    split = {w["name"]: max(1, hosts * w["fleet_share"] // total) for w in programs}
    first = programs[0]["name"]
    split[first] += max(0, hosts - sum(split.values()))
    return split


def plan(lines_per_day: int, headroom: float = 0.25) -> Plan:
    if not 0.2 <= headroom <= 0.3:
        raise ValueError(f"headroom must be from 0.2 to 0.3, as the guide advises (got {headroom})")
    planned = math.ceil(lines_per_day * (1 + headroom))
    for limit, api, workers, database in TIERS:
        if planned < limit:
            break
    else:
        limit, api, workers, database = TOP_TIER
        scale = planned / limit
        api, workers = max(api, math.ceil(api * scale)), max(workers, math.ceil(workers * scale))
    by_queue = split_workers(workers)
    return Plan(lines_per_day, headroom, planned, api, sum(by_queue.values()), database,
                round(planned / 86400, 1), by_queue)


def inventory(p: Plan, env: str) -> dict[str, str]:
    """Files of an inventory skeleton (path relative to the inventory directory -> text)."""
    def hosts(names):
        return {"hosts": {name: None for name in names}}

    api = [f"{env}-bklog-api-{i:02d}.example.internal" for i in range(1, p.api_instances + 1)]
    workers, n = {}, 1
    for program, count in p.workers_by_queue.items():
        workers[program] = [f"{env}-bklog-worker-{i:02d}.example.internal" for i in range(n, n + count)]
        n += count
    infra = [f"{env}-infra-{i:02d}.example.internal" for i in (1, 2, 3)]
    search = [f"{env}-bklog-search-{i:02d}.example.internal" for i in (1, 2, 3)] if p.database == "sharded cluster" else []
    groups = {
        "bklog": {"children": {"bklog_api": hosts(api),
                               "bklog_workers": {"children": {f"bklog_workers_{q}": hosts(names) for q, names in workers.items()}}}},
        "bklog_lb": hosts([f"{env}-bklog-lb-{i:02d}.example.internal" for i in (1, 2)]),
        "bklog_consul_servers": hosts(infra),
        "bklog_postgresql": hosts(infra),
        "bklog_redis": hosts(infra),
        "bklog_monitoring": hosts(infra[:1]),
        "bklog_log_agent": None,
        "bklog_opensearch": hosts(search) if search else None,
    }
    header = (
        f"---\n# {env}: sized by scripts/capacity_plan.py for {p.lines_per_day:,} lines a day "
        f"(+{p.headroom:.0%} headroom: {p.planned_lines_per_day:,}). Replace the host names.\n"
        f"# Database: {p.database}: PostgreSQL under Patroni and Redis with Sentinel on the three infra\n"
        "# hosts, with the Consul servers (docs/high-availability.md). Two balancers share a floating\n"
        "# address (keepalived_virtual_ipaddress in group_vars/all). bklog_log_agent: the hosts whose\n"
        "# logs rsyslog ships into BK LOG (playbooks/log_agent.yml). bklog_opensearch: the log index on\n"
        "# OpenSearch (the guide's sharded tier; metadata stays in the database).\n")
    files = {"hosts.yml": header + yaml.dump({"all": {"children": groups}}, Dumper=InventoryDumper, sort_keys=False)}
    for program in workers:
        group_vars = {"celery_workers_enabled": [program]}
        if program == worker_programs()[0]["name"]:
            # beat on one of them at a time, under a Consul lock (roles/celery_workers)
            group_vars["celery_workers_beat_hosts"] = f"{{{{ groups['bklog_workers_{program}'] }}}}"
        files[f"group_vars/bklog_workers_{program}/main.yml"] = (
            f"---\n# Worker hosts of the {program} program (bklog/app.yml).\n" + yaml.dump(group_vars, Dumper=InventoryDumper, sort_keys=False))
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("lines_per_day", help="log lines a day: 80000000, 8e7 or 80M")
    parser.add_argument("--headroom", type=float, default=0.25, help="0.2-0.3 (default 0.25)")
    parser.add_argument("--json", action="store_true", help="print the plan as JSON")
    parser.add_argument("--inventory", type=Path, help="write an inventory skeleton into this directory")
    parser.add_argument("--env", default="prod", help="environment name used in host names (default prod)")
    args = parser.parse_args(argv)
    try:
        result = plan(parse_volume(args.lines_per_day), args.headroom)
    except ValueError as exc:
        parser.error(str(exc))
    if args.json:
        print(json.dumps(asdict(result), indent=2))
    else:
        print(f"{result.lines_per_day:,} lines a day, +{result.headroom:.0%} headroom: plan for "
              f"{result.planned_lines_per_day:,} (on average {result.average_lines_per_second:,} lines/s)\n"
              f"  API instances:  {result.api_instances}\n"
              f"  worker hosts:   {result.worker_hosts} ("
              + ", ".join(f"{q} {n}" for q, n in result.workers_by_queue.items()) + ")\n"
              f"  database:       {result.database}")
    if args.inventory:
        if (args.inventory / "hosts.yml").exists():
            parser.error(f"{args.inventory}/hosts.yml exists: choose a new directory (nothing was written)")
        for rel, text in inventory(result, args.env).items():
            path = args.inventory / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        print(f"inventory skeleton written to {args.inventory} (add group_vars/all from inventories/{args.env})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
