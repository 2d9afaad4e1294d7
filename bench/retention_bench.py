"""Retention at scale (issue 18): a day of lines removed, and what ingest and search see meanwhile.

For each backend: --lines lines over the seven days before today (backend_bench.py's fill, through
the line store), gunicorn serving (2 workers). A client searches (a common word, a page of 50) and
ingests (`_bulk`, 100 lines) in turn without pause, recording each request's latency. Then the
oldest day is removed the store's way and timed:
- PostgreSQL: its partition detached CONCURRENTLY and dropped (bklog/logs/partitions.py);
- SQLite: chunked DELETE (one table: the only way it has);
and the next day by chunked DELETE on both (the old way, for comparison). The client's latencies
during each removal are set against the seconds before it.

PostgreSQL also: `bklog partition_lines` on a table from before migration 0012 holding
--convert-lines lines, under the same client: its time, and the swap's under the exclusive lock.

    uv run python bench/retention_bench.py [--lines 10000000] [--convert-lines 1000000] [--backends postgres sqlite]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "service"))
sys.path.insert(0, str(ROOT / "bench"))

from backend_bench import FILL_START, NAMES, TODAY, fill_store, p95  # noqa: E402

REMOVE = r'''
import json, os, time
from datetime import datetime, timedelta
from bklog.logs import partitions
from bklog.logs.models import IndexSet
from bklog.logs.store import line_store

end = datetime.fromisoformat(os.environ["BENCH_BEFORE"])
began = time.perf_counter()
if os.environ["BENCH_HOW"] == "drop":
    lines = sum(partitions.drop_days_before(end).values())
else:
    lines = line_store().delete_older_than(IndexSet.objects.get(name="bench"), end)
print(json.dumps({"seconds": time.perf_counter() - began, "lines": lines}))
'''
# A table as a database from before migration 0012 has it (tests/service/test_commands.py does the same).
UNPARTITION = r'''
from importlib import import_module
from django.db import connection
from bklog.logs.database_store import use_search_vectors
from bklog.logs.models import LogLine
with connection.cursor() as cursor:
    cursor.execute("DROP TABLE logs_logline CASCADE")
with connection.schema_editor() as editor:
    editor.create_model(LogLine)
for sql in import_module("bklog.logs.migrations.0011_logline_search_vector").TRIGGER:
    with connection.cursor() as cursor:
        cursor.execute(sql)
use_search_vectors(connection, concurrently=False)
'''


class Client(threading.Thread):
    """A search, then a 100-line `_bulk`, again and again: (started at, kind, seconds, status)."""

    def __init__(self, url: str, token: str, api: str):
        super().__init__(daemon=True)
        self.url, self.token, self.api, self.stopped, self.samples = url, token, api, threading.Event(), []

    def _timed(self, kind: str, request: urllib.request.Request) -> None:
        began = time.time()
        try:
            with urllib.request.urlopen(request, timeout=120) as resp:
                resp.read()
                status = resp.status
        except urllib.error.HTTPError as exc:
            status = exc.code
        self.samples.append((began, kind, time.time() - began, status))

    def run(self) -> None:
        batch = 0
        while not self.stopped.is_set():
            self._timed("search", urllib.request.Request(f"{self.url}/api/v1/index_sets/bench/search?q=INFO&size=50",
                                                         headers={"Authorization": f"Bearer {self.api}"}))
            batch += 1
            body = "".join('{"index":{}}\n' + json.dumps({"message": f"INFO api retention{batch}-{i}",
                                                           "@timestamp": f"{TODAY:%Y-%m-%d}T00:00:{i % 60:02d}Z"}) + "\n"
                           for i in range(100)).encode()
            self._timed("ingest", urllib.request.Request(f"{self.url}/bench/_bulk", data=body, method="POST", headers={
                "Content-Type": "application/x-ndjson", "Authorization": f"Bearer {self.token}"}))

    def between(self, start: float, end: float) -> dict:
        """Per kind: requests, median and worst ms, and refusals, of those started in [start, end)."""
        out = {}
        for kind in ("search", "ingest"):
            rows = [(s, status) for began, k, s, status in self.samples if k == kind and start <= began < end]
            seconds = [s for s, _ in rows]
            out[kind] = {"requests": len(rows), "median_ms": round(statistics.median(seconds) * 1000, 1) if rows else None,
                         "max_ms": round(max(seconds) * 1000, 1) if rows else None,
                         "p95_ms": round(p95(seconds) * 1000, 1) if rows else None,
                         "failed": sum(1 for _, status in rows if status >= 300)}
        return out


def _stack(backend: str, work: Path):
    from e2e_stack import Stack
    from servers import start_postgres

    extra = {"DATABASE_URL": start_postgres(work / "pg")} if backend == "postgres" else {}
    stack = Stack(work / "stack", None, **extra)
    token = stack.bklog("create_index_set", "bench", "--parse", "json", "--retention-days", "30")
    api = stack.bklog("create_api_token", "bench", "--role", "reader")
    return stack, token, api


def _shell(stack, script: str, **env) -> str:
    proc = subprocess.run([str(Path(sys.executable).parent / "bklog"), "shell", "-c", script], env={**stack.env, **env},
                          capture_output=True, text=True, timeout=6 * 3600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def _under_load(stack, token: str, api: str, steps: list) -> list[dict]:
    """Each step (name, function) run in turn while the client runs; its seconds, its result, and
    the client's figures for the 10 s before it and during it."""
    stack.start_gunicorn()
    stack.wait_for(lambda: stack.get("/readyz")[0] == 200, "readyz")
    client = Client(stack.url, token, api)
    client.start()
    out = []
    try:
        for name, step in steps:
            time.sleep(10)
            began = time.time()
            result = step()
            ended = time.time()
            out.append({"step": name, "wall_s": round(ended - began, 2), "result": result,
                        "before": client.between(began - 10, began), "during": client.between(began, ended)})
            print(json.dumps(out[-1]), flush=True)
    finally:
        client.stopped.set()
        client.join(timeout=150)
    return out


def run(backend: str, lines: int, convert_lines: int) -> dict:
    from servers import stop

    work = Path(tempfile.mkdtemp(prefix=f"bklog-retention-bench-{backend}-"))
    work.chmod(0o755)
    figures = {}
    try:
        stack, token, api = _stack(backend, work)
        figures["fill_s"] = round(fill_store(stack, lines), 1)
        oldest = FILL_START  # the fill's first day, whole
        remove = lambda how, before: json.loads(_shell(stack, REMOVE, BENCH_HOW=how,  # noqa: E731
                                                       BENCH_BEFORE=before.isoformat()).strip().splitlines()[-1])
        steps = [("the oldest day, " + ("partition dropped" if backend == "postgres" else "chunked DELETE"),
                  lambda: remove("drop" if backend == "postgres" else "delete", oldest + timedelta(days=1))),
                 ("the next day, chunked DELETE", lambda: remove("delete", oldest + timedelta(days=2)))]
        figures["removals"] = _under_load(stack, token, api, steps)
        stack.close()
        if backend == "postgres" and convert_lines:
            stop(work / "pg")
            stack, token, api = _stack(backend, work / "convert")
            _shell(stack, UNPARTITION)
            figures["convert_fill_s"] = round(fill_store(stack, convert_lines), 1)

            def convert():
                out = stack.bklog("partition_lines")
                swap = re.search(r"swapped under the exclusive lock in (\d+) ms", out)
                return {"swap_ms": int(swap[1]) if swap else None, "output": out.splitlines()[-3:]}

            figures["conversion"] = _under_load(stack, token, api, [(f"partition_lines, {convert_lines:,} lines", convert)])
            stack.close()
    finally:
        stop(work / "pg")
        stop(work / "convert" / "pg")
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--convert-lines", type=int, default=1_000_000)
    parser.add_argument("--backends", nargs="+", default=["postgres", "sqlite"], choices=["postgres", "sqlite"])
    args = parser.parse_args()
    results = {}
    for backend in args.backends:
        print(f"== {NAMES[backend]}: {args.lines:,} lines", flush=True)
        results[backend] = run(backend, args.lines, args.convert_lines)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
