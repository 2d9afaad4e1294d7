"""The bulk endpoint against a real OpenSearch 2.19 (tests/opensearch.py): the same batches get
the same answer shape, the same per-item statuses and error types, and the same `errors` flag.
Where BK LOG differs on purpose it is said below and not compared: an index set is never created by
a shipper (OpenSearch creates a missing index) and lines are append-only (no delete/update).
`_id`s are kept as the engine keeps them: the same results and versions, request after request."""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import uuid
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "service"))
import opensearch  # noqa: E402
from servers import free_port  # noqa: E402

BATCHES = {
    "valid": [({"index": {"_index": "app"}}, {"message": "a", "@timestamp": "2026-01-01T00:00:00Z"}),
              ({"create": {"_index": "app"}}, {"message": "b", "@timestamp": "2026-01-01T00:00:01Z", "host": "vm1"}),
              ({"index": {}}, {"message": "c"}),
              ({"index": {"_index": "app"}}, {})],
    "malformed": [({"index": {"_index": "app"}}, "{\"message\": \"cut"),
                  ({"index": {"_index": "app"}}, [1, 2]),
                  ({"index": {"_index": "app"}}, "just a string")],
    "mixed": [({"index": {"_index": "app"}}, {"message": "good", "@timestamp": "2026-01-01T00:00:02Z"}),
              ({"index": {"_index": "app"}}, "{not json"),
              ({"index": {"_index": "app"}}, {"message": "bad time", "@timestamp": "yesterday"}),
              ({"create": {"_index": "app"}}, {"message": "good too"})],
}
REQUEST_ERRORS = {
    "empty body": b"",
    "no final newline": b'{"index":{"_index":"app"}}\n{"message":"a"}',
    "unknown action": b'{"upsert":{"_index":"app"}}\n{"message":"a"}\n',
    "no index": b'{"index":{}}\n{"message":"a"}\n',
}


def body_of(batch) -> bytes:
    out = []
    for action, source in batch:
        out.append(json.dumps(action))
        out.append(source if isinstance(source, str) and source.startswith("{") else json.dumps(source))
    return ("\n".join(out) + "\n").encode()


def post(url: str, body: bytes, token: str | None = None) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "application/x-ndjson"})
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def shape(answer: dict) -> dict:
    """What a shipper acts on: the errors flag, and per item its action, status and error type."""
    if "items" not in answer:
        return {"error": answer["error"]["type"], "status": answer["status"]}
    return {"errors": answer["errors"], "items": [
        (action, result["status"], result.get("error", {}).get("type"), "_id" in result and "_index" in result)
        for item in answer["items"] for action, result in item.items()]}


@pytest.fixture(scope="module")
def engine():
    # Not under pytest's tmp folder: it is root's alone, and OpenSearch runs as another user.
    work = Path(tempfile.mkdtemp(prefix="bklog-opensearch-"))
    work.chmod(0o755)
    url = opensearch.start(work, free_port())
    # The index exists beforehand, as an index set does for BK LOG, with the date mapping BK LOG has.
    req = urllib.request.Request(f"{url}/app", method="PUT", headers={"Content-Type": "application/json"},
                                 data=json.dumps({"mappings": {"properties": {"@timestamp": {"type": "date"},
                                                                              "message": {"type": "text"}}}}).encode())
    urllib.request.urlopen(req, timeout=30).read()
    yield url
    opensearch.stop(work)
    shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(scope="module")
def bklog(tmp_path_factory):
    from e2e_stack import Stack

    stack = Stack(tmp_path_factory.mktemp("bklog"), None)
    token = stack.bklog("create_index_set", "app", "--parse", "json")
    stack.start_gunicorn()
    yield stack.url, token
    stack.close()


@pytest.mark.parametrize("name", sorted(BATCHES))
def test_same_per_item_results(engine, bklog, name):
    body = body_of(BATCHES[name])
    engine_status, engine_answer = post(f"{engine}/app/_bulk", body)
    status, answer = post(f"{bklog[0]}/app/_bulk", body, bklog[1])
    assert (status, shape(answer)) == (engine_status, shape(engine_answer))


@pytest.mark.parametrize("name", sorted(REQUEST_ERRORS))
def test_same_request_errors(engine, bklog, name):
    url_index = "" if name == "no index" else "/app"
    engine_status, engine_answer = post(f"{engine}{url_index}/_bulk" if url_index else f"{engine}/_bulk", REQUEST_ERRORS[name])
    status, answer = post(f"{bklog[0]}/_bulk" if not url_index else f"{bklog[0]}/app/_bulk", REQUEST_ERRORS[name], bklog[1])
    assert (status, shape(answer)) == (engine_status, shape(engine_answer))


def id_shape(answer: dict) -> dict:
    """shape(), plus what an id's item says: its result and version."""
    if "items" not in answer:
        return shape(answer)
    return {"errors": answer["errors"], "items": [
        (action, result["status"], result.get("error", {}).get("type"), result.get("result"), result.get("_version"))
        for item in answer["items"] for action, result in item.items()]}


def test_same_document_id_results_request_after_request(engine, bklog):
    """A shipper resending a batch, and ids reused inside one: conflicts, replacements and
    versions as the engine answers them."""
    run = uuid.uuid4().hex[:8]  # ids of this test only: both sides keep them across tests
    a, b, c = f"{run}-a", f"{run}-b", f"{run}-c"
    requests = [
        [({"create": {"_index": "app", "_id": a}}, {"message": "first a"}),
         ({"index": {"_index": "app", "_id": b}}, {"message": "first b"}),
         ({"create": {"_index": "app", "_id": a}}, {"message": "a again in the same request"}),
         ({"index": {"_index": "app", "_id": b}}, {"message": "b again in the same request"}),
         ({"index": {"_index": "app"}}, {"message": "no id"})],
        # The same batch resent (a shipper whose request timed out).
        [({"create": {"_index": "app", "_id": a}}, {"message": "first a"}),
         ({"index": {"_index": "app", "_id": b}}, {"message": "first b"})],
        [({"index": {"_index": "app", "_id": a}}, {"message": "a replaced"}),
         ({"create": {"_index": "app", "_id": c}}, {"message": "c"}),
         ({"index": {"_index": "app", "_id": c}}, {"message": "c replaced"}),
         ({"create": {"_index": "app", "_id": c}}, {"message": "c conflicts"})],
    ]
    for number, batch in enumerate(requests):
        body = body_of(batch)
        engine_status, engine_answer = post(f"{engine}/app/_bulk", body)
        status, answer = post(f"{bklog[0]}/app/_bulk", body, bklog[1])
        assert (status, id_shape(answer)) == (engine_status, id_shape(engine_answer)), number


def test_same_answer_to_an_empty_id(engine, bklog):
    body = body_of([({"index": {"_index": "app", "_id": ""}}, {"message": "refused id"}),
                    ({"index": {"_index": "app"}}, {"message": "fine"})])
    engine_status, engine_answer = post(f"{engine}/app/_bulk", body)
    status, answer = post(f"{bklog[0]}/app/_bulk", body, bklog[1])
    assert (status, shape(answer)) == (engine_status, shape(engine_answer))


def test_an_id_too_long_fails_its_item_only_where_the_engine_fails_the_request(engine, bklog):
    """Different on purpose: the engine answers 400 to the whole request, which a shipper retries
    or drops whole; here that item is a 400 with the engine's message and the good line is kept."""
    body = body_of([({"index": {"_index": "app", "_id": "x" * 513}}, {"message": "refused id"}),
                    ({"index": {"_index": "app"}}, {"message": "fine"})])
    engine_status, engine_answer = post(f"{engine}/app/_bulk", body)
    status, answer = post(f"{bklog[0]}/app/_bulk", body, bklog[1])
    assert (engine_status, engine_answer["error"]["type"]) == (400, "action_request_validation_exception")
    assert shape(answer) == {"errors": True, "items": [("index", 400, "action_request_validation_exception", True),
                                                       ("index", 201, None, True)]}
    # The engine's reason quotes the whole id; ours its first 100 characters (an answer of bounded size).
    tail = engine_answer["error"]["reason"].split("]", 1)[1]
    assert answer["items"][0]["index"]["error"]["reason"].endswith(tail)
