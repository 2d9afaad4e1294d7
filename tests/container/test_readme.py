"""The README's container sections, run as written, each with its clean-up:
- the trial: the image built, migrate as a one-off, the API and a worker against a Redis container,
  /readyz answering;
- production (the guide's `docker run --env-file prod.env`): `BKLOG_ENV=prod` from one env file
  against PostgreSQL and Redis containers with passwords, and prod refusing to start when the env
  file lacks what it requires.
In both, the worker container indexes what the API accepts (REDIS_URL set: ingest is async)."""

from __future__ import annotations

import contextlib
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


@contextlib.contextmanager
def section(*marker: str):
    """Runs the section's start block (after its clean-up, for what an interrupted run left), yields
    the /readyz answer it ends with, and cleans up whatever happened."""
    start, clean_up = blocks("tests/container/test_readme.py", *marker)
    bash(clean_up)
    try:
        run = bash(start)
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        ready = json.loads(run.stdout.strip().splitlines()[-1])
        assert ready["status"] == "ready" and ready["checks"]["broker"] == "ok", ready
        yield ready
    finally:
        done = bash(clean_up)
    assert done.returncode == 0, done.stderr


def ingest_and_find(api: str, container: str, name: str) -> None:
    def call(method: str, path: str, token: str, body: bytes | None = None, content_type: str = "application/json"):
        req = urllib.request.Request(api + path, data=body, method=method,
                                     headers={"Authorization": f"Bearer {token}", "Content-Type": content_type})
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())

    admin = subprocess.run(["podman", "exec", container, "bklog", "create_api_token", name],
                           capture_output=True, text=True, check=True).stdout.split()[-1]
    created = call("POST", "/api/v1/index_sets", admin, json.dumps({"name": name}).encode())
    lines = "\n".join(f"{name} line {i}" for i in range(10)).encode()
    assert call("POST", f"/api/v1/index_sets/{name}/ingest", created["ingest_token"], lines, "text/plain")["accepted"] == 10
    deadline = time.monotonic() + 90
    while call("GET", f"/api/v1/index_sets/{name}/search?q={name}", admin)["total"] != 10:
        assert time.monotonic() < deadline, "the worker container did not index the lines in 90 s"
        time.sleep(1)


def test_the_container_section_runs_as_written():
    with section():
        with urllib.request.urlopen("http://127.0.0.1:8000/healthz", timeout=10) as resp:
            assert resp.status == 200
        ingest_and_find("http://127.0.0.1:8000", "bklog-demo-api", "readme")


def test_the_production_container_section_runs_as_written():
    with section("production"):
        settings = subprocess.run(["podman", "exec", "bklog-prod-api", "bklog", "shell", "-c",
                                   "from django.conf import settings; from django.db import connection; "
                                   "print(settings.DEBUG, connection.vendor, settings.BKLOG_PIPELINE_ASYNC)"],
                                  capture_output=True, text=True, check=True).stdout.split()
        assert settings[-3:] == ["False", "postgresql", "True"], settings
        ingest_and_find("http://127.0.0.1:8001", "bklog-prod-api", "prod")
        # The same env file without DATABASE_URL: prod refuses to start, naming it.
        refused = bash("grep -v '^DATABASE_URL=' prod.env > prod-broken.env; trap 'rm -f prod-broken.env' EXIT; "
                       "podman run --rm --network bklog-prod --env-file prod-broken.env localhost/bklog:1.0.0 bklog check")
        assert refused.returncode != 0
        assert "DATABASE_URL" in refused.stdout + refused.stderr, refused.stdout[-2000:] + refused.stderr[-2000:]
