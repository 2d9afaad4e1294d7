"""The README's container section, run as written: the image built, migrate as a one-off, the API
and a worker against a Redis container, /readyz answering; then its clean-up."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))
from readme_blocks import blocks  # noqa: E402


def bash(script: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=ROOT, capture_output=True, text=True,
                          timeout=1200)


def call(method: str, path: str, token: str, body: bytes | None = None, content_type: str = "application/json"):
    req = urllib.request.Request("http://127.0.0.1:8000" + path, data=body, method=method,
                                 headers={"Authorization": f"Bearer {token}", "Content-Type": content_type})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def test_the_container_section_runs_as_written():
    start, clean_up = blocks("tests/container/test_readme.py")
    bash(clean_up)  # what an earlier, interrupted run left
    try:
        run = bash(start)
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        ready = json.loads(run.stdout.strip().splitlines()[-1])
        assert ready["status"] == "ready" and ready["checks"]["broker"] == "ok", ready
        with urllib.request.urlopen("http://127.0.0.1:8000/healthz", timeout=10) as resp:
            assert resp.status == 200
        # The worker container indexes what the API accepts (REDIS_URL set: ingest is async).
        admin = subprocess.run(["podman", "exec", "bklog-demo-api", "bklog", "create_api_token", "readme"],
                               capture_output=True, text=True, check=True).stdout.split()[-1]
        created = call("POST", "/api/v1/index_sets", admin, json.dumps({"name": "readme"}).encode())
        lines = "\n".join(f"readme line {i}" for i in range(10)).encode()
        assert call("POST", "/api/v1/index_sets/readme/ingest", created["ingest_token"], lines, "text/plain")["accepted"] == 10
        deadline = time.monotonic() + 90
        while call("GET", "/api/v1/index_sets/readme/search?q=readme", admin)["total"] != 10:
            assert time.monotonic() < deadline, "the worker container did not index the lines in 90 s"
            time.sleep(1)
    finally:
        done = bash(clean_up)
    assert done.returncode == 0, done.stderr
