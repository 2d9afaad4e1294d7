"""The three log backends side by side, in one run: SQLite (FTS5, the embedded default),
PostgreSQL (GIN) and OpenSearch 2.19 (daily indices), each holding the same --lines lines.

For each backend: the index is filled with --lines generated lines over the seven days before today
through the line store (bklog/logs/store.py, the path the pipeline workers take; 10,000-line
transactions from two processes at once); then, through gunicorn (2 workers, inline pipeline), `_bulk` ingest in 1,000-line batches from 4
clients on top of the full index, and searches of thirteen kinds (rare words, a common word, a phrase,
a field filter, a time range, an exclusion; issue 18's request id, a word over two hours days ago,
a field filter alone, NOT of a common word, OR of two words, a second page by cursor, size 500)
and two histograms (the week, a word over a day), each kind --searches times with varied words.

    uv run python bench/backend_bench.py [--lines 10000000] [--searches 40] [--backends sqlite postgres opensearch] [--write]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "service"))
sys.path.insert(0, str(ROOT / "bench"))

FILL = r'''
import os, random
from datetime import datetime, timedelta
from django.db import transaction
from bklog.logs.models import IndexSet
from bklog.logs.store import line_store

# BENCH_FILL="total part parts start": this process writes chunks part, part + parts, ... of total lines
total, part, parts, start = os.environ["BENCH_FILL"].split()
total, part, parts, start, chunk = int(total), int(part), int(parts), datetime.fromisoformat(start), 10000
WORDS = [f"w{i:04d}" for i in range(5000)]
SERVICES = ["api", "auth", "billing", "search", "export", "gateway", "payments", "users"]
LEVELS = ["INFO"] * 7 + ["WARN"] * 2 + ["ERROR"]
store, index_set = line_store(), IndexSet.objects.get(name="bench")
if store.name == "opensearch":
    store.refresh = "false"  # a fill, not a pipeline batch: searchable after the refresh below
span = 7 * 86400
for base in range(part * chunk, total, parts * chunk):
    rng, rows = random.Random(base), []  # seeded per chunk: the same lines however the fill is split
    for i in range(base, min(base + chunk, total)):
        service, level = rng.choice(SERVICES), rng.choice(LEVELS)
        rows.append((start + timedelta(seconds=span * i / total),
                     f"{level} {service} request {i} {rng.choice(WORDS)} {rng.choice(WORDS)} {rng.choice(WORDS)} "
                     f"took {rng.randint(1, 900)}ms user={rng.randint(1, 50000)}",
                     {"service": service, "level": level}))
    with transaction.atomic():
        store.insert(index_set, rows)
if store.name == "opensearch":
    store.client.indices.refresh(index=store.pattern("bench"))
'''
NAMES = {"sqlite": "SQLite", "postgres": "PostgreSQL", "opensearch": "OpenSearch"}
FILL_PROCESSES = 2  # one writer per core here: the pipeline runs several (app.yml), as in production
TODAY = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
# the fill's lines span the seven days before today: inside the index set's retention, so every
# line is kept where it belongs (OpenSearch puts lines past retention into the oldest kept day)
FILL_START = TODAY - timedelta(days=7)


def bulk_body(batch: int, lines: int = 1000) -> bytes:
    out, day = [], TODAY.strftime("%Y-%m-%d")
    for i in range(lines):
        out.append('{"index":{}}')
        out.append(json.dumps({"message": f"INFO api request bulk{batch}-{i} took {i % 900}ms payment accepted",
                               "@timestamp": f"{day}T00:{(i // 60) % 60:02d}:{i % 60:02d}Z", "service": "api"}))
    return ("\n".join(out) + "\n").encode()


def queries(rng: random.Random, lines: int) -> dict[str, dict]:
    word = lambda: f"w{rng.randrange(5000):04d}"  # noqa: E731
    day = (TODAY - timedelta(days=rng.randrange(1, 8))).strftime("%Y-%m-%d")
    hour = rng.randrange(0, 22)
    return {
        "rare words": {"q": f"{word()} {word()}"},
        "common word": {"q": "INFO"},
        "phrase": {"q": f'"{rng.choice(["api", "auth", "billing", "payments"])} request"'},
        "field filter": {"q": word(), "field.service": rng.choice(["api", "billing", "users"])},
        "time range": {"q": "ERROR", "start": f"{day}T10:00:00Z", "end": f"{day}T11:00:00Z"},
        "exclusion": {"q": f"ERROR -{rng.choice(['api', 'auth', 'billing'])} {word()}"},
        # Issue 18's kinds a log user types every day.
        "request id (one line)": {"q": str(rng.randrange(lines))},
        "word, two hours days ago": {"q": word(), "start": f"{day}T{hour:02d}:00:00Z", "end": f"{day}T{hour + 2:02d}:00:00Z"},
        "field filter, no words": {"field.service": rng.choice(["api", "billing", "users"])},
        "NOT a common word": {"q": "-INFO"},
        "OR of two words": {"q": f"{word()} OR {word()}"},
        "second page (cursor)": {"q": "INFO", "page": 2},
        "size 500": {"q": "WARN", "size": 500},
        # The search page's histogram (GET .../histogram, interval auto): every line of the week,
        # and a word's matches over one day.
        "histogram, week": {"endpoint": "histogram", "start": f"{(TODAY - timedelta(days=7)):%Y-%m-%d}T00:00:00Z",
                            "end": f"{TODAY:%Y-%m-%d}T00:00:00Z"},
        "histogram, word in a day": {"endpoint": "histogram", "q": "ERROR", "start": f"{day}T00:00:00Z", "end": f"{day}T23:59:59Z"},
    }


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, int(round(len(ordered) * 0.95)) - 1)]


def fill_store(stack, lines: int) -> float:
    """The index set `bench` filled with `lines` lines (FILL, from FILL_PROCESSES processes); seconds."""
    began = time.perf_counter()
    fills = [subprocess.Popen([str(Path(sys.executable).parent / "bklog"), "shell", "-c", FILL],
                              env={**stack.env, "BENCH_FILL": f"{lines} {part} {FILL_PROCESSES} {FILL_START.isoformat()}"},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for part in range(FILL_PROCESSES)]
    for fill in fills:
        _, err = fill.communicate(timeout=6 * 3600)
        assert fill.returncode == 0, err[-3000:]
    return time.perf_counter() - began


def run(backend: str, lines: int, searches: int, bulk_batches: int) -> dict:
    import opensearch
    from servers import start_postgres, stop
    from e2e_stack import Stack

    work = Path(tempfile.mkdtemp(prefix=f"bklog-backend-bench-{backend}-"))
    work.chmod(0o755)
    extra = {}
    try:
        if backend == "postgres":
            extra["DATABASE_URL"] = start_postgres(work / "pg")
        if backend == "opensearch":
            os.environ.setdefault("BKLOG_OPENSEARCH_HEAP", "2g")
            (work / "os").mkdir()
            extra.update(BKLOG_SEARCH_BACKEND="opensearch", BKLOG_OPENSEARCH_URL=opensearch.start(work / "os", _free_port()),
                         BKLOG_OPENSEARCH_REFRESH=os.environ.get("BKLOG_OPENSEARCH_REFRESH", "wait_for"))
        stack = Stack(work / "stack", None, **extra)
        token = stack.bklog("create_index_set", "bench", "--parse", "json", "--retention-days", "30")
        api = stack.bklog("create_api_token", "bench", "--role", "reader")
        fill_s = fill_store(stack, lines)
        stack.start_gunicorn()
        stack.wait_for(lambda: stack.get("/readyz")[0] == 200, "readyz")

        # _bulk on top of the full index
        latencies, lock, todo = [], threading.Lock(), iter(range(bulk_batches))
        payloads = [bulk_body(b) for b in range(bulk_batches)]

        def client():
            while (b := next(todo, None)) is not None:
                req = urllib.request.Request(f"{stack.url}/bench/_bulk", data=payloads[b], method="POST",
                                             headers={"Content-Type": "application/x-ndjson", "Authorization": f"Bearer {token}"})
                began = time.perf_counter()
                with urllib.request.urlopen(req, timeout=300) as resp:
                    assert not json.loads(resp.read())["errors"]
                with lock:
                    latencies.append(time.perf_counter() - began)

        began = time.perf_counter()
        threads = [threading.Thread(target=client) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        bulk_wall = time.perf_counter() - began

        # searches
        rng, timings, refused = random.Random(11), {}, {}
        for _ in range(searches):
            for kind, params in queries(rng, lines).items():
                endpoint, page = params.pop("endpoint", "search"), params.pop("page", 1)
                if endpoint == "search":
                    params.setdefault("size", 50)
                if page == 2:  # the first page untimed: its cursor is what the second is asked with
                    _, first = stack.get(f"/api/v1/index_sets/bench/search?{urllib.parse.urlencode(params)}", api)
                    params["cursor"] = json.loads(first)["next_cursor"]
                url = f"{stack.url}/api/v1/index_sets/bench/{endpoint}?" + urllib.parse.urlencode(params)
                began = time.perf_counter()
                status, body = stack.get(url[len(stack.url):], api)
                elapsed = (time.perf_counter() - began) * 1000
                timings.setdefault(kind, [])
                if status == 200:
                    timings[kind].append(elapsed)
                else:  # past BKLOG_SEARCH_TIMEOUT the API refuses (422): counted, not timed
                    assert status == 422 and b"BKLOG_SEARCH_TIMEOUT" in body, body[:300]
                    refused[kind] = refused.get(kind, 0) + 1
        status, body = stack.get("/api/v1/index_sets/bench", api)
        stored = json.loads(body)["lines"]
        from results import server_memory

        memory = server_memory(stack.procs["gunicorn"].pid)  # after the ingest and every search
        stack.close()
        return {"fill_s": fill_s, "fill_lines_per_s": lines / fill_s,
                "bulk_lines_per_s": bulk_batches * 1000 / bulk_wall, "bulk_p95_ms": p95(latencies) * 1000,
                "search": {k: (statistics.median(v), p95(v)) if v else (None, None) for k, v in timings.items()},
                "refused": refused, "all_p95_ms": p95([t for v in timings.values() for t in v]), "stored": stored,
                "api_memory": memory}
    finally:
        stop(work / "pg")
        opensearch.stop(work / "os")
        shutil.rmtree(work, ignore_errors=True)  # gigabytes at 10 M lines


def cell(result: dict, kind: str) -> str:
    """median / p95 ms of the searches answered, and how many the search timeout stopped."""
    median, p95_ms = result["search"][kind]
    timed = f"{median:.0f} / {p95_ms:.0f}" if median is not None else "-"
    refused = result["refused"].get(kind)
    return timed + (f" ({refused} stopped at the timeout)" if refused else "")


def _free_port() -> int:
    from servers import free_port

    return free_port()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lines", type=int, default=10_000_000)
    parser.add_argument("--searches", type=int, default=40, help="searches of each kind per backend")
    parser.add_argument("--bulk-batches", type=int, default=100)
    parser.add_argument("--backends", nargs="+", default=["sqlite", "postgres", "opensearch"])
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    results = {}
    for backend in args.backends:
        results[backend] = run(backend, args.lines, args.searches, args.bulk_batches)
        print(backend, json.dumps(results[backend]), flush=True)
    kinds = list(next(iter(results.values()))["search"])
    out = [
        f"## Backends at {args.lines:,} lines: {', '.join(NAMES[b] for b in results)} — {datetime.now().strftime('%Y-%m-%d %H:%M')}",
        "",
        f"Machine: {os.cpu_count()} cores, shared; one run (bench/backend_bench.py). Each backend filled with the same "
        f"{args.lines:,} generated lines over the 7 days before the run through the line store by {FILL_PROCESSES} processes (10,000-line transactions; OpenSearch "
        f"{os.environ.get('BKLOG_OPENSEARCH_HEAP', '2g')} heap, one node, one shard per daily index), then through gunicorn "
        f"(2 workers, inline pipeline): {args.bulk_batches} `_bulk` batches of 1,000 lines from 4 clients on the full "
        f"index, and {args.searches} searches of each kind (size 50 unless the kind says, varied words).",
        "",
        "| backend | fill lines/s | `_bulk` lines/s | `_bulk` batch p95 ms | search p95 ms (all kinds) | lines stored |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for backend, r in results.items():
        out.append(f"| {backend} | {r['fill_lines_per_s']:,.0f} | {r['bulk_lines_per_s']:,.0f} | {r['bulk_p95_ms']:.0f} | "
                   f"{r['all_p95_ms']:.0f} | {r['stored']:,} |")
    out += ["", "Search median / p95 ms by kind:", "",
            "| kind | " + " | ".join(results) + " |", "| --- | " + " | ".join("---:" for _ in results) + " |"]
    for kind in kinds:
        out.append(f"| {kind} | " + " | ".join(cell(r, kind) for r in results.values()) + " |")
    out += ["", "The API's gunicorn after the ingest and every search (RSS of each worker; PSS of master and workers, "
            "shared pages counted once): " + "; ".join(
                f"{backend} RSS median {r['api_memory']['worker_rss_mib_median']} MiB, max {r['api_memory']['worker_rss_mib_max']} MiB, "
                f"PSS {r['api_memory']['program_pss_mib']} MiB" for backend, r in results.items()) + ".", ""]
    from results import machine, publish, record_rates

    publish("\n".join(out), args.write)
    if args.write:
        for backend, r in results.items():
            record_rates(backend, ("search", args.lines), {
                "date": datetime.now().strftime("%Y-%m-%d"), "machine": machine(),
                "p95_ms": {kind: None if p95_ms is None else round(p95_ms) for kind, (_, p95_ms) in r["search"].items()},
                "stopped_at_timeout": r["refused"], "bulk_lines_per_second": round(r["bulk_lines_per_s"]),
                "api_memory": r["api_memory"]})


if __name__ == "__main__":
    main()
