"""playbooks/backup.yml and restore.yml on the all-in-one hosts (SQLite each): lines written, backed
up, destroyed, restored (Debian 12 from the native SQLite copy, Debian 13 through the portable
dumpdata + JSONL path), and the same counts and lines come back (the same exported bytes for the
native restore; the portable one numbers the rows anew). A damaged
backup is refused before anything stops."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import shlex
import tarfile
import time

import pytest
import testinfra

from playbooks import COUNT_LINES, inventory_hosts, run_playbook, wait_until

LINES = 300
def _plain(output: str) -> str:
    """The playbook's output without its colours, each wrapped message on one line."""
    return " ".join(re.sub(r"\x1b\[[0-9;]*m", "", output).split())


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
    # The search page's people come back too: the vault's admin, and a group granted the index set.
    people = ("from django.contrib.auth.models import Group, User; from bklog.logs.models import IndexSet; "
              "print(User.objects.filter(username='admin', is_superuser=True).count(), "
              f"list(IndexSet.objects.get(name='{index_set}').groups.values_list('name', flat=True)))")
    for name in hosts:
        _host(name).check_output("bklog shell -c " + shlex.quote(
            "from django.contrib.auth.models import Group; from bklog.logs.models import IndexSet; "
            f"IndexSet.objects.get(name='{index_set}').groups.add(Group.objects.get_or_create(name='ops')[0])"))
        assert _host(name).check_output("bklog shell -c " + shlex.quote(people)).splitlines()[-1] == "1 ['ops']"

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
        _host(name).check_output("bklog shell -c 'from bklog.logs.models import IndexSet; IndexSet.objects.all().delete(); "
                                 "from django.contrib.auth.models import User; User.objects.all().delete()'")
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
        # (Django's shell may say first how many names it imported.)
        assert host.check_output("bklog shell -c " + shlex.quote(people)).splitlines()[-1] == "1 ['ops']", name
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
    """Also --check of both playbooks: the backup says what it would take and writes nothing; the
    restore checks the backup (intact, or damaged and refused) and stops nothing."""
    name = inventory_hosts("bklog")[0]
    run = run_playbook("backup.yml", "--check", "-e", f"bklog_backup_dir={tmp_path}", "--limit", name, timeout=300)
    assert run.returncode == 0, run.stdout[-5000:]
    assert f"check mode: would back up {name} to {tmp_path}/<UTC time>/" in _plain(run.stdout)
    assert not any(tmp_path.iterdir())
    run = run_playbook("backup.yml", "-e", f"bklog_backup_dir={tmp_path}", "--limit", name, timeout=900)
    assert run.returncode == 0, run.stdout[-5000:]
    (backup,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    pids = _host(name).check_output("supervisorctl pid all")
    run = run_playbook("restore.yml", "--check", "--limit", name, "-e", f"bklog_backup_dir={tmp_path}", timeout=300)
    assert run.returncode == 0, run.stdout[-5000:]
    assert f"is intact and holds the part of {name}; would stop every bklog program, restore the sqlite database" \
        in _plain(run.stdout)
    assert _host(name).check_output("supervisorctl pid all") == pids
    dump = backup / name / "dumpdata.json"
    dump.write_text(dump.read_text().replace("backup", "BACKUP", 1) + " ")
    run = run_playbook("restore.yml", "--limit", name, "-e", f"bklog_backup_dir={tmp_path}", timeout=300)
    assert run.returncode != 0
    assert "is damaged, nothing was restored" in run.stdout and f"{name}/dumpdata.json: checksum differs" in run.stdout
    assert _host(name).check_output("supervisorctl pid all") == pids


def test_the_timer_backs_up_on_the_host_and_restore_takes_it(written, tmp_path):
    """bklog-backup.timer (bklog_backup_schedule_enabled in host_vars, keep 2): the backup its service
    writes on the host is backup.yml's, complete and counted; the oldest beyond 2 are deleted; the
    outcome reaches node_exporter's textfile collector; a failed run says so and keeps nothing half
    written; and restore.yml restores the newest from the controller."""
    index_set = written
    base = "/var/backups/bklog-scheduled"
    metrics = "/var/lib/prometheus/node-exporter/bklog_backup.prom"
    for name in inventory_hosts("bklog"):
        host = _host(name)
        assert host.service("bklog-backup.timer").is_enabled and host.service("bklog-backup.timer").is_running
        assert "02:30:00" in host.check_output("systemctl cat bklog-backup.timer")
        # node_exporter's directory (monitoring's package makes it; this scenario has no monitoring).
        host.check_output("install -d /var/lib/prometheus/node-exporter")
        before = _counts(name)
        for _ in range(3):
            host.check_output("systemctl start bklog-backup.service")  # oneshot: returns when it is done
        backups = sorted(host.check_output(f"ls {base}").split())
        assert len(backups) == 2 and all(len(b) == 16 and b.endswith("Z") for b in backups), backups
        newest = f"{base}/{backups[-1]}"
        manifest = json.loads(host.check_output(f"python3 /usr/local/lib/bklog-backup/backup_manifest.py verify {newest}"))
        assert manifest["hosts"] == [name]
        db = manifest["databases"][name]
        assert db["kind"] == "sqlite" and db["native_lines"] == before and db["lines"] == before, (db, before)
        assert host.file(base).mode == 0o700 and host.file(base).user == "root"
        text = host.file(metrics).content_string
        assert "bklog_backup_last_run_failed 0" in text and "bklog_backup_max_age_seconds 93600" in text, text
        succeeded = int(next(line.split()[1] for line in text.splitlines()
                             if line.startswith("bklog_backup_last_success_timestamp_seconds ")))
        assert abs(succeeded - time.time()) < 300

        # The service's command missing: the run fails, says so, keeps the last success and no partial backup.
        host.check_output("mv /usr/local/bin/bklog /usr/local/bin/bklog.away")
        try:
            assert host.run("systemctl start bklog-backup.service").rc != 0
        finally:
            host.check_output("mv /usr/local/bin/bklog.away /usr/local/bin/bklog")
        text = host.file(metrics).content_string
        assert "bklog_backup_last_run_failed 1" in text and f"bklog_backup_last_success_timestamp_seconds {succeeded}\n" in text, text
        assert sorted(host.check_output(f"ls -A {base}").split()) == backups
        assert host.run("ls -A /var/backups/bklog | grep -E '^[0-9]{8}T'").stdout == ""
        assert "/usr/local/bin/bklog could not run" in host.check_output("journalctl -u bklog-backup.service -n 20 --no-pager")

    # The operator's way back: the newest scheduled backup copied to the controller, then restore.yml.
    name = inventory_hosts("bklog")[0]
    host = _host(name)
    newest = sorted(host.check_output(f"ls {base}").split())[-1]
    archive = host.check_output(f"tar -C {base} -czf - {newest} | base64 -w0")
    with tarfile.open(fileobj=io.BytesIO(base64.b64decode(archive))) as tar:
        tar.extractall(tmp_path, filter="data")
    expected = _counts(name)
    host.check_output(f"bklog shell -c 'from bklog.logs.models import IndexSet; IndexSet.objects.filter(name=\"{index_set}\").delete()'")
    assert index_set not in _counts(name)
    run = run_playbook("restore.yml", "--limit", name, "-e", f"bklog_backup_restore_from={tmp_path / newest}", timeout=900)
    assert run.returncode == 0, run.stdout[-5000:]
    assert _counts(name) == expected
