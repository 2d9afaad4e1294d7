"""End to end, what shippers and clients send: the official elasticsearch and opensearch clients'
bulk helpers, chunked bodies, framing no library would send, the OpenTelemetry SDK's exporter."""

from __future__ import annotations

import json
import uuid

import pytest
from e2e_stack import app_stack

pytestmark = pytest.mark.e2e


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
    stack, ingest_token, api = app_stack(stack_factory, redis_url)
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
