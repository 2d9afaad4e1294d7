"""End to end, the pipeline: lines through gunicorn, Celery workers on a real Redis and the line
store, an export, a batch delivered twice, the broker down."""

from __future__ import annotations

import json

import pytest
from e2e_stack import app_stack, free_port, http

pytestmark = pytest.mark.e2e


def test_async_pipeline_and_export_through_real_workers(stack_factory, redis_url):
    stack, ingest_token, api = app_stack(stack_factory, redis_url)
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
    stack, ingest_token, api = app_stack(stack_factory, redis_url)
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


@pytest.mark.one_backend  # gunicorn's recycling, the same over every store
def test_workers_recycled_after_max_requests_answer_every_request(stack_factory):
    """gunicorn recycles a worker after GUNICORN_MAX_REQUESTS (the guide's 1,000; 5 here): the
    worker leaves without the interpreter's teardown (bklog/gunicorn_config.py worker_exit), so it
    must still have closed what it held. Every request is answered, through many recycles, ingest
    (a database write) included; stopped, gunicorn exits 0 and logged no error."""
    import re

    stack = stack_factory(None, GUNICORN_MAX_REQUESTS="5", GUNICORN_MAX_REQUESTS_JITTER="1")
    ingest_token = stack.bklog("create_index_set", "app")
    api = stack.bklog("create_api_token", "ops")
    stack.start_gunicorn()
    for i in range(20):
        status, body = stack.ingest(ingest_token, f"line {i}".encode())
        assert status == 200, body
        status, body = stack.get("/api/v1/index_sets/app/search?q=line", api)
        assert status == 200 and json.loads(body)["total"] == i + 1, body
    booted = set(re.findall(r"Booting worker with pid: (\d+)", stack.log("gunicorn")))
    assert len(booted) >= 6, stack.log("gunicorn")  # 40 requests and more, 2 workers, 5 or 6 each
    assert stack.stop("gunicorn") == 0
    log = stack.log("gunicorn")
    assert "Traceback" not in log and "[ERROR]" not in log, log
