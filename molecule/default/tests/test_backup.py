"""playbooks/backup.yml and restore.yml on the all-in-one hosts (SQLite each): lines written, backed
up, destroyed, restored (Debian 12 from the native SQLite copy, Debian 13 through the portable
dumpdata + JSONL path), and the same counts and lines come back (the same exported bytes for the
native restore; the portable one numbers the rows anew). A damaged
backup is refused before anything stops."""

from __future__ import annotations

import hashlib
import json
import sys
import time
from pathlib import Path

import pytest
import testinfra

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "shared"))
from playbooks import COUNT_LINES, inventory_hosts, run_playbook, wait_until  # noqa: E402

LINES = 300
def _host(name):
    return testinfra.get_host(f"podman://{name}")


def _counts(name) -> dict:
    return json.loads(_host(name).check_output(f"bklog shell -c '{COUNT_LINES}'").splitlines()[-1])


def _export_sha256(name, index_set) -> str:
    return _host(name).check_output(f"bklog export_logs {index_set} -o - 2>/dev/null | sha256sum").split()[0]


def _content(jsonl: str) -> list:
    """The lines as a user sees them: without the row id (a portable restore numbers rows anew)."""
    return [{k: v for k, v in json.loads(line).items() if k != "id"} for line in jsonl.splitlines()]


def _export_content(name, index_set) -> list:
    return _content(_host(name).check_output(f"bklog export_logs {index_set} -o - 2>/dev/null"))

@pytest.fixture(scope="module")
def written():
    """An index set per host with LINES lines ingested through nginx and indexed by the pipeline worker."""
    index_set = f"backup{int(time.time())}"
    for name in inventory_hosts("bklog"):
        host = _host(name)
        token = host.check_output(f"bklog create_index_set {index_set}")
        body = "\\n".join(f"backup line {i} host {name}" for i in range(LINES))
        host.check_output(f"printf '{body}' | curl -sS -f -o /dev/null -H 'Authorization: Bearer {token}' "
                          f"--data-binary @- https://localhost/api/v1/index_sets/{index_set}/ingest")
    for name in inventory_hosts("bklog"):
        wait_until(lambda: _counts(name).get(index_set) == LINES, f"{LINES} lines indexed on {name}")
    return index_set


def test_backup_destroy_restore_round_trip(written, tmp_path):
    index_set = written
    hosts = inventory_hosts("bklog")
    before = {name: _counts(name) for name in hosts}
    exported = {name: _export_sha256(name, index_set) for name in hosts}

    run = run_playbook("backup.yml", "-e", f"bklog_backup_dir={tmp_path}", timeout=900)
    assert run.returncode == 0, run.stdout[-5000:]
    (backup,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    manifest = json.loads((backup / "manifest.json").read_text())
    assert manifest["hosts"] == hosts
    for name in hosts:
        db = manifest["databases"][name]
        assert db["kind"] == "sqlite" and db["native_lines"] == before[name] and db["lines"] == before[name]
        for part in ("config.tar.gz", "db.sqlite3", "dumpdata.json", f"lines/{index_set}.jsonl"):
            assert (backup / name / part).is_file(), part
        lines = (backup / name / "lines" / f"{index_set}.jsonl").read_bytes()
        assert hashlib.sha256(lines).hexdigest() == exported[name]
    for line in (backup / "MANIFEST.sha256").read_text().splitlines():
        digest, rel = line.split("  ", 1)
        assert hashlib.sha256((backup / rel).read_bytes()).hexdigest() == digest

    # The disaster: every index set and its lines gone, on both hosts.
    for name in hosts:
        _host(name).check_output("bklog shell -c 'from bklog.logs.models import IndexSet; IndexSet.objects.all().delete()'")
        assert _counts(name) == {}

    native, portable = hosts  # Debian 12, Debian 13
    run = run_playbook("restore.yml", "--limit", native, "-e", f"bklog_backup_dir={tmp_path}", timeout=900)
    assert run.returncode == 0, run.stdout[-5000:]
    run = run_playbook("restore.yml", "--limit", portable, "-e", f"bklog_backup_dir={tmp_path}",
                       "-e", "bklog_backup_restore_method=portable", timeout=900)
    assert run.returncode == 0, run.stdout[-5000:]

    for name in hosts:
        host = _host(name)
        assert _counts(name) == before[name]
        backed_up = (backup / name / "lines" / f"{index_set}.jsonl").read_text()
        assert _export_content(name, index_set) == _content(backed_up) and len(_content(backed_up)) == LINES
        if name == native:  # the very rows, ids included: the same bytes
            assert _export_sha256(name, index_set) == exported[name]
        assert host.check_output("curl -sS -o /dev/null -w '%{http_code}' http://127.0.0.1/readyz") == "200"
        status = host.check_output("supervisorctl status")
        assert status.count("RUNNING") == 5, status
    # The replaced database was kept (native restore moves the SQLite file aside).
    assert _host(native).run("ls /var/backups/bklog/before-restore-*/bklog.sqlite3").rc == 0


def test_a_damaged_backup_is_refused_before_anything_stops(tmp_path):
    name = inventory_hosts("bklog")[0]
    run = run_playbook("backup.yml", "-e", f"bklog_backup_dir={tmp_path}", "--limit", name, timeout=900)
    assert run.returncode == 0, run.stdout[-5000:]
    (backup,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    dump = backup / name / "dumpdata.json"
    dump.write_text(dump.read_text().replace("backup", "BACKUP", 1) + " ")
    pids = _host(name).check_output("supervisorctl pid all")
    run = run_playbook("restore.yml", "--limit", name, "-e", f"bklog_backup_dir={tmp_path}", timeout=300)
    assert run.returncode != 0
    assert "is damaged, nothing was restored" in run.stdout and f"{name}/dumpdata.json: checksum differs" in run.stdout
    assert _host(name).check_output("supervisorctl pid all") == pids
