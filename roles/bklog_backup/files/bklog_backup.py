#!/usr/bin/python3
"""One host's part of a BK LOG backup, installed by roles/bklog_backup as /usr/local/sbin/bklog-backup
(run as root; standard library only; settings from /etc/bklog-backup.json, written by the role).

    bklog-backup stage DIR [--database]   stage in DIR this host's configuration and, with --database,
                                          its database: the native dump (its lines counted in the
                                          dump's own snapshot), the guide's dumpdata JSON, every index
                                          set's lines as JSONL, and database.json saying what it holds.
                                          With the lines on OpenSearch, after the dump: a snapshot of
                                          them in the cluster's repository, named backup-<stamp>
                                          (database.json names it and its lines per index set).
                                          playbooks/backup.yml then fetches DIR to the controller.
    bklog-backup scheduled                what bklog-backup.timer runs: a whole backup of this host
                                          (database included) in the schedule directory, laid out as
                                          backup.yml's (<dir>/<UTC time>/<host>/, manifest.json,
                                          MANIFEST.sha256; an OpenSearch snapshot scheduled-<stamp>),
                                          the newest `keep` kept, and its outcome
                                          written for node_exporter's textfile collector.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

CONFIG = Path("/etc/bklog-backup.json")  # __bklog_backup_settings (roles/bklog_backup/vars)
# /usr/local/lib/bklog-backup, beside the manifest and dump scripts (/usr/local/sbin/bklog-backup links here).
LIB = Path(__file__).resolve().parent
sys.path.insert(0, str(LIB))
import backup_manifest  # noqa: E402 (beside this script: the controller's manifest, the same format)

BKLOG = "/usr/local/bin/bklog"  # bklog_app's command: the running release, as the service user
METRICS = "bklog_backup.prom"
# The rate limit's counting windows and finished export files are transient (seconds, hours): the
# native dump has them, the portable dumpdata leaves them out (a restored export answers 410).
DUMPDATA_EXCLUDES = ("logs.logline", "logs.exportchunk", "logs.ingestratewindow")
# What the portable dump holds: BK LOG's own tables and the people of the search page (users, their
# groups and the index sets granted to them), groups and permissions named by natural keys, so that
# they load into a new database whose ids differ. Sessions are not kept: people log in again.
DUMPDATA_ARGS = ("auth.user", "auth.group", "logs", "--natural-foreign", "--natural-primary",
                 *(arg for model in DUMPDATA_EXCLUDES for arg in ("--exclude", model)))


def run(argv: list[str], **kwargs) -> str:
    try:
        result = subprocess.run(argv, check=False, capture_output=True, text=True, **kwargs)
    except OSError as exc:
        raise SystemExit(f"bklog-backup: {argv[0]} could not run: {exc}") from None
    if result.returncode != 0:
        raise SystemExit(f"bklog-backup: {' '.join(argv[:4])} ... failed (exit {result.returncode}):\n"
                         f"{result.stderr.strip() or result.stdout.strip()}")
    return result.stdout


def give_to(path: Path, user: str, mode: int) -> None:
    entry = pwd.getpwnam(user)
    os.chown(path, entry.pw_uid, entry.pw_gid)
    path.chmod(mode)


def stage(config: dict, target: Path, database: bool, origin: str = "backup") -> None:
    """This host's part, in target (made here, private: it holds the environment file's secrets).
    origin names the OpenSearch snapshot (<origin>-<target's stamp>), each origin keeping its own."""
    owner = config["app_user"] if database else "root"
    (target / "lines").mkdir(parents=True, exist_ok=False)
    for path in (target, target / "lines"):
        give_to(path, owner, 0o700)

    present = [p for p in config["config_paths"] if os.path.exists(p)]
    # -P keeps the absolute names restore.yml extracts back in place.
    run(["tar", "-czf", str(target / "config.tar.gz"), "-P", *present])
    if not database:
        return

    app_root = config["app_root"]
    dumped = target / ("db.pgdump" if config["kind"] == "postgresql" else "db.sqlite3")
    # SQLite's online backup API or pg_dump, with the lines per index set counted in the same snapshot.
    counts = run(["runuser", "-u", config["app_user"], "--", f"{app_root}/bin/with-env",
                  f"{app_root}/current/venv/bin/python", str(LIB / "dump_database.py"), str(dumped)])
    run([BKLOG, "dumpdata", *DUMPDATA_ARGS, "--output", str(target / "dumpdata.json")])
    # Where the running release keeps the lines (its environment file says), and the index sets.
    service = json.loads(run([BKLOG, "shell", "--verbosity", "0", "-c",
                              "import json; from django.conf import settings; from bklog.logs.models import IndexSet; "
                              "print(json.dumps({'search_backend': settings.BKLOG_SEARCH_BACKEND, 'index_sets': "
                              "list(IndexSet.objects.order_by('name').values_list('name', flat=True))}))"]).splitlines()[-1])
    index_sets = service["index_sets"]
    described = {"kind": config["kind"], "release": Path(os.readlink(f"{app_root}/current")).name,
                 "index_sets": index_sets, "native_lines": json.loads(counts.splitlines()[-1])}
    if service["search_backend"] == "opensearch":
        # After the dump (a restore moves the line ids past the snapshot's); the lines stay in the
        # cluster's repository, too big to fetch: the manifest names the snapshot.
        keep = config["keep"] if origin == "scheduled" else config["backup_keep"]
        taken = run([BKLOG, "opensearch_snapshot", "create", f"{origin}-{target.name.lower()}",
                     "--repository", config["opensearch_repository"], "--keep", str(keep)])
        described["snapshot"] = json.loads(taken.splitlines()[-1])
    else:
        for name in index_sets:
            run([BKLOG, "export_logs", name, "--output", str(target / "lines" / f"{name}.jsonl")])
    info = target / "database.json"
    info.write_text(json.dumps(described, indent=2) + "\n")
    give_to(info, config["app_user"], 0o600)


def write_metrics(config: dict, failed: bool, started: float, size: int = 0) -> None:
    """bklog_backup.prom for node_exporter (when it is installed): BklogBackupFailed and
    BklogBackupTooOld read it. A failed run keeps the last success's time."""
    directory = Path(config["textfile_dir"])
    if not directory.is_dir():
        return
    path = directory / METRICS
    last_success = 0
    if path.exists():
        for line in path.read_text().splitlines():
            if line.startswith("bklog_backup_last_success_timestamp_seconds "):
                last_success = int(float(line.split()[1]))
    now = time.time()
    values = {
        "last_run_failed": ("1 when the last scheduled backup failed", int(failed)),
        "last_run_timestamp_seconds": ("when the last scheduled backup ended", round(now)),
        "last_success_timestamp_seconds": ("when the last scheduled backup succeeded",
                                           last_success if failed else round(now)),
        "max_age_seconds": ("the oldest the newest backup may be (bklog_backup_schedule_max_age_hours)",
                            config["max_age_seconds"]),
    }
    if not failed:
        values["last_duration_seconds"] = ("how long the last successful backup took", round(now - started, 1))
        values["last_size_bytes"] = ("size of the last successful backup", size)
    text = "".join(f"# HELP bklog_backup_{name} {help_}\n# TYPE bklog_backup_{name} gauge\nbklog_backup_{name} {value}\n"
                   for name, (help_, value) in values.items())
    scratch = path.with_suffix(".prom.tmp")
    scratch.write_text(text)
    scratch.chmod(0o644)
    scratch.replace(path)  # never half a file for the collector


def scheduled(config: dict) -> None:
    started = time.time()
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    staging = Path(config["stage_dir"]) / stamp
    base = Path(config["schedule_dir"])
    partial = base / f"{stamp}.partial"  # not a backup's name: never restored, never counted, never pruned
    try:
        Path(config["stage_dir"]).mkdir(mode=0o755, parents=True, exist_ok=True)
        base.mkdir(mode=0o700, parents=True, exist_ok=True)
        stage(config, staging, database=True, origin="scheduled")
        partial.mkdir(mode=0o700)
        shutil.move(str(staging), str(partial / config["host"]))
        run(["chown", "-R", "root:root", str(partial)])
        backup_manifest.write(partial, stamp)  # prints the manifest: the journal keeps it
        final = base / stamp
        partial.rename(final)
        backup_manifest.prune(base, config["keep"])
        size = sum(p.stat().st_size for p in final.rglob("*") if p.is_file())
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(partial, ignore_errors=True)
        write_metrics(config, failed=True, started=started)
        raise
    write_metrics(config, failed=False, started=started, size=size)
    print(f"backup {final} ({size} bytes, {time.time() - started:.0f} s)")


def main() -> None:
    args = sys.argv[1:]
    config = json.loads(CONFIG.read_text())
    if args[:1] == ["stage"] and len(args) in (2, 3) and args[2:] in ([], ["--database"]):
        stage(config, Path(args[1]), database=args[2:] == ["--database"])
    elif args == ["scheduled"]:
        scheduled(config)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
