"""Dump BK LOG's database for playbooks/backup.yml and print, as JSON, the lines per index set the
dump holds (counted in the dump's own snapshot, so a restore can be checked exactly while the
service keeps writing). Run with the release's python and the service environment:

    with-env venv/bin/python dump_database.py OUTPUT     (SQLite: OUTPUT is a database file;
                                                          PostgreSQL: a pg_dump custom-format file)
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys

COUNT = ("SELECT s.name, COUNT(l.id) FROM logs_indexset s LEFT JOIN logs_logline l ON l.index_set_id = s.id "
         "GROUP BY s.name ORDER BY s.name")


def sqlite(output: str) -> dict:
    source = sqlite3.connect(f"file:{os.environ['BKLOG_DATA_DIR']}/bklog.sqlite3?mode=ro", uri=True)
    target = sqlite3.connect(output)
    source.backup(target)  # SQLite's online backup: consistent while the service writes
    counts = dict(target.execute(COUNT).fetchall())
    target.close()
    return counts


def postgresql(output: str, url: str) -> dict:
    import psycopg

    # Autocommit off would open a transaction at the first statement; the BEGIN must be ours.
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        snapshot = conn.execute("SELECT pg_export_snapshot()").fetchone()[0]
        # pg_dump reads the very snapshot this transaction counts in.
        subprocess.run(["pg_dump", "--format=custom", "--no-owner", f"--snapshot={snapshot}", f"--file={output}", url],
                       check=True)
        counts = dict(conn.execute(COUNT).fetchall())
        conn.execute("COMMIT")
        return counts


def main() -> None:
    output = sys.argv[1]
    # Behind PgBouncer, the servers themselves: pg_dump's session settings must not stay on a
    # pooled connection.
    url = os.environ.get("BKLOG_DATABASE_DIRECT_URL") or os.environ.get("DATABASE_URL", "")
    counts = postgresql(output, url) if url.startswith("postgres") else sqlite(output)
    print(json.dumps(counts))


if __name__ == "__main__":
    main()
