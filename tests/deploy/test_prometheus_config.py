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

# The monitoring role's templates named in {templates} (under templates/etc/, without .j2), each
# rendered into {out} under its base name.
TASKS = """
    - ansible.builtin.include_vars: {{ file: "{root}/roles/monitoring/defaults/main.yml" }}
    - ansible.builtin.template:
        src: "{root}/roles/monitoring/templates/etc/{{{{ item }}}}.j2"
        dest: "{out}/{{{{ item | basename }}}}"
      vars:
        role_path: "{root}/roles/monitoring"
      loop: {templates}
"""


def render(tmp_path: Path, data_hosts: int, **data_vars) -> dict:
    data = {f"data{i}": data_vars or None for i in range(1, data_hosts + 1)}
    groups = {"bklog": {"children": {"bklog_api": {"hosts": {"api1": None}}, "bklog_workers": {"hosts": {"api1": None}}}},
              "bklog_postgresql": {"hosts": data}, "bklog_redis": {"hosts": data},
              "bklog_monitoring": {"hosts": {"data1": None}}}
    out = tmp_path / "prometheus.yml"
    run_local_play(tmp_path, TASKS.format(root=ROOT, out=tmp_path, templates=["prometheus/prometheus.yml"]), groups)
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


def render_alertmanager(tmp_path: Path, monitoring_hosts: list[str], **monitoring_vars) -> tuple[dict, str, dict]:
    """alertmanager.yml (checked by amtool), the service's ARGS and Prometheus's alerting section,
    rendered on the first monitoring host (the controller, as `localhost`); the second one is
    scraped at an address of its own."""
    monitors = {name: {"monitoring_scrape_address": f"10.0.0.{i}"} if i == 2 else None
                for i, name in enumerate(monitoring_hosts, 1)}
    groups = {"bklog": {"children": {"bklog_api": {"hosts": {"api1": None}}}},
              "bklog_monitoring": {"hosts": monitors}}
    templates = ["prometheus/alertmanager.yml", "default/prometheus-alertmanager", "prometheus/prometheus.yml"]
    run_local_play(tmp_path, TASKS.format(root=ROOT, out=tmp_path, templates=templates), groups, extra_vars=monitoring_vars)
    config = tmp_path / "alertmanager.yml"
    if shutil.which("amtool"):
        check = subprocess.run(["amtool", "check-config", str(config)], capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr
    prometheus = yaml.safe_load((tmp_path / "prometheus.yml").read_text())
    return yaml.safe_load(config.read_text()), (tmp_path / "prometheus-alertmanager").read_text(), prometheus


def test_alerts_go_to_the_monitoring_hosts_alertmanager_and_on_by_severity(tmp_path):
    receivers = [{"name": "oncall", "webhook_configs": [{"url": "http://pager.example.net/hook", "send_resolved": True}]},
                 {"name": "team-mail", "email_configs": [{"to": "ops@example.net"}]}, {"name": "nobody"}]
    config, args, prometheus = render_alertmanager(
        tmp_path, ["localhost"], monitoring_alertmanager_receivers=receivers,
        monitoring_alertmanager_severity_receivers={"critical": "oncall", "warning": "team-mail"},
        monitoring_alertmanager_global={"smtp_smarthost": "mail.example.net:25", "smtp_from": "bklog@example.net"})
    assert config["receivers"] == receivers
    assert config["route"]["receiver"] == "nobody"
    assert config["route"]["routes"] == [{"receiver": "oncall", "matchers": ['severity="critical"']},
                                         {"receiver": "team-mail", "matchers": ['severity="warning"']}]
    assert config["inhibit_rules"][0]["source_matchers"] == ['severity="critical"']
    # One monitoring host: no gossip cluster.
    assert 'ARGS="--web.listen-address=:9093 --cluster.listen-address="' in args
    assert prometheus["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == ["localhost:9093"]


def test_several_monitoring_hosts_make_one_alertmanager_cluster(tmp_path):
    _, args, prometheus = render_alertmanager(tmp_path, ["localhost", "mon2", "mon3"],
                                              monitoring_alertmanagers=["am.example.net:9093"])
    assert ('ARGS="--web.listen-address=:9093 --cluster.listen-address=0.0.0.0:9094'
            ' --cluster.peer=10.0.0.2:9094 --cluster.peer=mon3:9094"') in args
    assert prometheus["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == [
        "localhost:9093", "10.0.0.2:9093", "mon3:9093", "am.example.net:9093"]


def test_the_fleets_own_servers_are_scraped_through_exporters_on_the_monitoring_host(tmp_path):
    """monitoring_external_redis / _postgres: the passwords only in the exporters' files (never in
    Prometheus's configuration, whose targets page shows its parameters), each server's address
    its metrics' instance."""
    groups = {"bklog": {"children": {"bklog_api": {"hosts": {"api1": None}}}}, "bklog_monitoring": {"hosts": {"localhost": None}}}
    external = {"monitoring_external_redis": [{"address": "rediss://cache.example.net:6380", "password": "s3cret"},
                                              {"address": "redis://10.0.0.9:6379"}],
                "monitoring_external_postgres": ["postgresql://watch:pg-s3cret@db1.example.net:5432/postgres?sslmode=require",
                                                 "postgresql://watch:pg-s3cret@db2.example.net:5432/postgres"]}
    templates = ["prometheus/prometheus.yml", "prometheus/bklog-external-redis.json", "default/bklog-external-postgres-exporter"]
    run_local_play(tmp_path, TASKS.format(root=ROOT, out=tmp_path, templates=templates), groups, extra_vars=external)
    config = (tmp_path / "prometheus.yml").read_text()
    assert "s3cret" not in config
    jobs = {job["job_name"]: job for job in yaml.safe_load(config)["scrape_configs"]}
    redis = jobs["redis_external"]
    assert redis["metrics_path"] == "/scrape"
    assert redis["static_configs"][0]["targets"] == ["rediss://cache.example.net:6380", "redis://10.0.0.9:6379"]
    assert redis["relabel_configs"][-1] == {"target_label": "__address__", "replacement": "localhost:9122"}
    assert jobs["postgres_external"]["static_configs"][0]["targets"] == ["localhost:9188"]
    assert jobs["postgres_external"]["metric_relabel_configs"][0]["target_label"] == "instance"
    assert yaml.safe_load((tmp_path / "bklog-external-redis.json").read_text()) == {
        "rediss://cache.example.net:6380": "s3cret", "redis://10.0.0.9:6379": ""}
    env = (tmp_path / "bklog-external-postgres-exporter").read_text()
    assert ("DATA_SOURCE_NAME='postgresql://watch:pg-s3cret@db1.example.net:5432/postgres?sslmode=require,"
            "postgresql://watch:pg-s3cret@db2.example.net:5432/postgres'") in env
