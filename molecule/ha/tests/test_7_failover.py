"""The HA tier under load, last (the kills move the primaries): the data host holding the
PostgreSQL primary (and, as the group first formed, the Redis master and a Consul server) is
killed without a word (`podman kill`) while a client searches, ingests and exports through the
balancers' floating address; then the balancer holding the address, beat's host, and a Consul
server with an app host. Measured and printed: seconds until every kind of request succeeds again,
requests failed, lines lost (must be none). The host is
started again and rejoins: Patroni rewinds it into a replica, the sentinels make its Redis a
replica, its Consul server rejoins the quorum."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import time
import urllib.request

import pytest
import yaml

from agent import INDEX_SET, SyslogTraffic, wait_all_shipped
from conftest import (FIGURES, LB as BASE, PGBOUNCER_PORT, ROOT, SCENARIO, VIP, alive, group, host, lead_consul, patroni_roles,
                      patroni_timeline, pgbouncer, pgbouncer_service_clients, run_playbook, wait_until)
from load import Load

APP = "bklog-ha-app"
REDIS_PASSWORD = "ha-redis-0123456789"  # group_vars/all.yml
# redis-cli as the redis role writes it on each data host: over TLS (redis_tls_enabled), to loopback.
REDIS_CLI = f"REDISCLI_AUTH={REDIS_PASSWORD} bklog-redis-cli"
PG_PASSWORD = "ha-pg-0123456789"  # group_vars/all.yml
# A connection opened through the service's settings, then left idle (test_a_planned_switchover_...).
IDLE_CLIENT = "from django.db import connection as c; c.ensure_connection(); import time; time.sleep(240)"
IDLE_CLIENT_NAME = "bklog-idle-probe"  # its application_name (libpq's PGAPPNAME): PgBouncer's SHOW CLIENTS names it
APP_SPEC = yaml.safe_load((ROOT / "bklog" / "app.yml").read_text())


# What the kills and the switchover measured (bench/ha_bench.py turns it into docs/benchmarks.md).
@pytest.fixture(scope="module", autouse=True)
def fresh_figures():
    FIGURES.unlink(missing_ok=True)
    _record("load", Load(BASE, "", "", "").describe())


def _record(key: str, value) -> None:
    figures = json.loads(FIGURES.read_text()) if FIGURES.exists() else {}
    figures[key] = value
    FIGURES.write_text(json.dumps(figures, indent=2))


def redis_master() -> str | None:
    """The master's address as a live sentinel names it."""
    for name in group("bklog_redis"):
        if alive(name):
            out = host(name).run(f"{REDIS_CLI} -p 26379 SENTINEL get-master-addr-by-name bklog")
            if out.rc == 0 and out.stdout.split():
                return out.stdout.split()[0]
    return None


def _plain(output: str) -> str:
    """A playbook's output without colours, its lines joined: a message wrapped over lines reads whole."""
    return " ".join(re.sub(r"\x1b\[[0-9;]*m", "", output).split())


def vip_holders() -> list[str]:
    """The live balancers that have the floating address on an interface."""
    return [name for name in group("bklog_lb")
            if alive(name) and host(name).run(f"ip -o -4 addr show to {VIP}").stdout.strip()]


# status.yml's own pattern (roles/bklog_status), so the test and the operator's report agree.
BEAT_PATTERN = yaml.safe_load((ROOT / "roles" / "bklog_status" / "defaults" / "main.yml")
                              .read_text())["bklog_status_beat_process_pattern"]


def beat_hosts() -> list[str]:
    """The live app hosts where celery beat itself runs (not `consul lock` waiting to run it)."""
    return [name for name in group("bklog_workers")
            if alive(name) and host(name).run(f"pgrep -f {shlex.quote(BEAT_PATTERN)}").rc == 0]


def address(name: str) -> str:
    return yaml.safe_load((SCENARIO / "host_vars" / f"{name}.yml").read_text())["ansible_host"]


def test_the_data_tier_is_whole():
    assert sorted(patroni_roles().values()) == ["primary", "replica", "replica"]
    cluster = json.loads(host(group("bklog_postgresql")[0]).check_output("curl -s http://127.0.0.1:8008/cluster"))
    assert "sync_standby" in {m["role"] for m in cluster["members"]}, cluster  # synchronous_mode (group_vars)
    for name in group("bklog_redis"):
        quorum = host(name).check_output(f"{REDIS_CLI} -p 26379 SENTINEL ckquorum bklog")
        assert quorum.startswith("OK 3 usable"), quorum
    # TLS only (redis_tls_enabled in group_vars): nothing answers in clear, the service's CA is the one.
    for name in group("bklog_redis"):
        for port in (6379, 26379):
            plain = host(name).run(f"REDISCLI_AUTH={REDIS_PASSWORD} redis-cli -h {address(name)} -p {port} PING")
            assert "PONG" not in plain.stdout, (name, port, plain.stdout)
            verified = host(name).run(f"REDISCLI_AUTH={REDIS_PASSWORD} redis-cli --tls --cacert /etc/redis/tls/ca.crt "
                                      f"-h {address(name)} -p {port} PING")
            assert verified.stdout.strip() == "PONG", (name, port, verified.stdout, verified.stderr)
    env = host(APP).file("/etc/bklog/bklog.env").content_string
    assert "BKLOG_REDIS_TLS_CA=/etc/bklog/redis-ca.crt" in env and "REDIS_URL='sentinel://" in env
    members = host(group("bklog_consul_servers")[0]).check_output("consul members")
    assert members.count(" alive ") == 4 or members.count("alive") >= 3, members
    # Gossip encrypted on every agent (consul_encrypt_key in group_vars, required as in prod).
    for name in group("bklog_consul_servers") + group("bklog_workers"):
        serf_lan = host(name).check_output("consul info").split("serf_lan:")[1]
        assert re.search(r"\bencrypted = true\b", serf_lan), (name, serf_lan)
    # PostgreSQL between hosts over TLS only (postgresql_tls_enabled): every connection to the
    # primary from another host (the service's, verifying the name; the replicas' streams) is TLS,
    # and one in clear is refused.
    primary = next(n for n, r in patroni_roles().items() if r == "primary")
    remote = host(primary).check_output(
        "psql -U postgres -Atc \"SELECT a.backend_type || ' ' || s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a"
        " USING (pid) WHERE a.client_addr IS NOT NULL AND host(a.client_addr) NOT IN ('127.0.0.1', '::1')\"").split("\n")
    assert "walsender true" in remote and all(row.endswith(" true") for row in remote), remote
    # The service reaches the primary's PgBouncer (port 6432), over TLS too; PgBouncer reaches its
    # own PostgreSQL over loopback, with a pool smaller than the fleet's processes.
    service = host(APP).check_output(
        "/usr/local/bin/bklog shell -c 'from django.db import connection as c; c.ensure_connection(); "
        "print(c.connection.info.port, c.connection.pgconn.ssl_in_use)'")
    assert service.splitlines()[-1] == f"{PGBOUNCER_PORT} True", service
    pools = [row for row in pgbouncer(primary, "SHOW POOLS") if row[0] == "bklog"]
    assert len(pools) == 1, pools
    assert pgbouncer_service_clients(primary) > 0
    servers = int(host(primary).check_output(
        "psql -U postgres -Atc \"SELECT count(*) FROM pg_stat_activity WHERE usename = 'bklog'\""))
    assert servers <= 20, servers  # postgresql_pgbouncer_pool_size's default
    other = next(n for n in group("bklog_postgresql") if n != primary)
    for port, refusal in ((5432, "no encryption"), (PGBOUNCER_PORT, "SSL required")):
        clear = host(other).run(f"PGPASSWORD={PG_PASSWORD} psql 'host={primary} port={port} dbname=bklog user=bklog "
                                "sslmode=disable' -c 'SELECT 1'")
        assert clear.rc != 0 and refusal in clear.stderr, (port, clear.rc, clear.stderr)
    for name in group("bklog_api"):
        ready = json.loads(host(name).check_output("curl -s http://127.0.0.1/readyz"))
        assert ready["status"] == "ready", (name, ready)
    # One balancer holds the floating address, one host runs beat (the others wait on its lock).
    assert len(vip_holders()) == 1, vip_holders()
    assert len(beat_hosts()) == 1, beat_hosts()
    # status.yml names the primary, each replica's state and lag, the Redis master and replicas.
    run = run_playbook("status.yml")
    assert run.returncode == 0, run.stdout[-3000:]
    primary = next(n for n, r in patroni_roles().items() if r == "primary")
    assert f"primary: {primary}" in run.stdout and "replicas:" in run.stdout and "problems: []" in run.stdout, \
        run.stdout[-3000:]
    # and which app host runs beat, which balancer holds the floating address
    report = _plain(run.stdout)
    assert f"beat_runs_on: - {beat_hosts()[0]}" in report and f"floating_address_on: - {vip_holders()[0]}" in report, \
        run.stdout[-3000:]


def test_preflight_refuses_a_data_tier_one_failure_from_down():
    """A replica's Patroni stopped: preflight (the first play of site.yml and of an upgrade) fails
    naming the PostgreSQL cluster, before anything changes; whole again, it passes."""
    replica = next(n for n, r in patroni_roles().items() if r == "replica")
    host(replica).check_output("systemctl stop patroni")
    try:
        run = run_playbook("preflight.yml", "--limit", ",".join(group("bklog_postgresql")))
        assert run.returncode != 0, run.stdout[-3000:]
        # Its member key gone (2 of 3), or still there until its TTL with the member stopped.
        assert re.search(rf"cluster has 1 primary\(ies\) and (2 of 3 members|3 of 3 members, not streaming: {replica})",
                         _plain(run.stdout)), run.stdout[-3000:]
    finally:
        host(replica).check_output("systemctl start patroni")
        wait_until(lambda: patroni_roles().get(replica) == "replica", f"{replica} streaming again", timeout=120)


def _new_load(admin_token: str) -> tuple[Load, dict]:
    status, body = Load(BASE, "", "", admin_token).request(
        "POST", "/api/v1/index_sets", json.dumps({"name": f"ha-{time.time_ns()}"}).encode())
    assert status == 201, body
    index_set = json.loads(body)
    return Load(BASE, index_set["name"], index_set["ingest_token"], admin_token), index_set


def test_a_planned_switchover_under_load_pauses_writes_briefly(admin_token):
    """playbooks/switchover.yml moves the PostgreSQL primary and the Redis master while the load
    runs: requests refused only with a 503, every accepted line searchable."""
    load, index_set = _new_load(admin_token)
    primary_before, master_before = next(n for n, r in patroni_roles().items() if r == "primary"), redis_master()
    # A client of the service that stays connected and idle through the switchover (as a gunicorn
    # worker or a Celery process between requests): with nothing to tell it, it would stay on the
    # demoted member's PgBouncer and its next write would be refused.
    # Found by its name: a count of clients before and after raced with the service's own
    # connections coming and going (a CI run waited 90 s for a count that one of them had lowered).
    host(APP).check_output(f"PGAPPNAME={IDLE_CLIENT_NAME} nohup /usr/local/bin/bklog shell -c {shlex.quote(IDLE_CLIENT)} "
                           ">/dev/null 2>&1 &")
    wait_until(lambda: any(IDLE_CLIENT_NAME in row for row in pgbouncer(primary_before, "SHOW CLIENTS")),
               "the idle client connected")
    load.start()
    try:
        time.sleep(5)
        run = run_playbook("switchover.yml")
        assert run.returncode == 0, run.stdout[-3000:]
        time.sleep(10)
    finally:
        load.stop()
    assert next(n for n, r in patroni_roles().items() if r == "primary") != primary_before
    assert redis_master() not in (None, master_before)
    # No client stays on the demoted member's PgBouncer, where every write would be refused: its
    # Patroni's callback dropped them and they found the new primary (a client on a replica's
    # PgBouncer only checks that it is read-only and leaves).
    def no_service_client_left() -> bool:
        try:
            return pgbouncer_service_clients(primary_before) == 0
        except AssertionError:  # its console refused: PgBouncer crashed on the callback's KILL
            return False  # (pgbouncer/pgbouncer#1401, seen in CI) and systemd starts it again

    try:
        wait_until(no_service_client_left, f"no service client left on {primary_before}'s PgBouncer", timeout=30)
    finally:
        host(APP).run("pkill -f time.sleep.240")
    restarts = host(primary_before).check_output("systemctl show -p NRestarts --value pgbouncer")
    print(f"PgBouncer restarts by systemd on {primary_before}: {restarts}")
    for failure in load.failures:
        assert failure["status"] == 503, failure
    _requeue_lost_tasks()
    total = _all_lines_searchable(load, index_set)
    figures = {"requests_served": load.served, "requests_failed": len(load.failures),
               "playbook_s": round(run.seconds, 1), "lines_accepted": load.sent_lines, "lines_searchable": total}
    print(f"\nplanned switchover: {json.dumps(figures)}")
    _record("switchover", figures)


def test_a_data_tier_setting_changed_restarts_one_member_at_a_time(admin_token):
    """site.yml with a new Redis and a new Consul setting while the load runs: the Redis members
    restart one at a time, the replicas first and the master after handing over, so the broker
    never stops; the Consul servers one at a time, each after autopilot calls the others healthy,
    so Patroni never loses its store (the PostgreSQL primary stays). Requests refused only with a
    503, every accepted line searchable."""
    load, index_set = _new_load(admin_token)
    master_before = redis_master()
    primary_before = next(n for n, r in patroni_roles().items() if r == "primary")
    timeline_before = patroni_timeline(primary_before)
    load.start()
    try:
        time.sleep(5)
        run = run_playbook("site.yml", "--limit", ",".join(group("bklog_redis")),
                           "-e", "redis_maxmemory=600mb", "-e", "consul_log_level=DEBUG")
        assert run.returncode == 0, run.stdout[-3000:]
        time.sleep(5)
    finally:
        load.stop()
    restarted = re.findall(r"TASK \[redis : Restart redis on (\S+)\]", run.stdout)
    assert sorted(restarted) == sorted(group("bklog_redis")), restarted
    assert address(restarted[-1]) == master_before, (restarted, master_before)  # the master last
    assert redis_master() not in (None, master_before)
    redis = REDIS_CLI
    for name in group("bklog_redis"):
        assert host(name).check_output(f"{redis} -p 6379 CONFIG GET maxmemory").split()[-1] == str(600 * 1024 * 1024), name
    servers = re.findall(r"TASK \[consul : Restart consul on (\S+)\]", run.stdout)
    assert sorted(servers) == sorted(group("bklog_consul_servers")), servers
    assert next(n for n, r in patroni_roles().items() if r == "primary") == primary_before
    assert patroni_timeline(primary_before) == timeline_before, "the primary was demoted and promoted again"
    for failure in load.failures:
        assert failure["status"] == 503, failure
    _requeue_lost_tasks()
    _all_lines_searchable(load, index_set)
    print(f"\nrestarted in turn: Redis {restarted}, Consul {servers}; {load.served} requests served, "
          f"{len(load.failures)} refused ({run.seconds:.0f} s)")


def _kill_under_load(admin_token: str, pick_victim, what: str) -> dict:
    """Kill the host pick_victim() names while the load runs; check and return the figures."""
    load, index_set = _new_load(admin_token)
    load.start()
    try:
        time.sleep(15)
        victim = pick_victim()
        lead_consul(victim)  # the worst host to lose: Consul has to find a new leader too
        primary_before = next(n for n, r in patroni_roles().items() if r == "primary")
        timeline_before = patroni_timeline(primary_before)
        held = {"postgresql_primary": primary_before == victim,
                "redis_master": redis_master() == address(victim), "consul_leader": True}
        subprocess.run(["podman", "kill", victim], check=True, capture_output=True)
        lost_at = time.time()
        new_primary = wait_until(lambda: next((n for n, r in patroni_roles().items() if r == "primary"), None),
                                 "a PostgreSQL primary", timeout=60, every=0.5)
        pg_at = time.time()
        wait_until(lambda: (m := redis_master()) and m != address(victim), "a Redis master on a live host",
                   timeout=60, every=0.5)
        redis_at = time.time()
        time.sleep(30)  # the load goes on against the fleet without the host
    finally:
        load.stop()
    failures = load.failures
    last_failure = max((time.mktime(time.strptime(time.strftime("%Y-%m-%d ") + f["at"], "%Y-%m-%d %H:%M:%S"))
                        for f in failures), default=lost_at)
    figures = {
        "kill": what, "killed": victim, "it_held": [k for k, v in held.items() if v], "primary_after": new_primary,
        "postgresql_primary_after_s": round(pg_at - lost_at, 1), "redis_master_after_s": round(redis_at - lost_at, 1),
        "whole_again_after_s": round(max(0.0, last_failure + 1 - lost_at), 1),
        "requests_served": load.served, "requests_failed": len(failures),
        "failed_by_status": {str(s): sum(1 for f in failures if f["status"] == s) for s in {f["status"] for f in failures}},
    }
    print(f"\n{what}: {json.dumps(figures)}")
    try:
        assert pg_at - lost_at < 30 and redis_at - lost_at < 30, figures
        if not held["postgresql_primary"]:
            # A replica's host lost (with a Consul server, maybe its leader): the primary stays, never
            # demoted while Consul finds a new leader (roles/consul: consul_raft_multiplier).
            assert (new_primary, patroni_timeline(new_primary)) == (primary_before, timeline_before), figures
        for failure in failures:  # refusals inside the failover window, and only the retryable kind
            assert failure["status"] == 503, failure

        # Every line answered 2xx is searchable, once: the pipeline indexes what the broker kept, and
        # the safety net sends again a batch or export whose task went down with the Redis master.
        _requeue_lost_tasks()
        figures["lines_accepted"], figures["lines_searchable"] = load.sent_lines, _all_lines_searchable(load, index_set)

        def exports_finished() -> bool:
            statuses = [json.loads(load.request("GET", f"/api/v1/exports/{job}")[1])["status"] for job in load.export_jobs]
            assert "failed" not in statuses, statuses
            return all(s == "done" for s in statuses)

        _requeue_lost_tasks()
        wait_until(exports_finished, "every export done", timeout=180, every=2)
        figures["exports_done"] = len(load.export_jobs)
    finally:
        # The host comes back (systemd starts Consul, Patroni and Redis) whatever the checks found:
        # a later test must not start a host short (a second kill would then take a quorum).
        subprocess.run(["podman", "start", victim], check=True, capture_output=True)
    # It rejoins as a replica.
    back_at = time.time()
    wait_until(lambda: patroni_roles().get(victim) == "replica", f"{victim} back as a PostgreSQL replica", timeout=180)
    figures["rejoined_as_replica_after_s"] = round(time.time() - back_at, 1)
    assert sorted(patroni_roles().values()) == ["primary", "replica", "replica"]
    wait_until(lambda: "role:slave" in host(victim).run(f"{REDIS_CLI} -p 6379 INFO replication").stdout,
               f"{victim}'s Redis a replica", timeout=120)
    wait_until(lambda: host(victim).run(f"{REDIS_CLI} -p 26379 SENTINEL ckquorum bklog")
               .stdout.startswith("OK 3 usable"), "three sentinels again", timeout=120)
    print(f"{what}, after the host came back: {json.dumps(figures)}")
    return figures


def test_losing_a_data_host_under_load_loses_nothing(admin_token):
    """One at a time: the host of the PostgreSQL primary, then the host of the Redis master (in a
    new group the two often share a host, then the second kill takes both again), each made the
    Consul leader first (a replica's host lost must not demote the primary). rsyslog on the
    other hosts ships all along: BK LOG refuses its batches while the database is away (503), and
    every line still arrives, once."""
    data_hosts = set(group("bklog_postgresql")) | set(group("bklog_redis"))
    syslog = SyslogTraffic(hosts=[h for h in group("bklog_log_agent") if h not in data_hosts]).start()
    try:
        figures = [_kill_under_load(admin_token, lambda: next(n for n, r in patroni_roles().items() if r == "primary"),
                                    "PostgreSQL primary's host killed")]
        _redis_master_off_the_primarys_host()
        figures.append(_kill_under_load(admin_token, lambda: next(n for n in group("bklog_redis") if address(n) == redis_master()),
                                        "Redis master's host killed (a PostgreSQL replica's)"))
    finally:
        syslog.stop()
    _record("kills", figures)
    wait_all_shipped(Load(BASE, INDEX_SET, "", admin_token), syslog)


def _redis_master_off_the_primarys_host() -> None:
    """A Sentinel failover when the Redis master shares the PostgreSQL primary's host (before any
    load): the second kill then always takes a replica's host, the one that must not move the primary."""
    [primary] = [n for n, r in patroni_roles().items() if r == "primary"]
    before = redis_master()
    if before != address(primary):
        return
    host(primary).check_output(f"{REDIS_CLI} -p 26379 SENTINEL FAILOVER bklog")
    wait_until(lambda: all(host(n).run(f"{REDIS_CLI} -p 26379 SENTINEL get-master-addr-by-name bklog").stdout.split()[:1]
                           not in ([before], []) for n in group("bklog_redis")),
               "every sentinel names a master off the PostgreSQL primary's host", timeout=60, every=0.5)


def _requeue_lost_tasks(on: str = APP) -> None:
    """What beat's requeue_pending_batches does every 2 minutes for batches and exports pending
    for 10, now (from the app host `on`): a task the old Redis master had not passed on to its
    replica when it handed over (replication is asynchronous), or that a killed host's worker had
    taken, is sent again; its batch, a row in the database, was never lost."""
    host(on).check_output("/usr/local/bin/bklog shell -c 'from bklog.logs.tasks import requeue_pending_batches as r; r(0)'")


def _all_lines_searchable(load: Load, index_set: dict) -> int:
    """Every line answered 2xx is searchable, and no more than those plus the cut-off requests' (a
    request cut off by a kill may have been stored before its answer was lost)."""
    failed_ingests = sum(1 for f in load.failures if f["what"] == "ingest")

    def indexed() -> int | None:
        status, body = load.request("GET", f"/api/v1/index_sets/{index_set['name']}/search?q={load.run_id}&size=1")
        total = json.loads(body)["total"] if status == 200 else 0
        return total if total >= load.sent_lines else None

    total = wait_until(indexed, f"{load.sent_lines} lines searchable", timeout=180, every=2)
    assert total <= load.sent_lines + failed_ingests * load.lines_per_ingest, (total, load.sent_lines)
    return total


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=0.5) as resp:
            return resp.status == 200
    except Exception:  # refused, timed out: not yet
        return False


def test_losing_the_balancer_with_the_floating_address(admin_token):
    """Kill 3: the balancer holding the address is killed; the other answers on it within 5 s.
    A request cut off inside the dead balancer fails; every other one is served."""
    load, index_set = _new_load(admin_token)
    load.start()
    try:
        time.sleep(10)
        [victim] = vip_holders()
        subprocess.run(["podman", "kill", victim], check=True, capture_output=True)
        lost_at = time.time()
        while not _answers(f"{BASE}/healthz"):
            assert time.time() - lost_at < 30, "the floating address answers from no balancer"
            time.sleep(0.1)
        answered_after = time.time() - lost_at
        time.sleep(15)
    finally:
        load.stop()
    [holder] = vip_holders()
    figures = {"kill": "balancer with the floating address killed", "killed": victim, "address_now_on": holder,
               "address_answers_after_s": round(answered_after, 1), "requests_served": load.served,
               "requests_failed": len(load.failures)}
    print(f"\nbalancer killed: {json.dumps(figures)}")
    assert holder != victim and answered_after < 5, figures
    # Only requests cut off by the dead balancer or sent while the address moved: connection errors,
    # all before it answered again (a load thread retrying at once may be refused more than once
    # in those seconds; the log's times are whole seconds, hence the one second of slack).
    answered_at = lost_at + answered_after
    for failure in load.failures:
        at = time.mktime(time.strptime(time.strftime("%Y-%m-%d ") + failure["at"], "%Y-%m-%d %H:%M:%S"))
        assert failure["status"] is None and at <= answered_at + 1, (failure, figures)
    figures["lines_accepted"], figures["lines_searchable"] = load.sent_lines, _all_lines_searchable(load, index_set)
    # Back, it waits as the backup: the address does not move a second time (nopreempt).
    subprocess.run(["podman", "start", victim], check=True, capture_output=True)
    time.sleep(10)
    assert vip_holders() == [holder]
    _record("balancer", figures)


def _beat_log(name: str) -> list[tuple[float, str]]:
    """(time, entry) of every periodic task a host's beat sent, from its log (a killed host's too,
    started again)."""
    sent = []
    for line in host(name).run("cat /var/log/bklog/bklog-beat.log").stdout.splitlines():
        match = re.search(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),\d+ .*Sending due task (\S+)", line)
        if match:
            sent.append((time.mktime(time.strptime(match[1], "%Y-%m-%d %H:%M:%S")), match[2]))
    return sent


def test_losing_the_beat_host(admin_token):
    """Kill 4: the host running beat is killed; beat runs on the other app host within two
    minutes, and across both hosts' logs no periodic task was sent twice within its period."""
    [victim] = beat_hosts()
    subprocess.run(["podman", "kill", victim], check=True, capture_output=True)
    lost_at = time.time()
    [successor] = wait_until(lambda: beat_hosts() or None, "beat on another host", timeout=120, every=1)
    took_over_after = time.time() - lost_at
    runs = host(successor).check_output(
        "/usr/local/bin/bklog shell -c 'from bklog.logs.models import PeriodicRun as P; "
        "print(list(P.objects.values_list(\"name\", \"host\", \"runs\")))'")
    figures = {"kill": "beat's host killed", "killed": victim, "beat_now_on": successor,
               "beat_runs_after_s": round(took_over_after, 1), "periodic_runs": runs.strip().splitlines()[-1]}
    print(f"\nbeat's host killed: {json.dumps(figures)}")
    assert successor != victim and took_over_after < 120, figures
    subprocess.run(["podman", "start", victim], check=True, capture_output=True)
    wait_until(lambda: alive(victim) and host(victim).run("systemctl is-system-running").stdout.strip()
               in ("running", "degraded"), f"{victim} booted", timeout=120)
    time.sleep(20)
    assert beat_hosts() == [successor], "the host that came back must wait on the lock, not run a second beat"
    periods = {name: float(entry["every_seconds"]) for name, entry in APP_SPEC["celery"]["beat"]["schedule"].items()}
    sent = sorted(_beat_log(victim) + _beat_log(successor))
    for name, every in periods.items():
        times = [at for at, entry in sent if entry == name]
        gaps = [later - earlier for earlier, later in zip(times, times[1:])]
        assert all(gap >= every - 2 for gap in gaps), (name, times)
    _record("beat", figures)


def test_losing_a_consul_server_and_an_app_host_together(admin_token):
    """Kill 5: a Consul server (a data host holding neither the PostgreSQL primary nor the Redis
    master) and the app host not running beat, at once: the balancers send around the lost app
    host and Consul keeps its quorum, so only requests inside the killed app host fail."""
    primary, master = next(n for n, r in patroni_roles().items() if r == "primary"), redis_master()
    consul_server = next(n for n in group("bklog_consul_servers") if n != primary and address(n) != master)
    app_host = next(n for n in group("bklog_api") if n not in beat_hosts())
    load, index_set = _new_load(admin_token)
    load.start()
    try:
        time.sleep(10)
        subprocess.run(["podman", "kill", consul_server, app_host], check=True, capture_output=True)
        time.sleep(40)
    finally:
        load.stop()
    figures = {"kill": "a Consul server and an app host killed", "killed": [consul_server, app_host],
               "requests_served": load.served, "requests_failed": len(load.failures),
               "primary_after": next((n for n, r in patroni_roles().items() if r == "primary"), None)}
    print(f"\nConsul server and app host killed: {json.dumps(figures)}")
    assert figures["primary_after"] == primary, "the primary must not move: it lost nothing"
    assert len(load.failures) <= 4, load.failures  # one in flight per load thread, at most
    survivor = next(n for n in group("bklog_consul_servers") if n != consul_server)
    assert host(survivor).check_output("curl -s 127.0.0.1:8500/v1/status/leader").strip() not in ("", '""')
    # A task the killed host's worker had taken (acks_late, not acknowledged) waits for the
    # visibility timeout; beat's safety net sends its batch again, as here.
    _requeue_lost_tasks(on=next(n for n in group("bklog_api") if n != app_host))
    figures["lines_accepted"], figures["lines_searchable"] = load.sent_lines, _all_lines_searchable(load, index_set)
    subprocess.run(["podman", "start", consul_server, app_host], check=True, capture_output=True)
    wait_until(lambda: patroni_roles().get(consul_server) == "replica", f"{consul_server} back as a replica", timeout=180)
    _record("consul_and_app", figures)
