"""scripts/capacity_plan.py: the guide's capacity table with its headroom, and inventory skeletons
that Ansible reads and that look like the stag and prod examples."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
import capacity_plan  # noqa: E402


@pytest.mark.parametrize("lines, api, workers, database", [
    (10_000_000, 2, 4, "primary-replica"),
    (79_999_999, 2, 4, "primary-replica"),       # x1.25 stays under 100 M
    (80_000_000, 4, 8, "cluster"),               # x1.25 = 100 M: the next tier
    (350_000_000, 4, 8, "cluster"),
    (400_000_000, 8, 16, "sharded cluster"),     # x1.25 = 500 M
    (1_000_000_000, 20, 40, "sharded cluster"),  # the top tier in proportion: 1.25 G / 500 M = 2.5
])
def test_the_guide_table_with_headroom(lines, api, workers, database):
    plan = capacity_plan.plan(lines, rates={})  # no measured rates: the table alone
    assert (plan.api_instances, plan.worker_hosts, plan.database) == (api, workers, database)
    assert sum(plan.workers_by_queue.values()) == plan.worker_hosts


def test_headroom_moves_the_tier_boundary():
    assert capacity_plan.plan(70_000_000, headroom=0.2, rates={}).api_instances == 2   # 84 M
    assert capacity_plan.plan(78_000_000, headroom=0.3, rates={}).api_instances == 4   # 101.4 M


@pytest.mark.parametrize("args, message", [
    (["eighty"], "lines a day must be a number like 80000000, 8e7 or 80M (got 'eighty')"),
    (["0"], "lines a day must be above 0"),
    (["80M", "--headroom", "0.5"], "headroom must be from 0.2 to 0.3, as the guide advises (got 0.5)"),
    (["80M", "--retention-days", "0"], "retention days must be from 1 to 3650, as an index set's (got 0)"),
    (["80M", "--searches-per-second", "nan"], "searches per second must be a number from 0 (got nan)"),
    (["80M", "--rates", "/nonexistent.yml"], "--rates /nonexistent.yml: no such file"),
    ([], "give the log lines a day (or --tiers)"),
])
def test_bad_input_is_named(args, message):
    run = subprocess.run([sys.executable, str(ROOT / "scripts" / "capacity_plan.py"), *args], capture_output=True, text=True)
    assert run.returncode == 2 and message in run.stderr


def test_json_and_units():
    run = subprocess.run([sys.executable, str(ROOT / "scripts" / "capacity_plan.py"), "0.3G", "--json"],
                         capture_output=True, text=True, check=True)
    plan = json.loads(run.stdout)
    assert plan["lines_per_day"] == 300_000_000 and plan["api_instances"] == 4


def graph(inventory: Path) -> dict:
    out = subprocess.run([str(Path(sys.executable).parent / "ansible-inventory"), "-i", str(inventory), "--list"],
                         capture_output=True, text=True, check=True).stdout
    data = json.loads(out)
    return {group: len(body.get("hosts", [])) for group, body in data.items() if group not in ("_meta", "all")}


@pytest.mark.parametrize("lines, example", [("50M", "stag"), ("200M", "prod")])
def test_skeleton_matches_the_example_inventory_of_its_tier(tmp_path, lines, example):
    out = tmp_path / "inv"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "capacity_plan.py"), lines, "--inventory", str(out),
                    "--env", example], check=True, capture_output=True)
    assert graph(out) == graph(ROOT / "inventories" / example)
    for queue in ("pipeline", "async_export", "default"):
        vars_file = yaml.safe_load((out / "group_vars" / f"bklog_workers_{queue}" / "main.yml").read_text())
        assert vars_file["celery_workers_enabled"] == [queue]
    # A second run refuses to overwrite what the operator may have edited.
    again = subprocess.run([sys.executable, str(ROOT / "scripts" / "capacity_plan.py"), lines, "--inventory", str(out)],
                           capture_output=True, text=True)
    assert again.returncode == 2 and "exists: choose a new directory" in again.stderr


def test_the_worker_programs_and_their_shares_are_app_yml_s():
    programs = yaml.safe_load((ROOT / "bklog" / "app.yml").read_text())["celery"]["workers"]
    split = capacity_plan.plan(1_000_000_000, rates={}).workers_by_queue  # 40 worker hosts
    assert list(split) == [w["name"] for w in programs]
    total = sum(w["fleet_share"] for w in programs)
    assert all(split[w["name"]] >= 40 * w["fleet_share"] // total for w in programs) and sum(split.values()) == 40


# Rates as bench/service_bench.py and bench/backend_bench.py write them (--write), made up so that
# each rule shows: PostgreSQL searched 10 M lines within 200 ms p95 (histograms aside), not 50 M.
KINDS_WITHIN = {"common word": 12, "phrase": 150, "histogram, week": 4000}
RATES = {"postgres": {
    "service": {"pipeline_tasks_per_second": 10, "pipeline_lines_per_task": 100, "ingest_lines_per_second": 500,
                "search_per_second": 100, "healthz_per_second": 1000},
    "search": {10_000_000: {"p95_ms": KINDS_WITHIN, "stopped_at_timeout": {}},
               50_000_000: {"p95_ms": {**KINDS_WITHIN, "phrase": 250}, "stopped_at_timeout": {}},
               20_000_000: {"p95_ms": KINDS_WITHIN, "stopped_at_timeout": {"phrase": 1}}}}}


def test_the_log_index_stays_on_postgresql_while_it_searched_the_lines_held_within_target():
    assert capacity_plan.searchable_lines(RATES["postgres"]) == 10_000_000  # 50 M missed one kind, 20 M stopped one
    on_database = capacity_plan.plan(1_000_000, retention_days=10, rates=RATES)  # 10 M held
    assert on_database.log_index == "postgresql" and on_database.lines_held == 10_000_000
    beyond = capacity_plan.plan(1_000_000, retention_days=11, rates=RATES)
    assert beyond.log_index == "opensearch"
    assert "PostgreSQL kept every search kind's p95 under 200 ms up to 10,000,000 lines" in " ".join(beyond.reasons)
    assert capacity_plan.plan(1_000_000, rates={}).log_index == "opensearch"  # nothing measured: nothing promised


def test_measured_rates_are_the_floor_under_the_guide_table():
    plan = capacity_plan.plan(400_000_000, headroom=0.2, rates=RATES)  # 480 M planned: 5,556 lines/s
    assert plan.workers_by_queue["pipeline"] == 6    # at 1,000 lines/s per program (the table gives 4)
    assert plan.worker_hosts == 2 + 2 + 6
    assert plan.api_instances == 12                  # 5,556 lines/s at 500 per instance (the table gives 4)
    assert any("6 pipeline worker hosts" in r for r in plan.reasons)
    with_searches = capacity_plan.plan(400_000_000, headroom=0.2, searches_per_second=250, rates=RATES)
    assert with_searches.api_instances == 12 + 3
    # Below the rates' floor the table stands.
    assert capacity_plan.plan(1_000_000, rates=RATES).api_instances == 2


def test_the_committed_rates_give_every_tier_a_plan_and_a_log_index():
    rates = capacity_plan.measured_rates()
    assert "postgres" in rates and "sqlite" in rates
    run = subprocess.run([sys.executable, str(ROOT / "scripts" / "capacity_plan.py"), "--tiers", "--json"],
                         capture_output=True, text=True, check=True)
    plans = json.loads(run.stdout)
    assert [p["database"] for p in plans] == ["primary-replica", "cluster", "sharded cluster"]
    assert all(p["log_index"] in ("postgresql", "opensearch") and p["reasons"] for p in plans)


def test_a_plan_from_other_rates_and_its_skeleton(tmp_path):
    rates = tmp_path / "rates.yml"
    rates.write_text(yaml.safe_dump({"backends": RATES}))
    script = [sys.executable, str(ROOT / "scripts" / "capacity_plan.py")]
    small = subprocess.run(script + ["1M", "--retention-days", "10", "--rates", str(rates), "--inventory", str(tmp_path / "a")],
                           capture_output=True, text=True, check=True)
    assert "log index:      postgresql" in small.stdout
    assert graph(tmp_path / "a").get("bklog_opensearch", 0) == 0
    subprocess.run(script + ["2M", "--rates", str(rates), "--inventory", str(tmp_path / "b")], check=True, capture_output=True)
    assert graph(tmp_path / "b")["bklog_opensearch"] == 3
    rates.write_text(yaml.safe_dump({"backends": {"postgres": {"service": {**RATES["postgres"]["service"],
                                                                           "ingest_lines_per_second": "fast"}}}}))
    bad = subprocess.run(script + ["1M", "--rates", str(rates)], capture_output=True, text=True)
    assert bad.returncode == 2
    assert "backends.postgres.service.ingest_lines_per_second must be a number above 0 (got 'fast')" in bad.stderr


@pytest.mark.parametrize("text, message", [
    ("backends: [postgres]", "expected a mapping `backends:` of backend names"),
    ("backends: {postgres: fast}", "backends.postgres must be a mapping with `service` and `search` mappings"),
    ("backends: {postgres: {service: {ingest_lines_per_second: 5}}}",
     "backends.postgres.service.pipeline_tasks_per_second must be a number above 0 (got None)"),
    ("backends: {postgres: {search: {ten: {p95_ms: {}}}}}", "backends.postgres.search.ten must be lines held"),
    ("backends: {postgres: {search: {10: {p95_ms: {phrase: slow}}}}}", "backends.postgres.search.10 must be lines held"),
    ("backends: {postgres: {", "not YAML"),
])
def test_a_rates_file_that_is_not_what_the_benches_write_is_named(tmp_path, text, message):
    rates = tmp_path / "rates.yml"
    rates.write_text(text)
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        capacity_plan.measured_rates(rates)
