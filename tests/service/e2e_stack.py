"""The end-to-end harness: real processes, gunicorn started with gunicorn_config.py, Celery
workers on a real Redis, the database of the run (SQLite, or the PostgreSQL server scripts/test
starts). Its fixtures (redis_url, stack_factory) are registered by tests/service/conftest.py; the
tests are test_e2e_pipeline.py (ingest, workers, broker), test_e2e_consul.py (gunicorn's hooks) and
test_e2e_clients.py (shippers' clients and HTTP framing)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from bklog.config import VARIABLES

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from servers import free_port, start_redis, stop  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory):
    url = os.environ.get("BKLOG_TEST_REDIS_URL")
    if url:
        yield url
        return
    workdir = tmp_path_factory.mktemp("redis")
    yield start_redis(workdir)
    stop(workdir)


def _database_url(tmp_path: Path) -> str:
    base = os.environ.get("DATABASE_URL", "")
    if not base.startswith("postgres"):
        return f"sqlite:///{tmp_path / 'e2e.sqlite3'}"
    import psycopg

    name = f"e2e_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return base.rsplit("/", 1)[0] + "/" + name


def http(method: str, url: str, body: bytes | None = None, headers: dict | None = None, timeout: float = 30):
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


class Stack:
    """A data dir, migrated database, gunicorn and (optionally) a Celery worker."""

    def __init__(self, tmp_path: Path, redis_url: str | None, **extra_env):
        self.tmp = tmp_path
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if k not in VARIABLES}
        env.update(BKLOG_ENV="dev", BKLOG_DATA_DIR=str(tmp_path / "data"), DATABASE_URL=_database_url(tmp_path),
                   GUNICORN_BIND=f"127.0.0.1:{self.port}", GUNICORN_WORKERS="2", BKLOG_LOG_LEVEL="INFO",
                   PYTHONUNBUFFERED="1")
        if redis_url:
            env["REDIS_URL"] = redis_url
        if os.environ.get("BKLOG_SEARCH_BACKEND") == "opensearch":
            # The same OpenSearch as the other tests, under this stack's own index prefix.
            env.update(BKLOG_SEARCH_BACKEND="opensearch", BKLOG_OPENSEARCH_URL=os.environ["BKLOG_OPENSEARCH_URL"],
                       BKLOG_OPENSEARCH_INDEX_PREFIX="e2e" + uuid.uuid4().hex[:12])
        env.update(extra_env)
        self.env = env
        self.procs: dict[str, subprocess.Popen] = {}
        self.bklog("migrate", "--noinput")

    def bklog(self, *args) -> str:
        proc = subprocess.run([str(BIN / "bklog"), *args], env=self.env, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.strip()

    def log(self, name: str) -> str:
        return (self.tmp / f"{name}.log").read_text()

    def start(self, name: str, args: list[str], cwd: Path = ROOT):
        out = open(self.tmp / f"{name}.log", "w")
        self.procs[name] = subprocess.Popen(args, env=self.env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                                            start_new_session=True)

    def start_gunicorn(self, guide_layout: bool = False):
        if guide_layout:  # the guide's form, from the bklog/ folder
            self.start("gunicorn", [str(BIN / "gunicorn"), "-c", "gunicorn_config.py", "wsgi:application"],
                       cwd=ROOT / "bklog")
        else:
            self.start("gunicorn", [str(BIN / "gunicorn"), "-c", "python:bklog.gunicorn_config",
                                    "bklog.wsgi:application"])
        self.wait_for(lambda: self.get("/healthz")[0] == 200, "gunicorn /healthz")

    def start_worker(self, queues="pipeline,pipeline_priority,async_export,default,celery"):
        self.start("worker", [str(BIN / "celery"), "-A", "bklog.celery_app", "worker", "-Q", queues, "-c", "2",
                              "--loglevel", "INFO", "-n", f"e2e-{uuid.uuid4().hex[:6]}@%h", "--without-gossip", "--without-mingle"])
        self.wait_for(lambda: "ready." in self.log("worker"), "celery worker ready")

    def ingest(self, token: str, body: bytes, index_set: str = "app"):
        return http("POST", f"{self.url}/api/v1/index_sets/{index_set}/ingest", body,
                    {"Authorization": f"Bearer {token}", "Content-Type": "text/plain"})

    def get(self, path, token=None):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        try:
            return http("GET", self.url + path, headers=headers)
        except (urllib.error.URLError, ConnectionError):
            return 0, b""

    def wait_for(self, predicate, what: str, timeout: float = 60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    raise AssertionError(f"{name} exited {proc.returncode} while waiting for {what}:\n{self.log(name)}")
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {what}")

    def stop(self, name: str, sig=signal.SIGTERM) -> int:
        proc = self.procs.pop(name)
        if proc.poll() is None:
            os.killpg(proc.pid, sig)
        return proc.wait(timeout=60)

    def close(self):
        for name in list(self.procs):
            self.stop(name)


@pytest.fixture
def stack_factory(tmp_path):
    stacks = []

    def make(redis_url=None, **env):
        stack = Stack(tmp_path / f"s{len(stacks)}", redis_url, **env) if stacks else Stack(tmp_path, redis_url, **env)
        stacks.append(stack)
        return stack

    yield make
    for stack in stacks:
        stack.close()


def app_stack(stack_factory, redis_url) -> tuple[Stack, str, str]:
    """An empty broker, a stack on it, index set `app` with its ingest token, an API token, gunicorn."""
    import redis

    redis.Redis.from_url(redis_url).flushdb()
    stack = stack_factory(redis_url)
    ingest_token = stack.bklog("create_index_set", "app")
    api = stack.bklog("create_api_token", "ops")
    stack.start_gunicorn()
    return stack, ingest_token, api
