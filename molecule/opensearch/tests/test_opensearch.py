"""BK LOG with its log index on a three-node OpenSearch cluster (roles/opensearch): the nodes as
the role installs them, and the service using them through nginx, as a user would, while a node
is lost and while the whole cluster restarts."""

from __future__ import annotations

import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
import testinfra

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "shared"))
from playbooks import curl, run_playbook, wait_until  # noqa: E402

SEARCH = [testinfra.get_host(f"podman://bklog-os-search{i}") for i in (1, 2, 3)]
APP = testinfra.get_host("podman://bklog-os-app")
# The three nodes share search1's address, a port each (molecule.yml).
NODES = [f"http://bklog-os-search1:{port}" for port in (9200, 9201, 9202)]


def node(path: str, url: str = NODES[1]):
    status, body = curl(APP, f"{url}{path}")
    assert status == 200, body
    return json.loads(body)


def green_with_three_nodes():
    health = node("/_cluster/health")
    return health["number_of_nodes"] == 3 and health["status"] == "green" and health


@pytest.fixture(scope="module")
def tokens():
    suffix = str(int(time.time()))
    name = f"os{suffix}"
    return name, APP.check_output(f"bklog create_index_set {name}"), APP.check_output(f"bklog create_api_token os{suffix}")


def test_three_nodes_run_as_the_role_installed_them_and_form_one_cluster():
    for host in SEARCH:
        service = host.service("opensearch")
        assert service.is_running and service.is_enabled
        assert host.check_output("ps -o user:20= -C java").split() == ["opensearch"]
        assert "-Xmx512m" in host.file("/etc/opensearch/jvm.options.d/heap.options").content_string
        assert host.file("/opt/opensearch/current").linked_to == "/opt/opensearch/releases/opensearch-2.19.6"
    health = wait_until(green_with_three_nodes, "a green cluster of 3 nodes")
    assert health["cluster_name"] == "bklog"
    nodes = node("/_nodes/plugins,jvm")["nodes"].values()
    assert sorted(n["name"] for n in nodes) == ["bklog-os-search1", "bklog-os-search2", "bklog-os-search3"]
    assert all("analysis-common" in {m["name"] for m in n["modules"]} for n in nodes)
    # Debian 12's Java 17 and Debian 13's Java 21 in one cluster
    assert {n["jvm"]["version"].split(".")[0] for n in nodes} == {"17", "21"}


def test_the_service_is_configured_for_it_and_ready():
    env = APP.file("/etc/bklog/bklog.env").content_string
    assert "BKLOG_SEARCH_BACKEND=opensearch" in env and f"BKLOG_OPENSEARCH_URL={','.join(NODES)}" in env
    assert "BKLOG_OPENSEARCH_REPLICAS=1" in env
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
    settings = node(f"/bklog-{name}.{today}/_settings")[f"bklog-{name}.{today}"]["settings"]["index"]
    assert settings["number_of_replicas"] == "1"
    wait_until(green_with_three_nodes, "the daily index's replica allocated")
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


def _ingest(tokens, text: str):
    name, ingest, _ = tokens
    status, body = curl(APP, "-X", "POST", "-H", f"Authorization: Bearer {ingest}", "--data-binary",
                        text, f"http://127.0.0.1/api/v1/index_sets/{name}/ingest")
    assert status == 202, body


def test_with_a_node_lost_lines_are_indexed_and_every_line_found(tokens):
    """search1 (the first node in BK LOG's list) stops: the other two keep a cluster manager and
    a copy of every shard (one replica), and the client goes to them."""
    before = _search(tokens, "opensearch")["total"]
    SEARCH[0].check_output("systemctl stop opensearch")
    try:
        wait_until(lambda: node("/_cluster/health")["number_of_nodes"] == 2, "search1 gone from the cluster", timeout=120)
        for i in range(3):
            _ingest(tokens, f"while search1 is down {i}")
        wait_until(lambda: _search(tokens, "search1")["total"] == 3, "the 3 lines searchable without search1", timeout=120)
        assert _search(tokens, "opensearch")["total"] == before
        status, body = curl(APP, "http://127.0.0.1/readyz")
        assert status == 200, body
    finally:
        SEARCH[0].check_output("systemctl start opensearch")
    wait_until(green_with_three_nodes, "search1 back and the cluster green", timeout=180, every=3)
    assert _search(tokens, "search1")["total"] == 3


def test_lines_accepted_while_opensearch_restarts_are_indexed_once_it_is_back(tokens):
    for host in SEARCH:
        host.check_output("systemctl stop opensearch")
    try:
        status, body = wait_until(lambda: (r := curl(APP, "http://127.0.0.1/readyz")) and r[0] == 503 and r, "readyz 503")
        assert json.loads(body)["failed"] == ["index"]
        for i in range(5):  # accepted into the queue: the broker is up
            _ingest(tokens, f"during the outage {i}")
    finally:
        for host in SEARCH:
            host.check_output("systemctl start opensearch")
    wait_until(lambda: curl(APP, "http://127.0.0.1/readyz")[0] == 200, "readyz 200 again", timeout=180)
    # The pipeline worker's retries (backoff up to a minute) index each batch once.
    wait_until(lambda: _search(tokens, "outage")["total"] == 5, "the 5 lines searchable", timeout=240, every=5)
    time.sleep(5)
    assert _search(tokens, "outage")["total"] == 5


def test_backup_snapshots_the_lines_and_restore_brings_them_back(tmp_path):
    """backup.yml dumps the database, then snapshots the line indices into the repository the role
    registered on the nodes' shared path.repo; restore.yml puts both back: the lines written after
    the backup are gone, those of the backup are all there, and a line ingested afterwards does not
    reuse a restored line's id (it would overwrite it)."""
    repository = node("/_snapshot/bklog-backups")["bklog-backups"]
    assert repository == {"type": "fs", "settings": {"location": "/var/backups/opensearch"}}
    stamp = str(int(time.time()))
    name = f"snap{stamp}"
    snap = (name, APP.check_output(f"bklog create_index_set {name}"), APP.check_output(f"bklog create_api_token snap{stamp}"))
    _ingest(snap, "\n".join(f"before the backup {i}" for i in range(50)))
    wait_until(lambda: _search(snap, "before")["total"] == 50, "50 lines searchable")

    run = run_playbook("backup.yml", "-e", f"bklog_backup_dir={tmp_path}", timeout=900)
    assert run.returncode == 0, run.stdout[-5000:]
    (backup,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    manifest = json.loads((backup / "manifest.json").read_text())
    snapshot = manifest["databases"]["bklog-os-app"]["snapshot"]
    assert snapshot["repository"] == "bklog-backups" and snapshot["snapshot"] == f"backup-{backup.name.lower()}"
    assert snapshot["exact"] and snapshot["lines"][name] == 50 and manifest["databases"]["bklog-os-app"]["lines"] == snapshot["lines"]
    assert not list(backup.glob("*/lines/*.jsonl")), "the lines are in the snapshot, not exported"
    assert node(f"/_snapshot/bklog-backups/{snapshot['snapshot']}")["snapshots"][0]["state"] == "SUCCESS"
    # The repository is the nodes' shared directory (registering it made every node write there).
    assert all(host.file("/var/backups/opensearch/index.latest").exists for host in SEARCH)

    _ingest(snap, "\n".join(f"after the backup {i}" for i in range(5)))
    wait_until(lambda: _search(snap, "after")["total"] == 5, "5 more lines searchable")

    run = run_playbook("restore.yml", "-e", f"bklog_backup_dir={tmp_path}", timeout=900)
    assert run.returncode == 0, run.stdout[-5000:]
    assert f"from snapshot {snapshot['snapshot']}" in run.stdout
    wait_until(lambda: curl(APP, "http://127.0.0.1/readyz")[0] == 200, "readyz 200 after the restore", timeout=180)
    assert _search(snap, "before")["total"] == 50
    assert _search(snap, "after")["total"] == 0
    kept = [s["snapshot"] for s in node("/_snapshot/bklog-backups/_all")["snapshots"]]
    assert any(k.startswith("before-restore-") for k in kept), kept

    _ingest(snap, "after the restore")
    wait_until(lambda: _search(snap, "restore")["total"] == 1, "a new line searchable")
    assert _search(snap, "before")["total"] == 50, "a new line overwrote a restored one"
