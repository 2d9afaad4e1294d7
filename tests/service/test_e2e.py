"""End to end with real processes: gunicorn started with gunicorn_config.py, Celery workers on a
real Redis, the database of the run (SQLite, or the PostgreSQL server scripts/test starts).

The Consul tests here use a small HTTP double of the agent's API (no Consul binary exists on this
machine until the fleet issue builds one); they prove the hooks call the agent's endpoints with the
right payload, and are harmless when the agent is absent or refuses.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from bklog.config import VARIABLES

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from servers import free_port, start_redis, stop  # noqa: E402

pytestmark = pytest.mark.e2e
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


def _app_stack(stack_factory, redis_url) -> tuple[Stack, str, str]:
    """An empty broker, a stack on it, index set `app` with its ingest token, an API token, gunicorn."""
    import redis

    redis.Redis.from_url(redis_url).flushdb()
    stack = stack_factory(redis_url)
    ingest_token = stack.bklog("create_index_set", "app")
    api = stack.bklog("create_api_token", "ops")
    stack.start_gunicorn()
    return stack, ingest_token, api


def test_async_pipeline_and_export_through_real_workers(stack_factory, redis_url):
    stack, ingest_token, api = _app_stack(stack_factory, redis_url)
    stack.start_worker()

    sent = 0
    for batch in range(5):
        lines = "\n".join(f"batch{batch} line{i} payment failed" for i in range(200)).encode()
        status, body = stack.ingest(ingest_token, lines)
        assert status == 202, body
        assert json.loads(body) == {**json.loads(body), "accepted": 200, "indexed": False}
        sent += 200

    def indexed():
        status, body = stack.get("/api/v1/index_sets/app/search?q=payment&size=1", api)
        return status == 200 and json.loads(body)["total"] == sent

    stack.wait_for(indexed, f"{sent} lines searchable")

    status, body = http("POST", f"{stack.url}/api/v1/index_sets/app/exports",
                        json.dumps({"q": "batch3", "format": "jsonl"}).encode(),
                        {"Authorization": f"Bearer {api}", "Content-Type": "application/json"})
    assert status == 202 and json.loads(body)["status"] == "pending"
    job_id = json.loads(body)["id"]
    stack.wait_for(lambda: json.loads(stack.get(f"/api/v1/exports/{job_id}", api)[1])["status"] == "done",
                   "export done")
    status, content = stack.get(f"/api/v1/exports/{job_id}/download", api)
    assert status == 200 and len(content.decode().splitlines()) == 200
    assert "bklog.logs.tasks.run_export" in stack.log("worker")

    # Ready with the broker, and metrics aggregated over both gunicorn workers.
    status, body = stack.get("/readyz")
    assert status == 200 and json.loads(body)["checks"]["broker"] == "ok"
    for _ in range(20):
        stack.get("/healthz")
    metrics = stack.get("/metrics")[1].decode()
    healthz = [l for l in metrics.splitlines() if l.startswith('bklog_http_requests_total{method="GET",status="200",view="healthz"}')]
    assert healthz and float(healthz[0].split()[-1]) >= 21
    assert 'bklog_celery_queue_length{queue="pipeline"} 0.0' in metrics


def test_redelivered_batch_is_indexed_once(stack_factory, redis_url):
    stack, ingest_token, api = _app_stack(stack_factory, redis_url)
    status, body = stack.ingest(ingest_token, b"one\ntwo\nthree")
    assert status == 202
    batch_id = json.loads(body)["batch"]
    # Deliver the same task a second time, as the broker does after a worker dies before its ack.
    from celery import Celery

    Celery(broker=redis_url).send_task("bklog.logs.tasks.index_batch", args=[batch_id], queue="pipeline")
    stack.start_worker(queues="pipeline")
    # Celery logs each task's result: one delivery indexed the batch, the other found it done.
    stack.wait_for(lambda: ": 'already-indexed'" in stack.log("worker") and ": 'indexed'" in stack.log("worker"),
                   "both deliveries handled")

    def total():
        return json.loads(stack.get("/api/v1/index_sets/app/search?size=10", api)[1])["total"]

    # A worker's batch on OpenSearch is searchable within the refresh interval (1 s), not at once.
    stack.wait_for(lambda: total() >= 3, "the batch searchable")
    assert total() == 3


def test_broker_down_means_503_and_nothing_stored(stack_factory):
    stack = stack_factory(f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
    ingest_token = stack.bklog("create_index_set", "app")
    stack.start_gunicorn()
    status, body = stack.ingest(ingest_token, b"lost?")
    assert status == 503 and "nothing was stored" in json.loads(body)["error"]
    status, body = stack.get("/readyz")
    assert status == 503 and json.loads(body)["failed"] == ["broker"]
    count = stack.bklog("shell", "-c", "from bklog.logs.models import IndexSet, IngestBatch; "
                                       "from bklog.logs.store import line_store; "
                                       "print(IngestBatch.objects.count() + sum(line_store().count(s) for s in IndexSet.objects.all()))")
    assert count.splitlines()[-1] == "0"


class _AgentDouble:
    """Records requests like Consul's agent API; answers `status` to each."""

    def __init__(self, status: int):
        self.requests: list[tuple[str, str, dict]] = []
        double = self

        class Handler(BaseHTTPRequestHandler):
            def do_PUT(self):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                double.requests.append(("PUT", self.path, json.loads(raw) if raw else {}))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.addr = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()


@pytest.mark.one_backend  # gunicorn's hooks and Consul, no line stored
def test_consul_hooks_register_and_deregister(stack_factory):
    agent = _AgentDouble(200)
    try:
        stack = stack_factory(None, BKLOG_CONSUL_ENABLED="true", CONSUL_HTTP_ADDR=agent.addr)
        stack.start_gunicorn(guide_layout=True)
        stack.wait_for(lambda: len(agent.requests) >= 1, "registration")
        method, path, raw = agent.requests[0]
        assert path == "/v1/agent/service/register?replace-existing-checks=true"
        # Consul decodes JSON keys case-insensitively; py-consul sends them in lower case.
        payload = {k.lower(): v for k, v in raw.items()}
        check = {k.lower(): v for k, v in payload["checks"][0].items()}
        assert payload["name"] == "bklog-api" and payload["port"] == stack.port and payload["address"] == "127.0.0.1"
        assert payload["tags"] == ["api"] and payload["id"].endswith(f"-{stack.port}")
        assert check["http"] == f"http://127.0.0.1:{stack.port}/healthz"
        assert check["interval"] == "10s" and check["timeout"] == "5s"
        assert check["deregistercriticalserviceafter"] == "1m"
        # Readiness: a second check that never deregisters (a dependency outage must not reap it).
        ready = {k.lower(): v for k, v in payload["checks"][1].items()}
        assert ready["http"] == f"http://127.0.0.1:{stack.port}/readyz" and "deregistercriticalserviceafter" not in ready
        assert stack.stop("gunicorn") == 0
        assert agent.requests[-1][1] == f"/v1/agent/service/deregister/{payload['id']}"
    finally:
        agent.close()


@pytest.mark.one_backend  # gunicorn's hooks and Consul, no line stored
@pytest.mark.parametrize("agent_status", [None, 500])
def test_consul_absent_or_refusing_warns_once_and_serves(stack_factory, agent_status):
    agent = _AgentDouble(agent_status) if agent_status else None
    try:
        addr = agent.addr if agent else f"127.0.0.1:{free_port()}"
        stack = stack_factory(None, BKLOG_CONSUL_ENABLED="true", CONSUL_HTTP_ADDR=addr)
        stack.start_gunicorn()
        assert stack.get("/healthz")[0] == 200
        assert stack.log("gunicorn").count("Consul registration at") == 1
        assert stack.stop("gunicorn") == 0
    finally:
        if agent:
            agent.close()


@pytest.mark.one_backend  # gunicorn's hooks and Consul, no line stored
def test_consul_disabled_makes_no_call(stack_factory):
    agent = _AgentDouble(200)
    try:
        stack = stack_factory(None, BKLOG_CONSUL_ENABLED="false", CONSUL_HTTP_ADDR=agent.addr)
        stack.start_gunicorn()
        assert stack.stop("gunicorn") == 0
        assert agent.requests == []
    finally:
        agent.close()


def _bulk_actions():
    """Five good documents, one whose timestamp is not a time, one for an index set that does not exist."""
    for i in range(5):
        yield {"_index": "app", "_source": {"message": f"shipped {i} payment", "@timestamp": f"2026-01-01T00:00:0{i}Z"}}
    yield {"_index": "app", "_source": {"message": "bad time", "@timestamp": "yesterday"}}
    yield {"_index": "nowhere", "_source": {"message": "lost"}}


@pytest.mark.parametrize("client_name, compress", [("elasticsearch", False), ("elasticsearch", True), ("opensearch", True)])
def test_the_official_clients_bulk_helpers(stack_factory, redis_url, client_name, compress):
    """Unmodified clients connect (the elasticsearch client checks the product header) and get
    per-item results: 5 created, 1 refused by the parse, 1 for another index; the 5 are searchable
    once the pipeline worker indexed them, the other 2 nowhere. With http_compress the bodies are
    gzip (Content-Encoding: gzip), as Filebeat's are by default."""
    stack, ingest_token, api = _app_stack(stack_factory, redis_url)
    stack.start_worker("pipeline,pipeline_priority")
    if client_name == "elasticsearch":
        from elasticsearch import Elasticsearch, helpers

        client = Elasticsearch(stack.url, api_key=None, bearer_auth=ingest_token, http_compress=compress)
    else:
        from opensearchpy import OpenSearch, helpers

        client = OpenSearch(stack.url, http_auth=("shipper", ingest_token), http_compress=compress)
    assert client.info()["version"]["number"].startswith("8.")
    ok, errors = helpers.bulk(client, _bulk_actions(), raise_on_error=False, stats_only=False)
    assert ok == 5
    assert sorted((next(iter(e.values()))["status"], next(iter(e.values()))["error"]["type"]) for e in errors) == [
        (400, "mapper_parsing_exception"), (403, "security_exception")]  # not the token's own index

    def indexed():
        status, body = stack.get("/api/v1/index_sets/app/search?q=shipped&size=10", api)
        return status == 200 and json.loads(body)["total"] == 5

    stack.wait_for(indexed, "the 5 created lines searchable")
    assert json.loads(stack.get("/api/v1/index_sets/app/search?q=bad", api)[1])["total"] == 0


def _chunked(stack, path: str, token: str, pieces: list[bytes], content_type: str = "text/plain"):
    """POST a body as Transfer-Encoding: chunked (no Content-Length), as streaming clients do."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", stack.port, timeout=30)
    try:
        conn.request("POST", path, body=iter(pieces), encode_chunked=True,
                     headers={"Authorization": f"Bearer {token}", "Content-Type": content_type,
                              "Transfer-Encoding": "chunked"})
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def test_chunked_bodies_are_read_and_limited(stack_factory):
    """Django reads a body without Content-Length as empty; gunicorn de-chunks it and BK LOG reads
    it from the WSGI input, within the same limit (a large chunked body is a 413, not a 400)."""
    stack = stack_factory(None, BKLOG_INGEST_MAX_BYTES="100000")
    ingest_token = stack.bklog("create_index_set", "app")
    api = stack.bklog("create_api_token", "ops")
    stack.start_gunicorn()
    status, body = _chunked(stack, "/api/v1/index_sets/app/ingest", ingest_token, [b"chunk one\nchunk ", b"two\n"])
    assert status == 200 and body["accepted"] == 2, body
    bulk = b'{"index":{"_index":"app"}}\n{"message":"chunked bulk"}\n'
    status, body = _chunked(stack, "/_bulk", ingest_token, [bulk[:10], bulk[10:]], "application/x-ndjson")
    assert status == 200 and body["errors"] is False, body
    status, body = _chunked(stack, "/api/v1/index_sets/app/ingest", ingest_token, [b"x" * 60000 + b"\n"] * 3)
    assert status == 413 and "ingest limit" in body["error"], body
    status, body = stack.get("/api/v1/index_sets/app/search?size=10", api)
    assert sorted(hit["message"] for hit in json.loads(body)["hits"]) == ["chunk one", "chunk two", "chunked bulk"]


def _raw(stack, request: bytes) -> tuple[int, dict]:
    """Send bytes no HTTP library would, and read gunicorn's answer."""
    import socket

    with socket.create_connection(("127.0.0.1", stack.port), timeout=30) as conn:
        conn.sendall(request)
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"content-type: application/json" in head.lower(), answer[:300]
    return int(head.split()[1]), json.loads(body)


@pytest.mark.one_backend  # refused by gunicorn or while the body is read: no line stored
def test_malformed_framing_and_oversize_requests_are_json_4xx(stack_factory):
    """A broken chunk, a request line or header over gunicorn's limits: refused as JSON, as every
    other refusal is (gunicorn's own answers replaced), never a 500 or an HTML page."""
    stack = stack_factory(None)
    ingest_token = stack.bklog("create_index_set", "app")
    stack.start_gunicorn()
    auth = f"Authorization: Bearer {ingest_token}\r\n".encode()
    status, body = _raw(stack, b"POST /api/v1/index_sets/app/ingest HTTP/1.1\r\nHost: x\r\n" + auth
                        + b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\nzz\r\nERROR\r\n0\r\n\r\n")
    assert status == 400 and "could not be read" in body["error"], body
    long_query = b"GET /api/v1/index_sets/app/search?q=" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    status, body = _raw(stack, long_query)
    assert status == 414 and body["param"] is None, body
    status, body = _raw(stack, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 9000 + b"\r\n\r\n")
    assert status == 431, body
    # A query string up to nginx's 8k buffers reaches the service (gunicorn's default stops at 4k).
    api = stack.bklog("create_api_token", "ops")
    status, _ = stack.get("/api/v1/index_sets/app/search?q=" + "a" * 1500 + "&field.x=" + "b" * 5000, api)
    assert status == 200


def test_the_opentelemetry_sdk_exporter_ships_logs(stack_factory):
    """An application's logs through the OpenTelemetry SDK's own OTLP/HTTP exporter (protobuf,
    gzip), configured as an application would: the ingest token in its headers."""
    import logging

    from opentelemetry.exporter.otlp.proto.http import Compression
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
    from opentelemetry.sdk.resources import Resource

    stack = stack_factory(None)
    ingest_token = stack.bklog("create_index_set", "otel")
    api = stack.bklog("create_api_token", "ops")
    stack.start_gunicorn()
    provider = LoggerProvider(resource=Resource.create({"service.name": "checkout"}))
    exporter = OTLPLogExporter(endpoint=f"{stack.url}/v1/logs", headers={"Authorization": f"Bearer {ingest_token}"},
                               compression=Compression.Gzip)
    provider.add_log_record_processor(BatchLogRecordProcessor(exporter))
    logger = logging.getLogger(f"e2e.otel.{uuid.uuid4().hex[:6]}")
    logger.propagate, logger.level = False, logging.INFO
    logger.addHandler(LoggingHandler(level=logging.INFO, logger_provider=provider))
    logger.warning("payment declined", extra={"order_id": 42, "card": "visa"})
    logger.info("payment accepted", extra={"order_id": 43})
    assert provider.force_flush(10000)
    provider.shutdown()
    status, body = stack.get("/api/v1/index_sets/otel/search?q=payment", api)
    hits = {hit["message"]: hit["fields"] for hit in json.loads(body)["hits"]}
    assert set(hits) == {"payment declined", "payment accepted"}
    declined = hits["payment declined"]
    assert declined["service.name"] == "checkout" and declined["order_id"] == 42 and declined["card"] == "visa"
    assert declined["level"] in ("WARN", "WARNING") and hits["payment accepted"]["level"] == "INFO"
