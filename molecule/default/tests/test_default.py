"""The all-in-one host after `site.yml`: checked from outside through podman exec (testinfra's
podman backend, one exec per check) and through nginx, as a user would."""

from __future__ import annotations

import json
import time
from pathlib import Path

import yaml

from playbooks import PROGRAMS, curl, wait_until

ROOT = Path(__file__).resolve().parents[3]


def test_every_program_running(host):
    status = host.check_output("supervisorctl status")
    for program in PROGRAMS:
        line = next((l for l in status.splitlines() if l.startswith(program + " ")), "")
        assert "RUNNING" in line, f"{program} not RUNNING:\n{status}"


def test_processes_run_as_bklog(host):
    for pattern in ("gunicorn", "celery"):
        users = set(host.check_output(f"ps -eo user:20,args | grep -v grep | grep {pattern} | awk '{{print $1}}'").split())
        assert users == {"bklog"}, f"{pattern} runs as {users}"


def test_environment_file_and_sockets(host):
    env = host.file("/etc/bklog/bklog.env")
    assert env.user == "root" and env.group == "bklog" and env.mode == 0o640
    api_socket = host.file("/run/bklog/gunicorn.sock")
    assert api_socket.is_socket and api_socket.mode == 0o660 and api_socket.group == "www-data"
    supervisor_socket = host.file("/run/supervisor.sock")
    assert supervisor_socket.group == "bklog" and supervisor_socket.mode == 0o770
    world_writable = host.check_output("find / -xdev -type s -perm -o+w 2>/dev/null | grep -v '^/run/systemd' || true")
    assert world_writable == ""


def test_health_through_nginx(host):
    status, body = curl(host, "http://127.0.0.1/healthz")
    assert status == 200 and json.loads(body)["status"] == "ok"
    status, body = wait_until(lambda: (r := curl(host, "http://127.0.0.1/readyz")) and r[0] == 200 and r,
                              "readyz 200")
    assert json.loads(body)["checks"]["broker"] == "ok"
    assert "server: nginx\r" in host.check_output("curl -sSI http://127.0.0.1/healthz").lower()
    assert host.file("/opt/bklog/current/static/bklog/robots.txt").exists
    status, _ = curl(host, "https://localhost/static/bklog/robots.txt")
    assert status == 200


def test_ingest_search_export_through_nginx(host):
    suffix = str(int(time.time()))
    ingest_token = host.check_output(f"bklog create_index_set verify{suffix}")
    api_token = host.check_output(f"bklog create_api_token verify{suffix}")
    status, body = curl(host, "-X", "POST", "-H", f"Authorization: Bearer {ingest_token}",
                        "--data-binary", f"molecule line {suffix}",
                        f"https://localhost/api/v1/index_sets/verify{suffix}/ingest")
    assert status == 202, body

    def found():
        s, b = curl(host, "-H", f"Authorization: Bearer {api_token}",
                    f"https://localhost/api/v1/index_sets/verify{suffix}/search?q=molecule")
        return s == 200 and json.loads(b)["total"] == 1 and json.loads(b)

    result = wait_until(found, "line indexed by the pipeline worker")
    assert result["hits"][0]["message"] == f"molecule line {suffix}"

    status, body = curl(host, "-X", "POST", "-H", f"Authorization: Bearer {api_token}", "-H",
                        "Content-Type: application/json", "-d", '{"q": "molecule", "format": "csv"}',
                        f"https://localhost/api/v1/index_sets/verify{suffix}/exports")
    assert status == 202, body
    job = json.loads(body)["id"]
    wait_until(lambda: json.loads(curl(host, "-H", f"Authorization: Bearer {api_token}",
                                       f"https://localhost/api/v1/exports/{job}")[1])["status"] == "done",
               "export done by the async_export worker")
    status, body = curl(host, "-H", f"Authorization: Bearer {api_token}",
                        f"https://localhost/api/v1/exports/{job}/download")
    assert status == 200 and f"molecule line {suffix}" in body


def test_oversize_ingest_is_refused_by_nginx(host):
    token = host.check_output("bklog create_index_set big-$(date +%s%N)")
    name = host.check_output("bklog shell -c \"from bklog.logs.models import IndexSet; print(IndexSet.objects.latest('created_at').name)\"").splitlines()[-1]
    host.check_output("head -c 11000000 /dev/zero | tr '\\0' 'a' > /root/big.txt")
    status, body = curl(host, "-X", "POST", "-H", f"Authorization: Bearer {token}", "--data-binary", "@/root/big.txt",
                     f"https://localhost/api/v1/index_sets/{name}/ingest")
    assert status == 413
    assert json.loads(body) == {"error": "request body larger than 10485760 bytes", "param": None}


def test_what_nginx_refuses_itself_is_json_too(host):
    # A request line over nginx's 8k buffers, and a header over them: refused before gunicorn.
    status, body = curl(host, "https://localhost/api/v1/index_sets/x/search?q=" + "a" * 9000)
    assert status == 414 and json.loads(body)["error"] == "request line too long", body
    status, body = curl(host, "-H", "X-Padding: " + "a" * 9000, "https://localhost/healthz")
    assert status == 400 and json.loads(body)["param"] is None, body


def test_worker_stop_waits_longer_than_the_longest_task(host):
    conf = host.file("/etc/supervisor/conf.d/bklog-celery.conf").content_string
    spec = yaml.safe_load((ROOT / "bklog" / "app.yml").read_text())
    longest = max(t["time_limit"] for t in spec["celery"]["tasks"].values())
    stopwait = int(next(l for l in conf.splitlines() if l.startswith("stopwaitsecs=")).split("=")[1])
    assert stopwait > longest and "killasgroup=true" in conf


def test_the_vaults_admin_logs_in_to_the_search_page_through_nginx(host):
    """Issue 19: the role made the first admin from the vault; the page and its hashed static files
    come through nginx (the files with a year's cache)."""
    vault = yaml.safe_load((ROOT / "inventories" / "local" / "group_vars" / "all" / "vault.yml").read_text())
    jar = "-c /tmp/jar -b /tmp/jar"
    host.check_output("rm -f /tmp/jar")
    status, page = curl(host, *jar.split(), "-H", "Accept: text/html", "https://localhost/login/")
    assert status == 200
    token = page.split('name="csrfmiddlewaretoken" value="', 1)[1].split('"', 1)[0]
    status, _ = curl(host, *jar.split(), "-H", "Referer: https://localhost/login/", "--data-urlencode", f"csrfmiddlewaretoken={token}",
                     "--data-urlencode", "username=admin", "--data-urlencode", f"password={vault['vault_bklog_admin_password']}",
                     "https://localhost/login/")
    assert status == 302
    status, page = curl(host, *jar.split(), "-H", "Accept: text/html", "https://localhost/")
    assert status == 200 and 'id="page-config"' in page
    script = page.split('<script src="', 1)[1].split('"', 1)[0]
    assert script.startswith("/static/bklog/search.") and script != "/static/bklog/search.js"  # its hashed name
    headers = host.check_output(f"curl -sS -o /dev/null -D - https://localhost{script}")
    assert " 200" in headers.splitlines()[0] and "max-age=31536000" in headers, headers
