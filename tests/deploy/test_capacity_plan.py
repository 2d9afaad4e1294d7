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
    plan = capacity_plan.plan(lines)
    assert (plan.api_instances, plan.worker_hosts, plan.database) == (api, workers, database)
    assert sum(plan.workers_by_queue.values()) == plan.worker_hosts


def test_headroom_moves_the_tier_boundary():
    assert capacity_plan.plan(70_000_000, headroom=0.2).api_instances == 2   # 84 M
    assert capacity_plan.plan(78_000_000, headroom=0.3).api_instances == 4   # 101.4 M


@pytest.mark.parametrize("args, message", [
    (["eighty"], "lines a day must be a number like 80000000, 8e7 or 80M (got 'eighty')"),
    (["0"], "lines a day must be above 0"),
    (["80M", "--headroom", "0.5"], "headroom must be from 0.2 to 0.3, as the guide advises (got 0.5)"),
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
    split = capacity_plan.plan(1_000_000_000).workers_by_queue  # 40 worker hosts
    assert list(split) == [w["name"] for w in programs]
    total = sum(w["fleet_share"] for w in programs)
    assert all(split[w["name"]] >= 40 * w["fleet_share"] // total for w in programs) and sum(split.values()) == 40
