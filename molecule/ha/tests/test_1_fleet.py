"""The converged fleet, checked against the real Consul agents, PostgreSQL, Redis and the balancers."""

from __future__ import annotations

import json
import urllib.request

from conftest import LB, consul, group, host, wait_until


def test_every_api_host_is_registered_by_gunicorn_with_a_passing_check():
    passing = wait_until(lambda: (lambda s: s if len(s) == len(group("bklog_api")) else None)(
        consul("/v1/health/service/bklog-api?passing=true")), "every bklog-api instance passing")
    assert sorted(entry["Node"]["Node"] for entry in passing) == group("bklog_api")
    for entry in passing:
        # Registered by the gunicorn when_ready hook (no file in /etc/consul.d), checking /readyz.
        assert entry["Service"]["Port"] == 80
        assert any(check["Name"].startswith("Service 'bklog-api' check") or "readyz" in check.get("Output", "")
                   or check["ServiceName"] == "bklog-api" for check in entry["Checks"])
        assert not host(entry["Node"]["Node"]).file("/etc/consul.d/bklog-api.json").exists


def test_every_worker_program_is_in_the_catalog_with_a_passing_check():
    expected = {f"{program}-{h}" for h in group("bklog_workers") for program in ("default", "async_export", "pipeline")}
    passing = wait_until(lambda: (lambda s: s if len(s) == len(expected) else None)(
        consul("/v1/health/service/bklog-worker?passing=true")), "every worker check passing")
    assert {e["Service"]["ID"].removeprefix("bklog-worker-") for e in passing} == expected


def test_stopping_a_worker_program_turns_its_check_critical():
    worker = host(group("bklog_workers")[0])
    check_id = f"bklog-worker-async_export-{group('bklog_workers')[0]}-running"

    def status():
        checks = consul("/v1/health/checks/bklog-worker")
        return next(c["Status"] for c in checks if c["CheckID"] == check_id)

    worker.check_output("supervisorctl stop bklog-worker-async_export")
    try:
        wait_until(lambda: status() == "critical", "the async_export check to turn critical", timeout=40)
    finally:
        worker.check_output("supervisorctl start bklog-worker-async_export")
    wait_until(lambda: status() == "passing", "the async_export check to pass again", timeout=40)


def test_gunicorn_deregisters_on_exit_and_registers_when_ready():
    api_name = group("bklog_api")[0]
    api = host(api_name)

    def nodes():
        # The catalog endpoint names the node as a string (the health endpoint nests it).
        return sorted(e["Node"] for e in consul("/v1/catalog/service/bklog-api"))

    api.check_output("supervisorctl stop bklog-api")
    try:
        wait_until(lambda: api_name not in nodes(), "on_exit to deregister", timeout=30)
    finally:
        api.check_output("supervisorctl start bklog-api")
    wait_until(lambda: api_name in nodes(), "when_ready to register again", timeout=30)
    wait_until(lambda: len(consul("/v1/health/service/bklog-api?passing=true")) == len(group("bklog_api")),
               "both instances passing again")


def test_the_balancer_spreads_over_the_api_hosts_and_shares_one_database(admin_token):
    # Both API hosts answer through the balancer and see the same index sets (one PostgreSQL).
    req = urllib.request.Request(LB + "/api/v1/index_sets", headers={"Authorization": f"Bearer {admin_token}"})
    for _ in range(6):
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert resp.status == 200 and "index_sets" in json.loads(resp.read())
    for name in group("bklog_api"):
        log = host(name).check_output("grep -c 'GET /api/v1/index_sets' /var/log/nginx/bklog.access.log || true")
        assert int(log) >= 1, f"{name} got no request through the balancer"


def test_an_export_downloads_from_every_api_host(new_load):
    """Whichever host's async_export worker wrote the file, every API host answers its download:
    the finished file is in the shared database, not on a worker's disk."""
    load = new_load()
    lines = "\n".join(f"export-check line{i} payment accepted" for i in range(20)).encode()
    assert load.request("POST", f"/api/v1/index_sets/{load.index_set}/ingest", lines, load.ingest_token,
                        "text/plain")[0] in (200, 202)
    wait_until(lambda: json.loads(load.request("GET", f"/api/v1/index_sets/{load.index_set}/search?q=export-check")[1])
               .get("total") == 20, "the 20 lines searchable")
    status, body = load.request("POST", f"/api/v1/index_sets/{load.index_set}/exports", json.dumps({"q": "export-check"}).encode())
    assert status == 202, body
    job = json.loads(body)["id"]
    wait_until(lambda: json.loads(load.request("GET", f"/api/v1/exports/{job}")[1])["status"] == "done", "the export done")
    for name in group("bklog_api"):
        # Straight to that host's nginx, not through the balancer.
        out = host(name).check_output(
            "curl -sS -o /tmp/export.jsonl -w '%%{http_code}' -H %s %s; echo; wc -l < /tmp/export.jsonl",
            f"Authorization: Bearer {load.api_token}", f"http://127.0.0.1/api/v1/exports/{job}/download")
        status, count = out.split()
        assert (status, count) == ("200", "20"), f"{name}: {out}"


def test_the_log_index_is_in_the_database():
    """No bklog_opensearch host: the lines are in PostgreSQL's full-text index (molecule/opensearch
    puts them in an OpenSearch cluster)."""
    for name in group("bklog"):
        env = host(name).file("/etc/bklog/bklog.env").content_string
        assert "BKLOG_SEARCH_BACKEND=database" in env, (name, env)
    ready = json.loads(urllib.request.urlopen(f"{LB}/readyz", timeout=10).read())
    assert ready["status"] == "ready" and not ready["checks"]["index"].startswith("ok (opensearch"), ready
