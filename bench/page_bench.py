"""Search page benchmark (issue 19's "first results on screen within a second for a search the API
answers in 200 ms", "page weight under 200 KB compressed before results"): gunicorn with the
shipped config on SQLite, an index set of --lines lines over a week (loaded with `bklog
import_logs`), Debian's chromium through Selenium.

For each query: the API's own search latency (median of --runs direct requests, the page's
parameters), then --runs fresh page loads with that query in the URL, each timed from navigation
start to the page's `bklog-first-results` mark (the first hits in the table); and the bytes the page
loaded before its first search, as sent (compressed).

    uv run python bench/page_bench.py [--lines 200000] [--runs 5] [--write]
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import sys
import tempfile
import time
import urllib.parse
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "service"))
sys.path.insert(0, str(ROOT / "bench"))
from e2e_stack import Stack, http  # noqa: E402
from results import publish  # noqa: E402

PASSWORD = "bench page password 1"
QUERIES = ["", "error", "w0042", "error AND payments"]
SERVICES = ["api", "auth", "billing", "search", "export", "gateway", "payments", "users"]


def load(stack: Stack, lines: int, workdir: Path) -> None:
    rng = random.Random(7)
    now = datetime.now(timezone.utc)
    path = workdir / "lines.jsonl"
    with path.open("w") as out:
        for i in range(lines):
            at = now - timedelta(seconds=i * 7 * 86400 / lines)
            level = rng.choice(["INFO"] * 7 + ["WARN"] * 2 + ["ERROR"])
            out.write(json.dumps({"timestamp": at.isoformat(), "fields": {"service": rng.choice(SERVICES)},
                                  "message": f"{level.lower()} request {i} w{rng.randrange(5000):04d} took {rng.randint(1, 900)}ms"}) + "\n")
    stack.bklog("import_logs", "app", "--input", str(path), "--chunk", "10000")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--write", action="store_true", help="append the section to docs/benchmarks.md")
    args = parser.parse_args()

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    workdir = Path(tempfile.mkdtemp(prefix="page-bench-"))
    # dev without DEBUG: the embedded database, and a production's settings for the rest.
    stack = Stack(workdir, None, BKLOG_DEBUG="false", BKLOG_LOG_LEVEL="WARNING")
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,900"):
        options.add_argument(argument)
    browser = None
    try:
        stack.bklog("collectstatic", "--noinput", "-v0")
        stack.bklog("create_index_set", "app", "--parse", "json")
        api_token = stack.bklog("create_api_token", "bench")
        stack.bklog("shell", "-c", f"from django.contrib.auth.models import User; User.objects.create_user('bench', password={PASSWORD!r}, is_staff=True)")
        started = time.monotonic()
        load(stack, args.lines, workdir)
        loaded_s = time.monotonic() - started
        stack.start_gunicorn()
        browser = webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))
        browser.get(stack.url + "/login/")
        browser.find_element(By.ID, "id_username").send_keys("bench")
        browser.find_element(By.ID, "id_password").send_keys(PASSWORD)
        browser.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
        time.sleep(1)
        rows = []
        weight = None
        for query in QUERIES:
            end = datetime.now(timezone.utc)
            params = {"q": query, "start": (end - timedelta(hours=24)).isoformat(), "end": end.isoformat(), "size": 50}
            api_ms = []
            for _ in range(args.runs):
                t0 = time.perf_counter()
                status, _ = http("GET", f"{stack.url}/api/v1/index_sets/app/search?{urllib.parse.urlencode(params)}",
                                 headers={"Authorization": f"Bearer {api_token}"})
                api_ms.append((time.perf_counter() - t0) * 1000)
                assert status == 200
            page_ms = []
            for _ in range(args.runs):
                browser.get(f"{stack.url}/?" + urllib.parse.urlencode({"index_set": "app", "q": query, "range": "24h"}))
                mark = None
                deadline = time.monotonic() + 30
                while mark is None and time.monotonic() < deadline:
                    mark = browser.execute_script(
                        "const m = performance.getEntriesByName('bklog-first-results'); return m.length ? m[0].startTime : null")
                    time.sleep(0.02)
                assert mark is not None, f"no first results for {query!r}"
                page_ms.append(mark)
                if weight is None:
                    weight = browser.execute_script(
                        "return performance.getEntriesByType('resource').concat(performance.getEntriesByType('navigation'))"
                        ".filter((e) => !e.name.includes('/api/')).reduce((sum, e) => sum + (e.transferSize || e.encodedBodySize || 0), 0)")
            rows.append((query or "(every line)", statistics.median(api_ms), statistics.median(page_ms)))
    finally:
        if browser is not None:
            browser.quit()
        stack.close()

    machine = f"{platform.node()}, {platform.machine()}, {len(__import__('os').sched_getaffinity(0))} cores"
    lines = [f"## Search page: first results on screen ({datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {machine})", "",
             f"`bench/page_bench.py --lines {args.lines} --runs {args.runs}`: gunicorn (shipped config) on SQLite, "
             f"{args.lines:,} lines over a week loaded in {loaded_s:.0f} s, Debian's chromium (headless) through Selenium, "
             "last 24 hours, 50 hits. API: the search request alone; page: navigation start to the first hits in "
             "the table (the page's `bklog-first-results` mark), medians of the runs.", "",
             "| query | API search (ms) | page to first results (ms) | page minus API (ms) |", "|---|---:|---:|---:|"]
    for query, api, page in rows:
        lines.append(f"| `{query}` | {api:.0f} | {page:.0f} | {page - api:.0f} |")
    lines += ["", f"Page weight before the first search, as sent (compressed): {weight / 1024:.1f} KB (target < 200 KB).", ""]
    publish("\n".join(lines), args.write)


if __name__ == "__main__":
    main()
