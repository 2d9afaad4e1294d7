"""A drill for each failure of docs/runbooks.md, on the converged fleet: cause it, see its alert at
the monitoring host's Prometheus, run the runbook's diagnosis commands and check that they show it,
apply the runbook's fix and see the service come back.

An alert counts once Prometheus holds it pending or firing: its expression is true on the real
metrics. The `for:` durations are unit-tested by promtool (monitoring/bklog-alerts.test.yml), and
test_3_monitoring waits one out to the webhook (service-down: a stopped worker program), so these
drills do not wait out five minutes each. Runs after test_3_monitoring and before
test_4_operations, whose status.yml must find the fleet healthy again.

Network faults are made from outside the host, as the network would make them: iptables in the
host's network namespace (nsenter from this machine) refusing connections to a port, as a stopped
server or a rejecting firewall does."""

from __future__ import annotations

import json
import subprocess
import threading
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import yaml

from conftest import PGBOUNCER_PORT, SCENARIO, group, host, patroni_roles, playbook, prometheus, wait_until

APP, APP2 = group("bklog_api")[:2]


def address(name: str) -> str:
    return yaml.safe_load((SCENARIO / "host_vars" / f"{name}.yml").read_text())["ansible_host"]


def alert_state(alert: str, **labels: str) -> str | None:
    """'pending' or 'firing' for the alert with these labels at Prometheus, else None."""
    for a in prometheus("alerts")["alerts"]:
        if a["labels"]["alertname"] == alert and all(a["labels"].get(k) == v for k, v in labels.items()):
            return a["state"]
    return None


def wait_for_alert(alert: str, timeout: float = 150, **labels: str) -> str:
    # A state written or a metric changed, a scrape and an evaluation: 5 s each (group_vars).
    return wait_until(lambda: alert_state(alert, **labels), f"{alert} {labels} pending or firing", timeout=timeout, every=3)


def wait_for_clear(alert: str, timeout: float = 90, **labels: str) -> None:
    wait_until(lambda: alert_state(alert, **labels) is None, f"{alert} {labels} to clear", timeout=timeout, every=3)


def readyz(name: str) -> dict:
    return json.loads(host(name).check_output("curl -s 127.0.0.1/readyz"))


@contextmanager
def refused(name: str, *ports: int):
    """Connections from the host to these ports refused (a reset), until the block ends."""
    pid = subprocess.run(["podman", "inspect", "-f", "{{.State.Pid}}", name], capture_output=True, text=True,
                         check=True).stdout.strip()
    rule = ["OUTPUT", "-p", "tcp", "-m", "multiport", "--dports", ",".join(map(str, ports)),
            "-j", "REJECT", "--reject-with", "tcp-reset"]
    iptables = ["nsenter", "-t", pid, "-n", "iptables"]
    subprocess.run([*iptables, "-I", *rule], check=True)
    try:
        yield
    finally:
        subprocess.run([*iptables, "-D", *rule], check=True)


def _get(url: str, token: str) -> int:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            response.read()
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_database_unreachable():
    """docs/runbooks.md#database-unreachable, from one API host."""
    database = group("bklog_postgresql")[0]
    with refused(APP2, PGBOUNCER_PORT):  # the service's port: each member's PgBouncer
        assert wait_for_alert("BklogDatabaseUnreachable", instance=f"{APP2}:80")
        ready = readyz(APP2)
        assert "database" in ready["failed"], ready
        app2 = host(APP2)
        # Step 1: the service's own connection, with its credentials.
        step1 = app2.run("bklog shell -c \"from django.db import connection; connection.ensure_connection(); print('ok')\"")
        assert step1.rc != 0 and "OperationalError" in step1.stdout + step1.stderr, step1
        # Step 3: the network to the database host.
        assert app2.run(f"timeout 3 bash -c '</dev/tcp/{database}/{PGBOUNCER_PORT}'").rc != 0
        # The other API host serves meanwhile.
        assert readyz(APP)["status"] == "ready"
    # The fix (the network back): ready again, the alert clears.
    wait_until(lambda: readyz(APP2)["status"] == "ready", f"{APP2} ready again", timeout=60)
    wait_for_clear("BklogDatabaseUnreachable", instance=f"{APP2}:80")


def test_broker_unreachable():
    """docs/runbooks.md#broker-unreachable: Redis and its sentinels refused from one API host."""
    with refused(APP2, 6379, 26379):
        assert wait_for_alert("BklogBrokerUnreachable", instance=f"{APP2}:80")
        ready = readyz(APP2)
        assert ready["failed"] == ["broker"], ready
        app2 = host(APP2)
        # Step 2: the sentinels REDIS_URL names, and the network to them.
        url = app2.check_output("grep ^REDIS_URL= /etc/bklog/bklog.env")
        sentinel = group("bklog_redis")[0]
        assert f"@{sentinel}:26379" in url, url
        assert app2.run(f"timeout 3 bash -c '</dev/tcp/{sentinel}/26379'").rc != 0
    wait_until(lambda: readyz(APP2)["status"] == "ready", f"{APP2} ready again", timeout=60)
    wait_for_clear("BklogBrokerUnreachable", instance=f"{APP2}:80")
    # Its workers reconnected (or supervisor restarted them): every program RUNNING.
    wait_until(lambda: all(" RUNNING " in line for line in host(APP2).check_output("supervisorctl status").splitlines()),
               f"every program RUNNING on {APP2}", timeout=60, every=3)


def test_task_backlog(new_load):
    """docs/runbooks.md#task-backlog: the pipeline workers stopped on every host while ingest goes
    on; more than 1,000 tasks wait; started again, the queue drains and every line is searchable."""
    load = new_load()
    workers = group("bklog_workers")
    program = "bklog-worker-pipeline"
    for name in workers:
        host(name).check_output(f"supervisorctl stop {program}")
    batches = 1100
    try:
        def ingest(seq: int) -> int:
            return load.request("POST", f"/api/v1/index_sets/{load.index_set}/ingest",
                                f"{load.run_id} backlog b{seq} one\n{load.run_id} backlog b{seq} two".encode(),
                                load.ingest_token, "text/plain")[0]

        with ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(ingest, range(batches)))
        assert set(statuses) <= {200, 202}, {s: statuses.count(s) for s in set(statuses)}
        assert wait_for_alert("BklogCeleryBacklog", queue="pipeline")
        # Step 1: which queue, from any API host's /metrics.
        metrics = host(APP).check_output("curl -s 127.0.0.1/metrics | grep '^bklog_celery_queue_length'")
        waiting = {line.split('"')[1]: float(line.split()[-1]) for line in metrics.splitlines()}
        assert waiting["pipeline"] > 1000, waiting
        # Step 2: are its workers alive.
        assert "STOPPED" in host(workers[0]).run(f"supervisorctl status '{program}'").stdout
    finally:
        # Step 4's fix, capacity back (here: the stopped programs).
        for name in workers:
            host(name).check_output(f"supervisorctl start {program}")
    query = urllib.parse.quote(f'"{load.run_id}"')

    def searchable() -> int:
        status, body = load.request("GET", f"/api/v1/index_sets/{load.index_set}/search?q={query}&size=1")
        return status == 200 and json.loads(body)["total"] == 2 * batches

    wait_until(searchable, f"all {2 * batches} lines searchable", timeout=240, every=5)
    wait_for_clear("BklogCeleryBacklog", queue="pipeline", timeout=120)


def test_slow_api(admin_token, new_load):
    """docs/runbooks.md#slow-api: a session on the PostgreSQL primary holds a lock on the lines
    again and again (as a long maintenance statement would), so searches wait on it; the runbook's
    commands show the slow requests and the waiting statements; ending that session is the fix."""
    load = new_load()
    log_start = int(host(APP2).check_output("wc -l < /var/log/nginx/bklog.access.log")) + 1
    primary = next(name for name, role in patroni_roles().items() if role == "primary")
    holder = threading.Thread(target=host(primary).run, args=(
        "for i in $(seq 200); do echo 'BEGIN; LOCK TABLE logs_logline IN ACCESS EXCLUSIVE MODE; "
        "SELECT pg_sleep(1.5); COMMIT;'; done | PGAPPNAME=bklog-drill psql -U postgres -d bklog -q -o /dev/null",),
        daemon=True)
    holder.start()
    stop = threading.Event()
    api2 = f"http://{address(APP2)}"
    # Who holds a lock that a statement waits for (runbook step 2).
    blockers = ("psql -U postgres -d bklog -Atc \"SELECT DISTINCT b.application_name FROM pg_stat_activity w "
                "JOIN pg_stat_activity b ON b.pid = ANY (pg_blocking_pids(w.pid)) WHERE w.wait_event_type = 'Lock'\"")

    def search():  # straight to one API host: the alert is per host
        while not stop.is_set():
            _get(f"{api2}/api/v1/index_sets/{load.index_set}/search?q=payment&size=20", admin_token)

    clients = [threading.Thread(target=search, daemon=True) for _ in range(2)]
    for client in clients:
        client.start()
    try:
        # Step 1: the slowest of the recent requests in nginx's access log (its last field, the
        # upstream's time): one that reads or writes the lines, a search or the load's ingest (the
        # lock holds both back: a CI run found a `_bulk` the slowest). (The runbook reads the last
        # 2,000 lines; here, the lines since the drill began, whatever came before.)
        def slowest() -> list[str] | None:
            line = host(APP2).check_output(
                f"tail -n +{log_start} /var/log/nginx/bklog.access.log | awk '{{sub(/^urt=/, \"\", $NF); print $NF, $7}}' "
                "| sort -n | tail -n 1").split()
            return line if len(line) == 2 and float(line[0]) > 1 else None

        path = wait_until(slowest, "a request slower than 1 s in nginx's log", timeout=60)[1]
        assert any(kind in path for kind in ("/search", "/_bulk", "/ingest")), path
        assert wait_for_alert("BklogApiSlow", timeout=240, instance=f"{APP2}:80")
        # Step 2: the statements over log_min_duration_statement in the primary's log, and who
        # makes them wait.
        assert "duration:" in host(primary).check_output("journalctl -u patroni --since -5min | grep 'duration:' | tail -n 3")
        blocking = wait_until(lambda: host(primary).check_output(blockers).split(), "a statement waiting on a lock",
                              timeout=20)
        assert blocking == ["bklog-drill"], blocking
    finally:
        stop.set()
        # The fix: end the session that holds the lock.
        host(primary).check_output("psql -U postgres -Atc \"SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                   "WHERE application_name = 'bklog-drill'\"")
        holder.join(timeout=30)
        for client in clients:
            client.join(timeout=60)
    # Back: nothing waits on a lock any more, and a search answers.
    assert host(primary).check_output(blockers) == ""
    assert _get(f"{api2}/api/v1/index_sets/{load.index_set}/search?q=payment&size=20", admin_token) == 200


def test_not_in_consul():
    """docs/runbooks.md#not-registered-in-consul: the API's registration lost from its host's agent;
    restarting the API registers it again (step 2)."""
    app = host(APP)

    def api_ids() -> list[str]:
        services = json.loads(app.check_output("curl -s http://127.0.0.1:8500/v1/agent/services"))
        return [sid for sid, service in services.items() if service["Service"] == "bklog-api"]

    [service_id] = api_ids()
    app.check_output(f"curl -sf -X PUT http://127.0.0.1:8500/v1/agent/service/deregister/{service_id}")
    try:
        assert wait_for_alert("BklogNotInConsul", instance=f"{APP}:80")
        # Step 1: the agent itself is fine and in the cluster; step 2: the API's log says it registered once.
        assert APP in app.check_output("consul members")
        assert "registered bklog-api" in app.check_output("grep -i 'registered\\|registration' /var/log/bklog/bklog-api.log | tail -n 3")
        assert api_ids() == []
    finally:
        app.check_output("supervisorctl restart bklog-api")
    wait_until(api_ids, "the API registered again", timeout=60)
    wait_for_clear("BklogNotInConsul", instance=f"{APP}:80")


def test_dependencies_broken():
    """docs/runbooks.md#service-down, step 5 (依赖安装): a package removed from the running release
    by hand; the program restarted cannot start; `uv pip check` names the package; site.yml on
    that host rebuilds the release and restarts its programs."""
    app2 = host(APP2)
    program = "bklog-worker-default"
    app2.check_output("/opt/bklog/bin/uv pip uninstall --python /opt/bklog/current/venv/bin/python pyyaml")
    app2.run(f"supervisorctl restart {program}")
    assert wait_for_alert("BklogProgramNotRunning", instance=f"{APP2}:9100", name=program)
    assert "ModuleNotFoundError: No module named 'yaml'" in app2.check_output(f"tail -n 30 /var/log/bklog/{program}.log")
    check = app2.run("/opt/bklog/bin/uv pip check --python /opt/bklog/current/venv/bin/python")
    assert check.rc != 0 and "pyyaml" in (check.stdout + check.stderr).lower(), check
    run = playbook("site.yml", "--limit", APP2)
    assert run.returncode == 0, run.stdout[-3000:]
    assert "is broken and will be rebuilt" in run.stdout
    assert app2.run("/opt/bklog/bin/uv pip check --python /opt/bklog/current/venv/bin/python").rc == 0
    states = app2.check_output("supervisorctl status")
    assert all(" RUNNING " in line for line in states.splitlines()), states
    wait_for_clear("BklogProgramNotRunning", instance=f"{APP2}:9100", name=program, timeout=120)
