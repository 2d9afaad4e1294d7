"""Service benchmark: /healthz, search over a large index, and 1,000-line ingest batches through
gunicorn with the default config, each beside a bare WSGI hello-world under the same gunicorn
settings in the same run; then pipeline throughput of one Celery worker program.

    uv run python bench/service_bench.py [--lines 1000000] [--duration 15] [--backend sqlite|postgres]

Prints a markdown section; with --write it is appended to docs/benchmarks.md. Needs wrk, and
redis-server / postgresql from scripts/setup.sh. Loopback only, every run bounded by --duration.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from servers import free_port, start_postgres, start_redis, stop  # noqa: E402

sys.path.insert(0, str(ROOT / "bench"))
from results import machine, publish, record_rates, server_memory  # noqa: E402

BIN = Path(sys.executable).parent
WORDS = [f"w{i:04d}" for i in range(5000)]
SERVICES = ["api", "auth", "billing", "search", "export", "gateway", "payments", "users"]
LEVELS = ["INFO"] * 7 + ["WARN"] * 2 + ["ERROR"]


def message(rng: random.Random, i: int) -> str:
    return (f"{rng.choice(LEVELS)} {rng.choice(SERVICES)} request {i} {rng.choice(WORDS)} {rng.choice(WORDS)} "
            f"{rng.choice(WORDS)} took {rng.randint(1, 900)}ms user={rng.randint(1, 50000)}")


def wrk(url: str, duration: int, connections: int, **env) -> dict:
    cmd = ["wrk", "-t2", f"-c{connections}", f"-d{duration}s", "--timeout", "10s",
           "-s", str(ROOT / "bench" / "wrk_report.lua"), url]
    out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **env}, timeout=duration + 60)
    line = next(l for l in out.stdout.splitlines() if l.startswith("BENCH "))
    result = json.loads(line[len("BENCH "):])
    result["rps"] = result["requests"] / result["duration_s"]
    return result


def wait_http(url: str, timeout: float = 60) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except Exception:
            time.sleep(0.2)
    raise RuntimeError(f"{url} never answered")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--duration", type=int, default=15)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--pipeline-batches", type=int, default=600)
    parser.add_argument("--write", action="store_true", help="append the result to docs/benchmarks.md")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bklog-bench-"))
    os.chmod(work, 0o755)
    procs: list[subprocess.Popen] = []
    redis_dir, pg_dir = work / "redis", work / "pg"
    try:
        redis_url = start_redis(redis_dir)
        database_url = (start_postgres(pg_dir) if args.backend == "postgres"
                        else f"sqlite:///{work / 'bench.sqlite3'}")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("BKLOG_", "GUNICORN_"))}
        env.update(BKLOG_ENV="dev", BKLOG_DEBUG="false", BKLOG_LOG_LEVEL="WARNING", BKLOG_DATA_DIR=str(work / "data"),
                   DATABASE_URL=database_url, BKLOG_PIPELINE_MODE="inline")
        os.environ.update(env)
        subprocess.run([str(BIN / "bklog"), "migrate", "--noinput"], env=env, check=True, capture_output=True)

        import django

        os.environ["DJANGO_SETTINGS_MODULE"] = "bklog.settings"
        django.setup()
        from django.db import transaction

        from bklog.logs.models import ApiToken, LogLine, hash_token
        from bklog.logs.views import create_index_set

        index_set, ingest_token = create_index_set("bench")
        api_token = "api_bench_token"
        ApiToken.objects.create(name="bench", token_hash=hash_token(api_token))
        rng = random.Random(42)
        start_ts = datetime.now(timezone.utc) - timedelta(days=1)
        t0 = time.perf_counter()
        chunk = 20000
        for offset in range(0, args.lines, chunk):
            with transaction.atomic():
                LogLine.objects.bulk_create(
                    [LogLine(index_set=index_set, timestamp=start_ts + timedelta(milliseconds=i * 50),
                             message=text, fields=dict(zip(("level", "service"), text.split()[:2])))
                     for i in range(offset, min(offset + chunk, args.lines)) for text in [message(rng, i)]],
                    batch_size=2000)
        load_s = time.perf_counter() - t0
        from django.db import connections

        connections.close_all()
        print(f"loaded {args.lines} lines in {load_s:.1f}s", file=sys.stderr)

        api_port, hello_port = free_port(), free_port()
        common = [str(BIN / "gunicorn"), "-c", "python:bklog.gunicorn_config"]
        for port, app in ((api_port, "bklog.wsgi:application"), (hello_port, "hello_wsgi:application")):
            procs.append(subprocess.Popen(common + [app], cwd=ROOT / "bench",
                                          env={**env, "GUNICORN_BIND": f"127.0.0.1:{port}",
                                               "PROMETHEUS_MULTIPROC_DIR": str(work / f"prom{port}")},
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        api, hello = f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{hello_port}"
        wait_http(api + "/healthz")
        wait_http(hello + "/")
        d, c = args.duration, args.connections

        results = {"hello_1": wrk(hello + "/", d, c), "healthz": wrk(api + "/healthz", d, c)}
        mix = search_mix(index_set, start_ts, args.lines)
        search_paths = ",".join(f"/api/v1/index_sets/bench/search?{urlencode(params)}" for params in mix)
        results["search"] = wrk(api + "/", d, c, WRK_PATHS=search_paths, WRK_AUTH=api_token) | {"kinds": len(mix)}
        batch = work / "batch.txt"
        batch.write_text("\n".join(message(rng, i) for i in range(1000)) + "\n")
        results["ingest"] = wrk(api + "/api/v1/index_sets/bench/ingest", d, min(c, 8), WRK_METHOD="POST",
                                WRK_BODY_FILE=str(batch), WRK_AUTH=ingest_token, WRK_CTYPE="text/plain")
        memory = {"api": server_memory(procs[0].pid)}  # after the searches and the ingest: steady state
        results["hello_2"] = wrk(hello + "/", d, c)
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=60)
        procs.clear()

        pipeline = pipeline_bench(env, redis_url, args.pipeline_batches, work)
        memory["pipeline"] = pipeline.pop("memory")
        report(args, results, pipeline, memory, load_s)
    finally:
        for p in procs:
            p.kill()
        stop(redis_dir)
        if pg_dir.exists():
            stop(pg_dir)


def search_mix(index_set, start_ts: datetime, lines: int) -> list[dict]:
    """The searches rotated through gunicorn: issue 18's kinds a log user types every day."""
    from bklog.logs.search import SearchRequest
    from bklog.logs.store import line_store

    window = start_ts + timedelta(hours=4)
    second_page = line_store().search(index_set, SearchRequest(q="INFO"), 50)["next_cursor"]
    return [{"q": q, "size": 50} for q in ["w0042", "ERROR", "payments w0777", '"request 12345"', "billing OR auth NOT w0001",
                                            "WARN gateway", "w4999 OR w0003", "users -INFO", str(lines // 3), "-INFO"]] + [
        {"q": "w0100", "start": window.isoformat(), "end": (window + timedelta(hours=2)).isoformat(), "size": 50},
        {"field.service": "api", "size": 50},
        {"q": "WARN", "size": 500},
        {"q": "INFO", "size": 50, "cursor": second_page},
    ]


def pipeline_bench(env: dict, redis_url: str, batches: int, work: Path) -> dict:
    """One worker program as app.yml declares it (pool and concurrency of `pipeline`), draining
    `batches` queued batches of 100 lines: a medium task (parse + index 100 lines)."""
    from celery import Celery
    from django.utils import timezone as djtz

    from bklog.config import load_app_spec
    from bklog.logs.models import IndexSet, IngestBatch

    spec = next(w for w in load_app_spec()["celery"]["workers"] if w["name"] == "pipeline")
    index_set = IndexSet.objects.get(name="bench")
    rng = random.Random(7)
    ids = [str(IngestBatch.objects.create(index_set=index_set, received_at=djtz.now(), line_count=100,
                                          lines=[message(rng, i) for i in range(100)]).id) for _ in range(batches)]
    worker_env = {**env, "REDIS_URL": redis_url, "BKLOG_PIPELINE_MODE": "async"}
    log = open(work / "worker.log", "w")
    worker = subprocess.Popen([str(BIN / "celery"), "-A", "bklog.celery_app", "worker", "-Q", ",".join(spec["queues"]),
                               "-c", str(spec["concurrency"]), "--max-tasks-per-child", str(spec["max_tasks_per_child"]),
                               "--loglevel", "WARNING"], env=worker_env, stdout=log, stderr=subprocess.STDOUT)
    try:
        client = Celery(broker=redis_url)
        time.sleep(5)  # worker boot, outside the measured window
        t0 = time.perf_counter()
        for batch_id in ids:
            client.send_task("bklog.logs.tasks.index_batch", args=[batch_id], queue="pipeline")
        while IngestBatch.objects.filter(status=IngestBatch.PENDING).exists():
            time.sleep(0.05)
        elapsed = time.perf_counter() - t0
        memory = server_memory(worker.pid)
    finally:
        worker.terminate()
        worker.wait(timeout=120)
    return {"tasks": batches, "seconds": elapsed, "tasks_per_s": batches / elapsed,
            "concurrency": spec["concurrency"], "lines_per_task": 100, "memory": memory}


def report(args, results: dict, pipeline: dict, memory: dict, load_s: float) -> None:
    hello_rps = statistics.median([results["hello_1"]["rps"], results["hello_2"]["rps"]])
    hello_p95 = statistics.median([results["hello_1"]["p95_ms"], results["hello_2"]["p95_ms"]])
    lines = [
        f"## Service through gunicorn ({args.backend}, {args.lines:,} lines) — "
        f"{datetime.now().strftime('%Y-%m-%d %H:%M')}",
        "",
        f"Machine: {machine()}, "
        f"Python {platform.python_version()}. gunicorn default config (workers = 2 x cores = {2 * os.cpu_count()}, sync). "
        f"wrk 2 threads, {args.connections} connections ({min(args.connections, 8)} for ingest), {args.duration} s per run, "
        f"loopback. Index loaded in {load_s:.0f} s.",
        "",
        "| run | requests/s | p50 ms | p95 ms | p99 ms | errors | vs hello-world (rps) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name in ("hello_1", "healthz", "search", "ingest", "hello_2"):
        r = results[name]
        ratio = "" if name.startswith("hello") else f"{r['rps'] / hello_rps:.2f}"
        label = {"hello_1": "hello-world WSGI (before)", "hello_2": "hello-world WSGI (after)",
                 "healthz": "GET /healthz", "search": f"GET search ({results['search']['kinds']} kinds rotated, issue 18's)",
                 "ingest": "POST ingest, 1,000-line batch"}[name]
        lines.append(f"| {label} | {r['rps']:.0f} | {r['p50_ms']:.1f} | {r['p95_ms']:.1f} | {r['p99_ms']:.1f} | "
                     f"{r['errors']} | {ratio} |")
    lines += [
        "",
        f"Ingest throughput: {results['ingest']['rps'] * 1000:,.0f} lines/s. Hello-world median: {hello_rps:.0f} rps, "
        f"p95 {hello_p95:.1f} ms.",
        "",
        f"Pipeline: one `pipeline` worker program (prefork, -c {pipeline['concurrency']}) indexed {pipeline['tasks']} "
        f"queued batches of {pipeline['lines_per_task']} lines in {pipeline['seconds']:.1f} s: "
        f"**{pipeline['tasks_per_s']:.1f} tasks/s** ({pipeline['tasks_per_s'] * pipeline['lines_per_task']:,.0f} lines/s).",
        "",
        "Memory at steady state (RSS of each worker process; PSS of the program, master and workers, shared pages "
        "counted once): " + "; ".join(
            f"{name}: {m['workers']} workers, RSS median {m['worker_rss_mib_median']} MiB, max {m['worker_rss_mib_max']} MiB, "
            f"program PSS {m['program_pss_mib']} MiB" for name, m in (("API (gunicorn, after search and ingest)", memory["api"]),
                                                                      ("pipeline worker program", memory["pipeline"]))) + ".",
        "",
    ]
    publish("\n".join(lines), args.write)
    if args.write:
        record_rates(args.backend, ("service",), {
            "date": datetime.now().strftime("%Y-%m-%d"), "machine": machine(), "lines": args.lines,
            "healthz_per_second": round(results["healthz"]["rps"]), "hello_world_per_second": round(hello_rps),
            "search_per_second": round(results["search"]["rps"], 1), "search_p95_ms": round(results["search"]["p95_ms"]),
            "ingest_lines_per_second": round(results["ingest"]["rps"] * 1000),
            "pipeline_tasks_per_second": round(pipeline["tasks_per_s"], 1), "pipeline_lines_per_task": pipeline["lines_per_task"],
            "api_memory": memory["api"], "pipeline_memory": memory["pipeline"]})

if __name__ == "__main__":
    main()
