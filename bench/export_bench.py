"""Export benchmark: what storing a finished export in the database (ExportChunk, so any API host
can serve it) costs on top of writing the file, and what reading it back for a download costs.

    uv run python bench/export_bench.py [--lines 200000] [--runs 5] [--write]

For SQLite and PostgreSQL (a server started here, on loopback), in one run: LINES lines in one
index set, then RUNS times each of: the file alone (what an export did before the change),
run_job (the file, then its pieces stored and the job marked done in one transaction), and the
download (every piece read back). Prints a markdown section (--write appends it to docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))


def measure(lines: int, runs: int) -> dict:
    """In this process: DATABASE_URL and BKLOG_DATA_DIR are set by the caller."""
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bklog.settings")
    django.setup()
    from datetime import timedelta

    from django.core.management import call_command
    from django.utils import timezone

    from bklog.logs import exports
    from bklog.logs.models import ExportJob, IndexSet, LogLine, hash_token, new_token
    from bklog.logs.search import SearchRequest

    call_command("migrate", verbosity=0)
    index_set = IndexSet.objects.create(name="bench", ingest_token_hash=hash_token(new_token("ing")))
    start = timezone.now() - timedelta(days=1)
    batch = []
    for i in range(lines):
        batch.append(LogLine(index_set=index_set, timestamp=start + timedelta(milliseconds=i),
                             message=f"INFO api request {i} took {i % 900}ms user={i % 50000} payment accepted",
                             fields={"n": i}))
        if len(batch) == 5000:
            LogLine.objects.bulk_create(batch)
            batch = []
    LogLine.objects.bulk_create(batch)

    file_only, stored, download, size = [], [], [], 0
    for _ in range(runs):
        with tempfile.NamedTemporaryFile("w", encoding="utf-8", newline="") as out:
            began = time.perf_counter()
            exports.write_lines(exports.iter_lines(index_set, SearchRequest.from_dict({}), limit=lines), out, "jsonl")
            out.flush()
            file_only.append(time.perf_counter() - began)
        job = ExportJob.objects.create(index_set=index_set, query={}, format="jsonl")
        began = time.perf_counter()
        exports.run_job(job)
        stored.append(time.perf_counter() - began)
        assert job.line_count == lines
        began = time.perf_counter()
        pieces, size = exports.stored_file(job)
        assert sum(len(p) for p in pieces) == size
        download.append(time.perf_counter() - began)
        job.delete()
    return {"file_s": statistics.median(file_only), "run_job_s": statistics.median(stored),
            "download_s": statistics.median(download), "bytes": size, "lines": lines, "runs": runs}


def child(backend: str, lines: int, runs: int) -> dict:
    from servers import start_postgres, stop

    work = Path(tempfile.mkdtemp(prefix=f"bklog-export-bench-{backend}-"))
    work.chmod(0o755)  # PostgreSQL's server runs as the postgres user
    env = {**os.environ, "BKLOG_DATA_DIR": str(work / "data"), "BKLOG_ENV": "dev"}
    env.pop("REDIS_URL", None)
    env.pop("DATABASE_URL", None)
    try:
        if backend == "postgres":
            env["DATABASE_URL"] = start_postgres(work / "pg")
        out = subprocess.run([sys.executable, __file__, "--measure", str(lines), str(runs)], env=env, cwd=ROOT,
                             capture_output=True, text=True, timeout=3600)
        if out.returncode != 0:
            raise RuntimeError(out.stderr[-3000:])
        return json.loads(out.stdout.strip().splitlines()[-1])
    finally:
        stop(work / "pg")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lines", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--write", action="store_true")
    parser.add_argument("--measure", nargs=2, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(*args.measure)))
        return
    results = {backend: child(backend, args.lines, args.runs) for backend in ("sqlite", "postgres")}
    lines = [
        f"## Export: the file stored in the database — {datetime.now().strftime('%Y-%m-%d %H:%M')}",
        "",
        f"Machine: {os.cpu_count()} cores, {platform.python_implementation()} {platform.python_version()}; "
        f"{args.lines:,} lines exported as JSONL, medians of {args.runs} runs each, in one run "
        "(bench/export_bench.py). *file alone*: what an export did before its file moved into the "
        "database; *run_job*: the file, then its 1 MiB pieces stored and the job marked done in one "
        "transaction; *download*: every piece read back.",
        "",
        "| backend | MB | file alone s | run_job s | run_job / file | lines/s (run_job) | download s |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for backend, r in results.items():
        lines.append(f"| {backend} | {r['bytes'] / 1e6:.1f} | {r['file_s']:.2f} | {r['run_job_s']:.2f} | "
                     f"{r['run_job_s'] / r['file_s']:.2f}x | {r['lines'] / r['run_job_s']:,.0f} | {r['download_s']:.2f} |")
    lines.append("")
    from results import publish

    publish("\n".join(lines), args.write)


if __name__ == "__main__":
    main()
