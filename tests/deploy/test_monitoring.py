"""The alert rules: every alert of the guide is there, each points at a runbook section that
exists. (promtool checks and unit-tests the rules themselves in scripts/test.sh.)"""

import sys
from pathlib import Path

import pytest
import yaml
from ansible.errors import AnsibleFilterError
from controller_play import run_local_play

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "plugins" / "filter"))


def test_every_guide_alert_has_a_rule_and_a_runbook():
    rules = [r for g in yaml.safe_load((ROOT / "monitoring" / "bklog-alerts.yml").read_text())["groups"] for r in g["rules"]]
    names = {r["alert"] for r in rules}
    assert {"BklogProgramNotRunning", "BklogApiSlow", "BklogApiErrors", "BklogCeleryBacklog",
            "BklogDatabaseConnections", "BklogDiskFull", "BklogRedisMemory"} <= names
    # The high-availability tier's (issue 15): failovers, a lagging or missing replica, no quorum, no beat.
    assert {"BklogPostgresFailover", "BklogPostgresNoPrimary", "BklogPostgresMemberDown", "BklogPostgresReplicationLag",
            "BklogRedisFailover", "BklogRedisSentinelNoQuorum", "BklogRedisReplicaMissing", "BklogBeatNotRunning"} <= names
    # A drill's each (issue 20): a dependency away from an API host, the API missing from Consul.
    assert {"BklogDatabaseUnreachable", "BklogBrokerUnreachable", "BklogIndexUnavailable", "BklogNotInConsul"} <= names
    runbooks = (ROOT / "docs" / "runbooks.md").read_text()
    for rule in rules:
        anchor = rule["annotations"]["runbook"].split("#", 1)[1]
        assert f"\n## {anchor}\n" in runbooks, f"{rule['alert']}: no section '## {anchor}' in docs/runbooks.md"


def test_status_thresholds_are_the_alert_rules(tmp_path):
    """bklog_status judges a backlog and a disk by the thresholds of the alerts Prometheus
    evaluates (plugins/filter/bklog_alerts.py), the monitoring role's rules file included when an
    inventory names its own."""
    rules = yaml.safe_load((ROOT / "monitoring" / "bklog-alerts.yml").read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            if rule.get("alert") == "BklogCeleryBacklog":
                rule["expr"] = rule["expr"].replace("> 1000", "> 2500")
            if rule.get("alert") == "BklogDiskFull":
                rule["expr"] = rule["expr"].replace("> 0.85", "> 0.7")
    (tmp_path / "rules.yml").write_text(yaml.safe_dump(rules))
    check = """
    - name: Load bklog_status's defaults only
      ansible.builtin.import_role:
        name: bklog_status
        tasks_from: report
      when: false
    - name: The thresholds are the rules'
      ansible.builtin.assert:
        that:
          - bklog_status_max_backlog | int == expected_backlog
          - bklog_status_max_disk_percent | int == expected_disk
"""
    # role_path: the assert reads the role's defaults from outside the role, where Ansible sets none.
    here = {"role_path": str(ROOT / "roles" / "bklog_status")}
    run_local_play(tmp_path, check, {}, {**here, "expected_backlog": 1000, "expected_disk": 85})
    run_local_play(tmp_path, check, {}, {**here, "expected_backlog": 2500, "expected_disk": 70,
                                         "monitoring_rules_file": str(tmp_path / "rules.yml")})


def test_a_rules_file_without_the_alert_is_refused():
    from bklog_alerts import bklog_alert_threshold  # plugins/filter, on sys.path below
    rules = {"groups": [{"rules": [{"alert": "BklogCeleryBacklog", "expr": "max(x) > 1000"},
                                   {"alert": "BklogDiskFull", "expr": "1 - a / b > 0.85"},
                                   {"alert": "Odd", "expr": "up == 0"}]}]}
    assert bklog_alert_threshold(rules, "BklogCeleryBacklog") == 1000
    assert bklog_alert_threshold(rules, "BklogDiskFull") == 0.85
    for alert, says in [("Missing", "0 alerts named"), ("Odd", "does not end with")]:
        with pytest.raises(AnsibleFilterError, match=says):
            bklog_alert_threshold(rules, alert)
