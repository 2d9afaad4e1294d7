"""BK LOG with its log index on OpenSearch (roles/opensearch): the node as the role installs it,
and the service using it through nginx, as a user would, including while it restarts."""

from __future__ import annotations

import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
import testinfra

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "shared"))
from playbooks import wait_until  # noqa: E402

SEARCH = testinfra.get_host("podman://bklog-os-search")
APP = testinfra.get_host("podman://bklog-os-app")
NODE = "http://bklog-os-search:9200"


def curl(host, *args: str) -> tuple[int, str]:
    out = host.check_output("curl -sS -o /tmp/body -w '%%{http_code}' " + " ".join(["%s"] * len(args))
                            + "; echo; cat /tmp/body", *args)
    status, _, body = out.partition("\n")
    return int(status), body


def node(path: str):
    status, body = curl(APP, f"{NODE}{path}")
    assert status == 200, body
    return json.loads(body)


@pytest.fixture(scope="module")
def tokens():
    suffix = str(int(time.time()))
    name = f"os{suffix}"
    return name, APP.check_output(f"bklog create_index_set {name}"), APP.check_output(f"bklog create_api_token os{suffix}")


def test_the_node_runs_as_the_role_installed_it():
    service = SEARCH.service("opensearch")
    assert service.is_running and service.is_enabled
    assert SEARCH.check_output("ps -o user:20= -C java").split() == ["opensearch"]
    assert "-Xmx512m" in SEARCH.file("/etc/opensearch/jvm.options.d/heap.options").content_string
    assert SEARCH.file("/opt/opensearch/current").linked_to == "/opt/opensearch/releases/opensearch-2.19.6"
    health = node("/_cluster/health")
    assert health["cluster_name"] == "bklog" and health["status"] in ("green", "yellow")
    modules = {m["name"] for n in node("/_nodes/plugins")["nodes"].values() for m in n["modules"]}
    assert "analysis-common" in modules


def test_the_service_is_configured_for_it_and_ready():
    env = APP.file("/etc/bklog/bklog.env").content_string
    assert "BKLOG_SEARCH_BACKEND=opensearch" in env and f"BKLOG_OPENSEARCH_URL={NODE}" in env
    status, body = wait_until(lambda: (r := curl(APP, "http://127.0.0.1/readyz")) and r[0] == 200 and r, "readyz 200")
    assert json.loads(body)["checks"]["index"].startswith("ok (opensearch")


def _search(tokens, q: str) -> dict:
    """The search's answer; a 503 (OpenSearch unavailable, or its new daily index not ready yet)
    reads as no hits, for the waits below."""
    name, _, api = tokens
    status, body = curl(APP, "-H", f"Authorization: Bearer {api}", f"http://127.0.0.1/api/v1/index_sets/{name}/search?q={q}")
    if status == 503:
        return {"total": -1, "hits": [], "error": json.loads(body)["error"]}
    assert status == 200, body
    return json.loads(body)


def test_lines_go_through_nginx_into_a_daily_index_and_come_back(tokens):
    name, ingest, api = tokens
    status, body = curl(APP, "-X", "POST", "-H", f"Authorization: Bearer {ingest}", "-H", "Content-Type: application/json",
                        "-d", json.dumps([{"message": "opensearch line one", "level": "info"}, "opensearch line two"]),
                        f"http://127.0.0.1/api/v1/index_sets/{name}/ingest")
    assert status == 202, body
    result = wait_until(lambda: (r := _search(tokens, "opensearch")) and r["total"] == 2 and r, "2 lines searchable")
    assert [h["message"] for h in result["hits"]] == ["opensearch line two", "opensearch line one"]
    today = datetime.now(timezone.utc).strftime("%Y.%m.%d")
    assert node(f"/bklog-{name}.{today}/_count")["count"] == 2
    # field filters and export through the async_export worker, as on the databases
    status, body = curl(APP, "-H", f"Authorization: Bearer {api}",
                        f"http://127.0.0.1/api/v1/index_sets/{name}/search?field.level=info")
    assert [h["message"] for h in json.loads(body)["hits"]] == ["opensearch line one"]
    status, body = curl(APP, "-X", "POST", "-H", f"Authorization: Bearer {api}", "-H", "Content-Type: application/json",
                        "-d", '{"q": "opensearch"}', f"http://127.0.0.1/api/v1/index_sets/{name}/exports")
    job = json.loads(body)["id"]
    wait_until(lambda: json.loads(curl(APP, "-H", f"Authorization: Bearer {api}",
                                       f"http://127.0.0.1/api/v1/exports/{job}")[1])["status"] == "done", "export done")
    status, body = curl(APP, "-H", f"Authorization: Bearer {api}", f"http://127.0.0.1/api/v1/exports/{job}/download")
    assert status == 200 and len(body.splitlines()) == 2


def test_lines_accepted_while_opensearch_restarts_are_indexed_once_it_is_back(tokens):
    name, ingest, _ = tokens
    SEARCH.check_output("systemctl stop opensearch")
    try:
        status, body = wait_until(lambda: (r := curl(APP, "http://127.0.0.1/readyz")) and r[0] == 503 and r, "readyz 503")
        assert json.loads(body)["failed"] == ["index"]
        for i in range(5):  # accepted into the queue: the broker is up
            status, body = curl(APP, "-X", "POST", "-H", f"Authorization: Bearer {ingest}", "--data-binary",
                                f"during the outage {i}", f"http://127.0.0.1/api/v1/index_sets/{name}/ingest")
            assert status == 202, body
    finally:
        SEARCH.check_output("systemctl start opensearch")
    wait_until(lambda: curl(APP, "http://127.0.0.1/readyz")[0] == 200, "readyz 200 again", timeout=180)
    # The pipeline worker's retries (backoff up to a minute) index each batch once.
    wait_until(lambda: _search(tokens, "outage")["total"] == 5, "the 5 lines searchable", timeout=240, every=5)
    time.sleep(5)
    assert _search(tokens, "outage")["total"] == 5
