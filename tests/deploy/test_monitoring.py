"""The alert rules: every alert of the guide is there, each points at a runbook section that
exists. (promtool checks and unit-tests the rules themselves in scripts/test.sh.)"""

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_every_guide_alert_has_a_rule_and_a_runbook():
    rules = [r for g in yaml.safe_load((ROOT / "monitoring" / "bklog-alerts.yml").read_text())["groups"] for r in g["rules"]]
    names = {r["alert"] for r in rules}
    assert {"BklogProgramNotRunning", "BklogApiSlow", "BklogApiErrors", "BklogCeleryBacklog",
            "BklogDatabaseConnections", "BklogDiskFull", "BklogRedisMemory"} <= names
    # The high-availability tier's (issue 15): failovers, a lagging or missing replica, no quorum, no beat.
    assert {"BklogPostgresFailover", "BklogPostgresNoPrimary", "BklogPostgresMemberDown", "BklogPostgresReplicationLag",
            "BklogRedisFailover", "BklogRedisSentinelNoQuorum", "BklogRedisReplicaMissing", "BklogBeatNotRunning"} <= names
    runbooks = (ROOT / "docs" / "runbooks.md").read_text()
    for rule in rules:
        anchor = rule["annotations"]["runbook"].split("#", 1)[1]
        assert f"\n## {anchor}\n" in runbooks, f"{rule['alert']}: no section '## {anchor}' in docs/runbooks.md"
