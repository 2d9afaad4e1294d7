"""Monitoring (roles/monitoring): the Prometheus on the bklog_monitoring host scrapes Debian's
exporters on every host, each Patroni member, each sentinel (through its host's redis_exporter) and
the service's /metrics, and evaluates monitoring/bklog-alerts.yml; a stopped
worker program fires BklogProgramNotRunning (the scenario's 5 s intervals, and the rule's
production `for: 1m`), which Alertmanager routes to a webhook by its severity, and its resolution."""

from __future__ import annotations

import json

import pytest

from conftest import firing, group, host, prometheus, values, wait_until

DATA1 = "bklog-ha-data1"  # group_vars: monitoring_external_redis, monitoring_external_postgres


def supervisor_report() -> str:
    """What supervisord says on every bklog host: its status and its log's last lines."""
    return "\n".join(f"== {name}\n" + host(name).run(
        "supervisorctl status; tail -n 15 /var/log/supervisor/supervisord.log").stdout for name in group("bklog"))


def test_every_exporter_and_api_host_is_scraped():
    expected = ({f"{h}:9100" for h in group("all")} | {f"{h}:80" for h in group("bklog_api")}
                | {f"{h}:9121" for h in group("bklog_redis")} | {f"{h}:9187" for h in group("bklog_postgresql")}
                | {f"{h}:8008" for h in group("bklog_postgresql")} | {"localhost:9090"}
                # The fleet's own servers' exporters on the monitoring host (group_vars: data1's).
                | {f"rediss://{DATA1}:6379", "localhost:9188"})

    def up():
        targets = prometheus("targets")["activeTargets"]
        return {t["labels"]["instance"] for t in targets if t["health"] == "up"} == expected and targets

    targets = wait_until(up, "every target up", timeout=60)
    # One target per instance, but each Redis host's twice: its Redis and its sentinel.
    assert len(targets) == len(expected) + len(group("bklog_redis")), [t["labels"]["instance"] for t in targets]


def test_the_alerts_have_their_metrics():
    # Each exporter reaches what it watches (not just answers).
    wait_until(lambda: values('redis_up{job="redis"}') == {f"{h}:9121": 1.0 for h in group("bklog_redis")}, "redis_up")
    wait_until(lambda: values('pg_up{job="postgres"}') == {f"{h}:9187": 1.0 for h in group("bklog_postgresql")}, "pg_up")
    assert values("redis_memory_max_bytes > 0"), "Redis has no maxmemory: BklogRedisMemory would never fire"
    # Every bklog program of every host RUNNING, from the textfile writer. Earlier tests restart
    # programs (test_1_fleet stops async_export): a state takes up to a write and a scrape (5 s
    # each) to show, so wait that long; if one stays down, say what supervisord says.
    def all_running():
        programs = values("node_supervisord_up")
        return programs if programs and set(programs.values()) == {1.0} else None

    try:
        programs = wait_until(all_running, "every program RUNNING in node_supervisord_up", timeout=60, every=5)
    except AssertionError as error:
        raise AssertionError(f"{error}: {values('node_supervisord_up')}\n{supervisor_report()}") from None
    assert {key.split(":")[0] for key in programs} == set(group("bklog"))
    assert values("bklog_supervisor_reachable") == {f"{h}:9100": 1.0 for h in group("bklog")}
    # The service's own metrics: queue backlog and database connections.
    assert values("bklog_celery_queue_length"), "no queue length from /metrics"
    assert values("bklog_db_connections_max"), "no connection limit from /metrics"
    # Every rule loaded; nothing firing on a healthy fleet.
    rules = {r["name"] for g in prometheus("rules")["groups"] for r in g["rules"]}
    assert {"BklogProgramNotRunning", "BklogCeleryBacklog", "BklogDiskFull", "BklogRedisMemory"} <= rules
    assert [a for a in prometheus("alerts")["alerts"] if a["state"] == "firing"] == []


def test_the_fleets_own_servers_are_watched_from_the_monitoring_host():
    """monitoring_external_redis and _postgres (group_vars: data1's, as an operator's own servers):
    their exporters on the monitoring host reach them, and their metrics carry the server as instance."""
    wait_until(lambda: values('redis_up{job="redis_external"}') == {f"rediss://{DATA1}:6379": 1.0}, "the external redis_up")
    # What BklogRedisMemory divides by, for this server too.
    assert values('redis_memory_max_bytes{job="redis_external"}')[f"rediss://{DATA1}:6379"] > 0
    backends = wait_until(lambda: values('pg_stat_database_numbackends{job="postgres_external", datname="bklog"}'),
                          "the external PostgreSQL's statistics")
    assert list(backends) == [f"{DATA1}:5432"], backends


# A webhook receiver for the test (group_vars: Alertmanager's critical route posts to it): each
# notification's JSON on one line of NOTIFICATIONS.
NOTIFICATIONS = "/var/tmp/bklog-test-notifications.jsonl"
WEBHOOK = f"""
import http.server

class Receiver(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        with open("{NOTIFICATIONS}", "ab") as out:
            out.write(body.replace(b"\\n", b" ") + b"\\n")
        self.send_response(200)
        self.end_headers()

http.server.HTTPServer(("127.0.0.1", 9099), Receiver).serve_forever()
"""


@pytest.fixture
def webhook():
    """The receiver on the monitoring host, as a transient systemd unit; yields a reader of the
    notifications of BklogProgramNotRunning by status."""
    monitor = host(group("bklog_monitoring")[0])
    monitor.check_output("rm -f %s && printf %s %s > /var/tmp/bklog-test-webhook.py", NOTIFICATIONS, "%s", WEBHOOK)
    monitor.check_output("systemd-run --unit bklog-test-webhook --collect python3 /var/tmp/bklog-test-webhook.py")

    def notified(status: str, program: str) -> list[dict]:
        lines = monitor.run(f"cat {NOTIFICATIONS}").stdout.splitlines()
        return [alert for note in map(json.loads, filter(None, lines)) for alert in note["alerts"]
                if alert["status"] == status and alert["labels"]["alertname"] == "BklogProgramNotRunning"
                and alert["labels"]["name"] == program]
    try:
        yield notified
    finally:
        monitor.run("systemctl stop bklog-test-webhook")


def test_a_stopped_worker_program_fires_its_alert_and_clears_when_started(webhook):
    # Prometheus sends its alerts to the monitoring host's Alertmanager.
    alertmanagers = [a["url"] for a in prometheus("alertmanagers")["activeAlertmanagers"]]
    assert alertmanagers == [f"http://{group('bklog_monitoring')[0]}:9093/api/v2/alerts"], alertmanagers
    name = group("bklog_workers")[0]
    worker = host(name)
    program = "bklog-worker-pipeline"
    worker.check_output(f"supervisorctl stop {program}")
    try:
        # for: 1m, plus up to a state write, a scrape and an evaluation (5 s each here), twice over.
        alerts = wait_until(lambda: firing("BklogProgramNotRunning"), "BklogProgramNotRunning firing",
                            timeout=240, every=5)
        assert [(a["instance"], a["name"]) for a in alerts] == [(f"{name}:9100", program)]
        assert alerts[0]["severity"] == "critical"
        # Alertmanager routes the critical alert to the webhook (group_wait 5 s).
        sent = wait_until(lambda: webhook("firing", program), "the firing notification at the webhook", timeout=60, every=2)
        assert sent[0]["labels"]["instance"] == f"{name}:9100"
    finally:
        worker.check_output(f"supervisorctl start {program}")
    wait_until(lambda: not firing("BklogProgramNotRunning"), "the alert to clear", timeout=120, every=5)
    # And its resolution (send_resolved), at the group's next interval (15 s).
    wait_until(lambda: webhook("resolved", program), "the resolved notification at the webhook", timeout=90, every=2)
