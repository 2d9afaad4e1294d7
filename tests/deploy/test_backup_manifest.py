"""roles/bklog_backup/files/backup_manifest.py: the controller's side of backup.yml and restore.yml
(checksums, manifest, which backup to restore, retention), on files made here."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "roles" / "bklog_backup" / "files" / "backup_manifest.py"


def run(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True)


def make_backup(base: Path, name: str) -> Path:
    root = base / name
    (root / "api1" / "lines").mkdir(parents=True)
    (root / "api1" / "database.json").write_text(json.dumps(
        {"kind": "sqlite", "release": "1.0.0", "index_sets": ["app", "empty"], "native_lines": {"app": 3, "empty": 0}}))
    (root / "api1" / "lines" / "app.jsonl").write_text('{"m": 1}\n{"m": 2}\n{"m": 3}\n')
    (root / "api1" / "lines" / "empty.jsonl").write_text("")
    (root / "api1" / "db.sqlite3").write_bytes(b"SQLite format 3\0")
    (root / "lb").mkdir()
    (root / "lb" / "config.tar.gz").write_bytes(b"\x1f\x8b")
    assert run("write", root).returncode == 0
    return root


def test_write_then_verify(tmp_path):
    root = make_backup(tmp_path, "20261129T100000Z")
    manifest = json.loads(run("verify", root).stdout)
    assert manifest["hosts"] == ["api1", "lb"]
    assert manifest["databases"]["api1"]["lines"] == {"app": 3, "empty": 0}
    listed = (root / "MANIFEST.sha256").read_text()
    assert "api1/db.sqlite3" in listed and "manifest.json" in listed and "lb/config.tar.gz" in listed


def test_verify_names_every_damaged_missing_or_extra_file(tmp_path):
    root = make_backup(tmp_path, "20261129T100000Z")
    (root / "api1" / "lines" / "app.jsonl").write_text('{"m": 1}\n')
    (root / "lb" / "config.tar.gz").unlink()
    (root / "api1" / "stray").write_text("x")
    result = run("verify", root)
    assert result.returncode == 1
    assert "is damaged, nothing was restored" in result.stderr
    assert "api1/lines/app.jsonl: checksum differs" in result.stderr
    assert "lb/config.tar.gz: missing" in result.stderr
    assert "api1/stray: not in MANIFEST.sha256" in result.stderr


def test_resolve_the_newest_complete_or_a_named_backup(tmp_path):
    make_backup(tmp_path, "20261128T100000Z")
    make_backup(tmp_path, "20261129T100000Z")
    (tmp_path / "20261130T100000Z").mkdir()  # unfinished: no checksums yet
    assert run("resolve", tmp_path).stdout.strip().endswith("20261129T100000Z")
    assert run("resolve", tmp_path, "20261128T100000Z").stdout.strip().endswith("20261128T100000Z")
    missing = run("resolve", tmp_path, "20250101T000000Z")
    assert missing.returncode == 1 and "not found" in missing.stderr
    assert "no complete backup" in run("resolve", tmp_path / "none").stderr


def test_prune_keeps_the_newest(tmp_path):
    for day in (26, 27, 28, 29):
        make_backup(tmp_path, f"202611{day}T100000Z")
    assert run("prune", tmp_path, 2).returncode == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["20261128T100000Z", "20261129T100000Z"]
