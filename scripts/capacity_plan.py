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

The rates measured on our machines (bench/measured_rates.yml, written by the bench scripts) are
the floor under the table: enough API instances for the planned ingest (and --searches-per-second),
enough pipeline worker hosts for the planned lines, and the log index's backend: PostgreSQL while
the lines held (a day's lines x --retention-days) stay within what it was measured to search with
every kind's p95 under the guide's 200 ms, OpenSearch beyond. SQLite, the embedded default, is one
host's (the all-in-one and the sandbox): no tier of a fleet can use it.

    scripts/capacity_plan.py --tiers                   # what each of the guide's tiers needs
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

ROOT = Path(__file__).resolve().parents[1]
APP_SPEC = ROOT / "bklog" / "app.yml"
RATES = ROOT / "bench" / "measured_rates.yml"
SEARCH_P95_TARGET_MS = 200  # the guide: 95 % of responses under 200 ms
DEFAULT_RETENTION_DAYS = 7  # an index set's default (bklog/logs/models.py IndexSet.retention_days)
PIPELINE_TASK = "bklog.logs.tasks.index_batch"  # the task that indexes every line


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
    retention_days: int
    lines_held: int
    log_index: str          # "postgresql" or "opensearch"
    reasons: list           # why each number is what it is, the measured rates named


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


def pipeline_program() -> str:
    """The worker program whose queues carry the task that indexes every line (bklog/app.yml)."""
    spec = yaml.safe_load(APP_SPEC.read_text(encoding="utf-8"))["celery"]
    queue = spec["tasks"][PIPELINE_TASK]["queue"]
    return next(w["name"] for w in spec["workers"] if queue in w["queues"])


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


SERVICE_RATES = ("pipeline_tasks_per_second", "pipeline_lines_per_task", "ingest_lines_per_second", "search_per_second")


def measured_rates(path: Path = RATES) -> dict:
    """backends -> {service: ..., search: {lines held: {p95_ms: ...}}} as the bench scripts wrote
    them; ValueError naming what is missing or wrong."""
    if not path.exists():
        return {}
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ValueError(f"not YAML: {exc}") from None
    backends = data.get("backends", {}) if isinstance(data, dict) else None
    if not isinstance(backends, dict):
        raise ValueError("expected a mapping `backends:` of backend names")
    for name, backend in backends.items():
        if not isinstance(backend, dict) or not isinstance(backend.get("service", {}), dict) \
                or not isinstance(backend.get("search", {}), dict):
            raise ValueError(f"backends.{name} must be a mapping with `service` and `search` mappings")
        for key in SERVICE_RATES if "service" in backend else ():
            value = backend["service"].get(key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
                raise ValueError(f"backends.{name}.service.{key} must be a number above 0 (got {value!r})")
        for lines, run in backend.get("search", {}).items():
            if not str(lines).isdigit() or not isinstance(run, dict) or not isinstance(run.get("p95_ms"), dict) \
                    or not all(v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)) for v in run["p95_ms"].values()):
                raise ValueError(f"backends.{name}.search.{lines} must be lines held with their p95_ms (a number or null) by kind")
    return backends


def searchable_lines(backend: dict) -> int:
    """The most lines a bench's index held while every search kind (histograms aside) answered
    with p95 under the target and none was stopped by the search timeout; 0 if never."""
    held = [int(lines) for lines, run in backend.get("search", {}).items()
            if not run.get("stopped_at_timeout")
            and all(p95 is not None and p95 < SEARCH_P95_TARGET_MS
                    for kind, p95 in run["p95_ms"].items() if not kind.startswith("histogram"))]
    return max(held, default=0)


def choose_log_index(lines_held: int, rates: dict) -> tuple[str, str]:
    """PostgreSQL while it searches the lines held within the target, OpenSearch beyond."""
    measured = searchable_lines(rates.get("postgres", {}))
    if measured and lines_held <= measured:
        return "postgresql", (f"log index PostgreSQL: {lines_held:,} lines held, and every search kind's p95 stayed "
                              f"under {SEARCH_P95_TARGET_MS} ms at {measured:,} lines")
    within = (f"up to {measured:,} lines" if measured else "at no index size measured yet")
    return "opensearch", (f"log index OpenSearch: {lines_held:,} lines held; PostgreSQL kept every search kind's p95 "
                          f"under {SEARCH_P95_TARGET_MS} ms {within} (bench/backend_bench.py)")


def plan(lines_per_day: int, headroom: float = 0.25, retention_days: int = DEFAULT_RETENTION_DAYS,
         searches_per_second: float = 0, rates: dict | None = None) -> Plan:
    if not 0.2 <= headroom <= 0.3:
        raise ValueError(f"headroom must be from 0.2 to 0.3, as the guide advises (got {headroom})")
    if not 1 <= retention_days <= 3650:
        raise ValueError(f"retention days must be from 1 to 3650, as an index set's (got {retention_days})")
    if not 0 <= searches_per_second < math.inf:
        raise ValueError(f"searches per second must be a number from 0 (got {searches_per_second})")
    rates = measured_rates() if rates is None else rates
    planned = math.ceil(lines_per_day * (1 + headroom))
    for limit, api, workers, database in TIERS:
        if planned < limit:
            break
    else:
        limit, api, workers, database = TOP_TIER
        scale = planned / limit
        api, workers = max(api, math.ceil(api * scale)), max(workers, math.ceil(workers * scale))
    reasons = [f"the guide's table: {api} API instances, {workers} worker hosts, a {database} database"]
    lines_per_second = planned / 86400
    held = lines_per_day * retention_days
    log_index, why = choose_log_index(held, rates)
    reasons.append(why)
    by_queue = split_workers(workers)

    # The measured rates as a floor: the PostgreSQL service bench's, the fleet's database. (The
    # benches' OpenSearch ingest waits for each refresh, a latency and not a program's ceiling.)
    service = rates.get("postgres", {}).get("service")
    if service:
        per_program = service["pipeline_tasks_per_second"] * service["pipeline_lines_per_task"]
        program = pipeline_program()
        needed = math.ceil(lines_per_second / per_program)
        if needed > by_queue[program]:
            reasons.append(f"{needed} {program} worker hosts for {lines_per_second:,.0f} lines/s at the measured "
                           f"{per_program:,.0f} lines/s per program (the table gives {by_queue[program]})")
            by_queue[program] = needed
        for_ingest = math.ceil(lines_per_second / service["ingest_lines_per_second"])
        for_search = math.ceil(searches_per_second / service["search_per_second"])
        if for_ingest + for_search > api:
            reasons.append(f"{for_ingest + for_search} API instances: {lines_per_second:,.0f} lines/s at the measured "
                           f"{service['ingest_lines_per_second']:,} lines/s of ingest per instance"
                           + (f", {searches_per_second:g} searches/s at {service['search_per_second']:g}/s" if for_search else ""))
            api = for_ingest + for_search
    else:
        reasons.append("no service rates measured (bench/service_bench.py --backend postgres --write): the table alone")
    return Plan(lines_per_day, headroom, planned, api, sum(by_queue.values()), database,
                round(lines_per_second, 1), by_queue, retention_days, held, log_index, reasons)


def tiers(rates: dict | None = None) -> list[Plan]:
    """A plan just under the top of each of the guide's tiers (and at twice the last), with the
    default headroom and retention: what each tier needs, the log index's backend included."""
    return [plan(math.floor((limit - 1) / 1.25), rates=rates) for limit in [t[0] for t in TIERS] + [2 * TOP_TIER[0]]]


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
    search = [f"{env}-bklog-search-{i:02d}.example.internal" for i in (1, 2, 3)] if p.log_index == "opensearch" else []
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
        f"# OpenSearch when the plan says so (log index: {p.log_index}; metadata stays in the database).\n")
    files = {"hosts.yml": header + yaml.dump({"all": {"children": groups}}, Dumper=InventoryDumper, sort_keys=False)}
    for program in workers:
        group_vars = {"celery_workers_enabled": [program]}
        if program == worker_programs()[0]["name"]:
            # beat on one of them at a time, under a Consul lock (roles/celery_workers)
            group_vars["celery_workers_beat_hosts"] = f"{{{{ groups['bklog_workers_{program}'] }}}}"
        files[f"group_vars/bklog_workers_{program}/main.yml"] = (
            f"---\n# Worker hosts of the {program} program (bklog/app.yml).\n" + yaml.dump(group_vars, Dumper=InventoryDumper, sort_keys=False))
    return files


def describe(result: Plan) -> str:
    return (f"{result.lines_per_day:,} lines a day, +{result.headroom:.0%} headroom: plan for "
            f"{result.planned_lines_per_day:,} (on average {result.average_lines_per_second:,} lines/s), "
            f"{result.lines_held:,} lines held over {result.retention_days} days\n"
            f"  API instances:  {result.api_instances}\n"
            f"  worker hosts:   {result.worker_hosts} ("
            + ", ".join(f"{q} {n}" for q, n in result.workers_by_queue.items()) + ")\n"
            f"  database:       {result.database} (PostgreSQL)\n"
            f"  log index:      {result.log_index}\n"
            + "".join(f"  - {reason}\n" for reason in result.reasons))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("lines_per_day", nargs="?", help="log lines a day: 80000000, 8e7 or 80M")
    parser.add_argument("--headroom", type=float, default=0.25, help="0.2-0.3 (default 0.25)")
    parser.add_argument("--retention-days", type=int, default=DEFAULT_RETENTION_DAYS,
                        help=f"days of lines kept (default {DEFAULT_RETENTION_DAYS}, an index set's default)")
    parser.add_argument("--searches-per-second", type=float, default=0, help="searches the API answers at peak (default 0)")
    parser.add_argument("--tiers", action="store_true", help="what each of the guide's tiers needs, from the measured rates")
    parser.add_argument("--rates", type=Path, default=RATES,
                        help="rates measured by the bench scripts (default bench/measured_rates.yml; your machines' own "
                             "from a copy of this repository whose benches ran with --write)")
    parser.add_argument("--json", action="store_true", help="print the plan as JSON")
    parser.add_argument("--inventory", type=Path, help="write an inventory skeleton into this directory")
    parser.add_argument("--env", default="prod", help="environment name used in host names (default prod)")
    args = parser.parse_args(argv)
    if not args.rates.is_file():
        parser.error(f"--rates {args.rates}: no such file")
    try:
        rates = measured_rates(args.rates)
    except ValueError as exc:
        parser.error(f"--rates {args.rates}: {exc}")
    if args.tiers:
        plans = tiers(rates)
        print(json.dumps([asdict(p) for p in plans], indent=2) if args.json else "\n".join(describe(p) for p in plans))
        return 0
    if args.lines_per_day is None:
        parser.error("give the log lines a day (or --tiers)")
    try:
        result = plan(parse_volume(args.lines_per_day), args.headroom, args.retention_days, args.searches_per_second, rates)
    except ValueError as exc:
        parser.error(str(exc))
    print(json.dumps(asdict(result), indent=2) if args.json else describe(result), end="\n" if args.json else "")
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
