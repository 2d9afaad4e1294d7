"""Bulk ingest benchmark: lines/s through the Elasticsearch-compatible `_bulk` endpoint in
1,000-line batches, through gunicorn with the default config (inline pipeline: every batch is
indexed before it is answered), on the embedded default (SQLite) and on PostgreSQL, in one run.

    uv run python bench/bulk_bench.py [--batches 200] [--clients 4] [--write]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "service"))
sys.path.insert(0, str(ROOT / "bench"))


def body(batch: int, lines: int = 1000) -> bytes:
    out = []
    for i in range(lines):
        out.append('{"index":{}}')
        out.append(json.dumps({"message": f"INFO api request {batch}-{i} took {i % 900}ms payment accepted",
                               "@timestamp": f"2026-01-01T00:{(i // 60) % 60:02d}:{i % 60:02d}Z", "host": f"vm{batch % 8}"}))
    return ("\n".join(out) + "\n").encode()


def run(backend: str, batches: int, clients: int) -> dict:
    from servers import start_postgres, stop
    from e2e_stack import Stack

    work = Path(tempfile.mkdtemp(prefix=f"bklog-bulk-bench-{backend}-"))
    work.chmod(0o755)
    extra = {}
    if backend == "postgres":
        extra["DATABASE_URL"] = start_postgres(work / "pg")
    try:
        stack = Stack(work / "stack", None, **extra)
        token = stack.bklog("create_index_set", "bench", "--parse", "json")
        stack.start_gunicorn()
        payloads = [body(b) for b in range(batches)]
        latencies, lock, next_batch = [], threading.Lock(), iter(range(batches))

        def client():
            while True:
                with lock:
                    b = next(next_batch, None)
                if b is None:
                    return
                req = urllib.request.Request(f"{stack.url}/bench/_bulk", data=payloads[b], method="POST",
                                             headers={"Content-Type": "application/x-ndjson",
                                                      "Authorization": f"Bearer {token}"})
                began = time.perf_counter()
                with urllib.request.urlopen(req, timeout=120) as resp:
                    answer = json.loads(resp.read())
                assert not answer["errors"], answer["items"][:2]
                with lock:
                    latencies.append(time.perf_counter() - began)

        began = time.perf_counter()
        threads = [threading.Thread(target=client) for _ in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - began
        stack.close()
        return {"lines_per_s": batches * 1000 / wall, "median_ms": statistics.median(latencies) * 1000,
                "p95_ms": sorted(latencies)[int(len(latencies) * 0.95) - 1] * 1000, "wall_s": wall}
    finally:
        stop(work / "pg")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    results = {backend: run(backend, args.batches, args.clients) for backend in ("sqlite", "postgres")}
    lines = [
        f"## Bulk ingest (`_bulk`, 1,000-line batches) — {datetime.now().strftime('%Y-%m-%d %H:%M')}",
        "",
        f"Machine: {os.cpu_count()} cores; gunicorn (bklog/gunicorn_config.py, 2 workers), inline "
        f"pipeline (each batch indexed before it is answered); {args.batches} batches from {args.clients} "
        "client threads on loopback, in one run (bench/bulk_bench.py).",
        "",
        "| backend | lines/s | batch median ms | batch p95 ms | wall s |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for backend, r in results.items():
        lines.append(f"| {backend} | {r['lines_per_s']:,.0f} | {r['median_ms']:.0f} | {r['p95_ms']:.0f} | {r['wall_s']:.1f} |")
    ratio = results["postgres"]["lines_per_s"] / results["sqlite"]["lines_per_s"]
    lines += ["", f"PostgreSQL / SQLite: {ratio:.2f}x lines/s.", ""]
    from results import publish

    publish("\n".join(lines), args.write)


if __name__ == "__main__":
    main()
