"""roles/monitoring's prometheus.yml for the HA tier, rendered by Ansible on the controller: with
a Patroni cluster and a Sentinel group it scrapes each member's Patroni and each host's sentinel
(through redis_exporter) under the job names the alert rules read; with one database and one Redis
it does not. `promtool check config` takes the result. (The rules against the real engines' metrics:
tests/engine/test_failover.py.)"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import yaml
from controller_play import ROOT, run_local_play

TASKS = """
    - ansible.builtin.include_vars: {{ file: "{root}/roles/monitoring/defaults/main.yml" }}
    - ansible.builtin.template:
        src: "{root}/roles/monitoring/templates/etc/prometheus/prometheus.yml.j2"
        dest: "{out}"
      vars:
        role_path: "{root}/roles/monitoring"
"""


def render(tmp_path: Path, data_hosts: int, **data_vars) -> dict:
    data = {f"data{i}": data_vars or None for i in range(1, data_hosts + 1)}
    groups = {"bklog": {"children": {"bklog_api": {"hosts": {"api1": None}}, "bklog_workers": {"hosts": {"api1": None}}}},
              "bklog_postgresql": {"hosts": data}, "bklog_redis": {"hosts": data},
              "bklog_monitoring": {"hosts": {"data1": None}}}
    out = tmp_path / "prometheus.yml"
    run_local_play(tmp_path, TASKS.format(root=ROOT, out=out), groups)
    if shutil.which("promtool"):
        (tmp_path / "bklog-alerts.yml").write_text((ROOT / "monitoring" / "bklog-alerts.yml").read_text())
        text = out.read_text().replace("/etc/prometheus/rules/bklog-alerts.yml", str(tmp_path / "bklog-alerts.yml"))
        out.write_text(text)
        check = subprocess.run(["promtool", "check", "config", str(out)], capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr
    return {job["job_name"]: job for job in yaml.safe_load(out.read_text())["scrape_configs"]}


def test_an_ha_data_tier_is_scraped_where_the_alerts_look(tmp_path):
    jobs = render(tmp_path, data_hosts=3)
    assert jobs["patroni"]["static_configs"][0]["targets"] == ["data1:8008", "data2:8008", "data3:8008"]
    sentinel = jobs["redis_sentinel"]
    assert sentinel["metrics_path"] == "/scrape" and sentinel["params"] == {"target": ["redis://localhost:26379"]}
    assert sentinel["static_configs"][0]["targets"] == ["data1:9121", "data2:9121", "data3:9121"]


def test_sentinels_over_tls_are_scraped_by_the_name_their_certificates_carry(tmp_path):
    sentinel = render(tmp_path, data_hosts=3, redis_tls_enabled=True)["redis_sentinel"]
    assert "params" not in sentinel
    assert sentinel["relabel_configs"] == [{"source_labels": ["__address__"], "regex": "(.+):[0-9]+",
                                            "target_label": "__param_target", "replacement": "rediss://$1:26379"}]


def test_one_database_and_one_redis_have_no_ha_jobs(tmp_path):
    jobs = render(tmp_path, data_hosts=1)
    assert "patroni" not in jobs and "redis_sentinel" not in jobs
    assert "postgres" in jobs and "redis" in jobs
