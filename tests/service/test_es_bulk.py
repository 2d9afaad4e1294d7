"""The Elasticsearch-compatible bulk endpoint and the calls shippers make before it (the embedded
default: inline pipeline, so what is reported created is searchable at once). The per-item shapes
are the ones OpenSearch 2.19 answered for the same batches (recorded on this machine);
tests/engine sends the same batches to a running OpenSearch and compares."""

from __future__ import annotations

import base64
import json

import pytest

from stored_lines import StoredLines


def ndjson(*docs) -> str:
    return "".join(json.dumps(d) + "\n" for d in docs)


def bulk(client, body: str, token: str | None, path: str = "/_bulk", basic: bool = False):
    headers = {}
    if token and basic:
        headers["HTTP_AUTHORIZATION"] = "Basic " + base64.b64encode(f"rsyslog:{token}".encode()).decode()
    elif token:
        headers["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    return client.post(path, data=body, content_type="application/x-ndjson", **headers)


@pytest.fixture
def app(make_index_set):
    return make_index_set("app")


def test_root_answers_like_an_elasticsearch_8(client, app, reader_token):
    _, token = app
    for credential in (token, reader_token):
        r = client.get("/", HTTP_AUTHORIZATION=f"Bearer {credential}")
        assert r.status_code == 200 and r["X-Elastic-Product"] == "Elasticsearch"
        assert r.json()["version"]["number"].startswith("8.")
        assert client.head("/", HTTP_AUTHORIZATION=f"Bearer {credential}").status_code == 200


def test_a_valid_batch_is_created_and_searchable(client, app):
    index_set, token = app
    body = ndjson({"index": {"_index": "app"}}, {"message": "disk full", "@timestamp": "2026-01-01T00:00:00Z", "host": "vm1"},
                  {"create": {"_index": "app", "_id": "x1"}}, {"message": "disk ok"})
    r = bulk(client, body, token)
    assert r.status_code == 200 and r["X-Elastic-Product"] == "Elasticsearch"
    answer = r.json()
    assert answer["errors"] is False
    assert [list(item) for item in answer["items"]] == [["index"], ["create"]]
    first, second = answer["items"][0]["index"], answer["items"][1]["create"]
    assert first["status"] == 201 and first["result"] == "created" and first["_index"] == "app" and first["_id"]
    assert second["_id"] == "x1" and second["status"] == 201
    lines = sorted(StoredLines().all(index_set), key=lambda line: line.message)
    assert [(l.message, l.fields) for l in lines] == [("disk full", {"host": "vm1"}), ("disk ok", {})]


def test_the_index_in_the_url_and_basic_auth(client, app):
    _, token = app
    r = bulk(client, ndjson({"index": {}}, {"msg": "from the url"}), token, path="/app/_bulk", basic=True)
    assert r.json()["errors"] is False
    assert len(StoredLines().matching(message="from the url")) == 1


def test_a_mixed_batch_reports_each_item_and_stores_only_the_good(client, app, make_index_set):
    _, token = app
    make_index_set("other")
    body = ndjson({"index": {"_index": "app"}}, {"message": "good one"},
                  {"delete": {"_index": "app", "_id": "zz"}},
                  {"index": {"_index": "missing"}}, {"message": "nowhere"},
                  {"index": {"_index": "other"}}, {"message": "not this token's"},
                  {"index": {"_index": "app"}}, {"message": "good two", "@timestamp": "not a time"},
                  {"index": {"_index": "app"}}, {"message": "good three"}) + '{"index":{"_index":"app"}}\n{"message":"cut\n'
    answer = bulk(client, body, token).json()
    assert answer["errors"] is True
    statuses = [next(iter(item.values()))["status"] for item in answer["items"]]
    # An ingest token writes to its own index set only; another index is a 403 whether it exists
    # ("other") or not ("missing"): a token cannot find out which index sets there are.
    assert statuses == [201, 400, 403, 403, 400, 201, 400]
    kinds = [next(iter(item.values())).get("error", {}).get("type") for item in answer["items"]]
    assert kinds == [None, "illegal_argument_exception", "security_exception", "security_exception",
                     "mapper_parsing_exception", None, "mapper_parsing_exception"]
    assert sorted(line.message for line in StoredLines().all()) == ["good one", "good three"]


@pytest.mark.parametrize("body, status, kind", [
    ("", 400, "parse_exception"),
    ('{"index":{"_index":"app"}}\n{"message":"a"}', 400, "illegal_argument_exception"),  # no final newline
    ('{"upsert":{"_index":"app"}}\n{"message":"a"}\n', 400, "illegal_argument_exception"),
    ('{"index":{}}\n{"message":"a"}\n', 400, "action_request_validation_exception"),
    ('not json\n{"message":"a"}\n', 400, "x_content_parse_exception"),
])
def test_a_malformed_request_is_refused_whole(client, app, body, status, kind):
    _, token = app
    r = bulk(client, body, token)
    assert r.status_code == status and r.json()["error"]["type"] == kind and r.json()["status"] == status
    assert StoredLines().count() == 0


def test_no_credentials(client, app):
    r = bulk(client, ndjson({"index": {"_index": "app"}}, {"message": "a"}), None)
    assert r.status_code == 401 and r.json()["error"]["type"] == "security_exception"
    assert r["WWW-Authenticate"].startswith("Basic")


def test_index_and_template_probes(client, app, reader_token):
    _, token = app
    assert client.head("/app", HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 200
    assert client.get("/app", HTTP_AUTHORIZATION=f"Bearer {reader_token}").status_code == 200
    assert client.head("/nope", HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 403  # not its own
    assert client.head("/nope", HTTP_AUTHORIZATION=f"Bearer {reader_token}").status_code == 404
    auth = {"HTTP_AUTHORIZATION": f"Bearer {token}"}
    assert client.get("/_template/bklog", **auth).status_code == 404
    assert client.put("/_index_template/bklog", data="{}", content_type="application/json", **auth).json() == {"acknowledged": True}


def test_the_items_limit(client, app, settings):
    _, token = app
    settings.BKLOG_INGEST_MAX_LINES = 2
    r = bulk(client, ndjson(*[d for i in range(3) for d in ({"index": {"_index": "app"}}, {"message": str(i)})]), token)
    assert r.status_code == 413
    assert StoredLines().count() == 0


def test_the_body_limit_refuses_whole(client, app, settings):
    _, token = app
    settings.BKLOG_INGEST_MAX_BYTES = 200
    r = bulk(client, ndjson(*[d for i in range(5) for d in ({"index": {"_index": "app"}}, {"message": "x" * 30})]), token)
    assert r.status_code == 413 and r.json()["error"]["type"] == "illegal_argument_exception"
    assert "200 bytes" in r.json()["error"]["reason"]
    assert StoredLines().count() == 0


def test_shippers_documents_map_to_message_time_and_dotted_fields(client, app, admin_token):
    """Filebeat (message beside a `log` object, nested host/agent), syslog-ng's default template
    (MESSAGE), zap (ts in epoch seconds): the message, the time and every other field, nested
    objects as dotted names (Elasticsearch's addressing), so field.host.name filters them."""
    index_set, token = app
    filebeat = {"@timestamp": "2026-03-01T10:00:00.000Z", "message": "GET /index.html 200",
                "log": {"offset": 1234, "file": {"path": "/var/log/nginx/access.log"}},
                "host": {"name": "web-01", "os": {"family": "debian"}}, "agent": {"type": "filebeat"},
                "tags": ["nginx", "prod"]}
    syslog_ng = {"MESSAGE": "session opened for user root", "PROGRAM": "sshd", "HOST": "web-02",
                 "ISODATE": "2026-03-01T10:00:01+00:00"}
    zap = {"ts": 1772359202.5, "msg": "request served", "level": "info"}
    docker = {"log": "container line\n", "stream": "stdout", "time": "2026-03-01T10:00:03Z"}
    body = ndjson(*[d for doc in (filebeat, syslog_ng, zap, docker) for d in ({"index": {"_index": "app"}}, doc)])
    assert bulk(client, body, token).json()["errors"] is False
    lines = {line.message: line for line in StoredLines().all(index_set)}
    assert set(lines) == {"GET /index.html 200", "session opened for user root", "request served", "container line\n"}
    fb = lines["GET /index.html 200"]
    assert fb.fields == {"log.offset": 1234, "log.file.path": "/var/log/nginx/access.log", "host.name": "web-01",
                         "host.os.family": "debian", "agent.type": "filebeat", "tags": ["nginx", "prod"]}
    assert fb.timestamp.isoformat() == "2026-03-01T10:00:00+00:00"
    assert lines["session opened for user root"].fields["PROGRAM"] == "sshd"
    assert lines["request served"].timestamp.isoformat() == "2026-03-01T10:00:02.500000+00:00"
    assert lines["container line\n"].fields == {"stream": "stdout"}
    r = client.get("/api/v1/index_sets/app/search", {"field.host.name": "web-01"}, HTTP_AUTHORIZATION=f"Bearer {admin_token}")
    assert [hit["message"] for hit in r.json()["hits"]] == ["GET /index.html 200"]


def test_an_index_sets_own_message_field_comes_first(client, admin_token):
    """Created through the API with message_field (a nested one here, as ECS's event.original):
    that field is the message, the usual keys stay fields; a document without it falls back to them."""
    r = client.post("/api/v1/index_sets", data=json.dumps({"name": "ecs", "parse": "json", "message_field": "event.original"}),
                    content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {admin_token}")
    assert r.status_code == 201 and r.json()["message_field"] == "event.original", r.content
    token = r.json()["ingest_token"]
    body = ndjson({"index": {}}, {"event": {"original": "raw line", "kind": "event"}, "message": "summary"},
                  {"index": {}}, {"message": "no event here"})
    assert bulk(client, body, token, path="/ecs/_bulk").json()["errors"] is False
    r = client.post("/api/v1/index_sets/ecs/ingest", data=json.dumps([{"event": {"original": "via ingest"}}]),
                    content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert r.status_code in (200, 202), r.content
    from bklog.logs.models import IndexSet

    lines = {line.message: line.fields for line in StoredLines().all(IndexSet.objects.get(name="ecs"))}
    assert lines == {"raw line": {"event.kind": "event", "message": "summary"}, "no event here": {}, "via ingest": {}}


@pytest.mark.parametrize("value", [12, "two words", "a..b", ".a", "x" * 201, "a/b", ["message"]])
def test_a_bad_message_field_is_a_400_naming_it(client, admin_token, value):
    r = client.post("/api/v1/index_sets", data=json.dumps({"name": "bad", "message_field": value}),
                    content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {admin_token}")
    assert r.status_code == 400 and "message_field" in r.json()["error"], r.content


def test_a_shippers_default_index_name_goes_to_the_tokens_index_set(client, app, make_index_set):
    """Filebeat writes to filebeat-7.17.29-<date>, Logstash to logstash-<date>: names no index set
    can have (dots), so they mean the token's own index set; another index set's name is a 403."""
    index_set, token = app
    make_index_set("other")
    body = ndjson({"index": {"_index": "filebeat-7.17.29-2026.12.02"}}, {"message": "from filebeat"},
                  {"create": {}}, {"message": "from logstash"},
                  {"index": {"_index": "other"}}, {"message": "not this token's"})
    r = bulk(client, body, token, path="/logstash-2026.12.02/_bulk")
    items = [next(iter(item.values())) for item in r.json()["items"]]
    assert [(i["status"], i["_index"]) for i in items] == [(201, "app"), (201, "app"), (403, "other")]
    assert sorted(line.message for line in StoredLines().all(index_set)) == ["from filebeat", "from logstash"]


# --- `_id`: unique per index set, as in the engines ---------------------------------------------

def _items(answer: dict) -> list[tuple]:
    return [(action, item["status"], item.get("result") or item["error"]["type"], item.get("_version"))
            for entry in answer["items"] for action, item in entry.items()]


def test_create_of_a_taken_id_is_a_409_item_and_stores_nothing(client, app):
    index_set, token = app
    first = bulk(client, ndjson({"create": {"_id": "a"}}, {"message": "first a"}), token, path="/app/_bulk").json()
    again = bulk(client, ndjson({"create": {"_id": "a"}}, {"message": "second a"},
                                {"create": {"_id": "b"}}, {"message": "first b"}), token, path="/app/_bulk").json()
    assert _items(first) == [("create", 201, "created", 1)]
    assert _items(again) == [("create", 409, "version_conflict_engine_exception", None), ("create", 201, "created", 1)]
    assert again["errors"] is True
    conflict = again["items"][0]["create"]
    assert conflict["_id"] == "a" and conflict["error"]["reason"] == \
        "[a]: version conflict, document already exists (current version [1])"
    assert sorted(line.message for line in StoredLines().all(index_set)) == ["first a", "first b"]


def test_index_of_a_taken_id_replaces_its_line(client, app, admin_token):
    index_set, token = app
    first = bulk(client, ndjson({"index": {"_id": "a"}}, {"message": "alpha version one", "n": 1}), token, path="/app/_bulk").json()
    second = bulk(client, ndjson({"index": {"_id": "a"}}, {"message": "alpha version two", "n": 2}), token, path="/app/_bulk").json()
    assert _items(first) == [("index", 201, "created", 1)]
    assert _items(second) == [("index", 200, "updated", 2)]
    assert [(line.message, line.fields) for line in StoredLines().all(index_set)] == [("alpha version two", {"n": 2})]
    # The full-text index forgot the line replaced.
    found = lambda q: [hit["message"] for hit in client.get(  # noqa: E731
        "/api/v1/index_sets/app/search", {"q": q}, HTTP_AUTHORIZATION=f"Bearer {admin_token}").json()["hits"]]
    assert found("one") == [] and found("alpha") == ["alpha version two"]
    # ... and a create of it after the index still conflicts, naming the current version
    third = bulk(client, ndjson({"create": {"_id": "a"}}, {"message": "a v3"}), token, path="/app/_bulk").json()
    assert _items(third) == [("create", 409, "version_conflict_engine_exception", None)]
    assert "current version [2]" in third["items"][0]["create"]["error"]["reason"]


def test_ids_repeated_inside_one_request_behave_as_in_sequence(client, app):
    """The engines apply a request's items in order: index, index again (updated), create (409)."""
    index_set, token = app
    answer = bulk(client, ndjson({"index": {"_id": "x"}}, {"message": "x1"}, {"index": {"_id": "x"}}, {"message": "x2"},
                                 {"create": {"_id": "x"}}, {"message": "x3"}, {"create": {"_id": "y"}}, {"message": "y1"},
                                 {"create": {"_id": "y"}}, {"message": "y2"}), token, path="/app/_bulk").json()
    assert _items(answer) == [("index", 201, "created", 1), ("index", 200, "updated", 2),
                              ("create", 409, "version_conflict_engine_exception", None), ("create", 201, "created", 1),
                              ("create", 409, "version_conflict_engine_exception", None)]
    assert sorted(line.message for line in StoredLines().all(index_set)) == ["x2", "y1"]


def test_a_retried_batch_with_ids_never_duplicates(client, app):
    """A shipper resending a batch whose answer it lost (ids set to make that safe)."""
    index_set, token = app
    batch = ndjson(*[doc for i in range(20) for doc in ({"create": {"_id": f"r{i}"}}, {"message": f"line {i}"})])
    for _ in range(3):
        bulk(client, batch, token, path="/app/_bulk")
    assert StoredLines().count(index_set) == 20


def test_ids_are_per_index_set_and_lines_without_ids_are_unaffected(client, app, make_index_set):
    index_set, token = app
    other, other_token = make_index_set("other")
    for tok, path in ((token, "/app/_bulk"), (other_token, "/other/_bulk")):
        answer = bulk(client, ndjson({"create": {"_id": "same"}}, {"message": "m"}, {"index": {}}, {"message": "no id"},
                                     {"index": {}}, {"message": "no id"}), tok, path=path).json()
        assert _items(answer)[0] == ("create", 201, "created", 1)
    assert StoredLines().count(index_set) == 3 and StoredLines().count(other) == 3


@pytest.mark.parametrize("doc_id, reason", [
    ("", "if _id is specified it must not be empty"),
    ("é" * 257, "is too long, must be no longer than 512 bytes but was: 514"),
])
def test_bad_ids_are_400_items(client, app, doc_id, reason):
    index_set, token = app
    answer = bulk(client, ndjson({"index": {"_id": doc_id}}, {"message": "bad id"}, {"index": {"_id": "ok"}}, {"message": "ok"}),
                  token, path="/app/_bulk").json()
    bad = answer["items"][0]["index"]
    assert bad["status"] == 400 and reason in bad["error"]["reason"], bad
    assert [line.message for line in StoredLines().all(index_set)] == ["ok"]


def test_retention_frees_an_id_with_its_line(client, app):
    from datetime import timedelta

    from django.utils import timezone

    from bklog.logs.tasks import apply_retention

    index_set, token = app
    old = (timezone.now() - timedelta(days=index_set.retention_days + 1)).isoformat()
    bulk(client, ndjson({"create": {"_id": "old"}}, {"message": "old", "@timestamp": old}), token, path="/app/_bulk")
    apply_retention()
    answer = bulk(client, ndjson({"create": {"_id": "old"}}, {"message": "new"}), token, path="/app/_bulk").json()
    assert _items(answer) == [("create", 201, "created", 1)]
    assert [line.message for line in StoredLines().all(index_set)] == ["new"]


def test_the_pipeline_stores_only_an_ids_current_version_whatever_order_it_indexes(settings, monkeypatch, app):
    """Two batches replacing the same id, indexed newest first (a worker's task redelivered late):
    the older line is never stored over the newer, nor beside it."""
    from bklog.logs import ingest

    index_set, _ = app
    settings.BKLOG_PIPELINE_ASYNC = True
    monkeypatch.setattr(ingest.celery, "send_task", lambda *args, **kwargs: None)
    older = ingest.accept(index_set, [{"message": "v1"}, {"message": "kept"}], doc_ops=[("index", "k"), ("index", None)])
    newer = ingest.accept(index_set, [{"message": "v2"}], doc_ops=[("index", "k")])
    assert [i["result"] for i in older["items"]] == ["created", "created"] and newer["items"][0]["result"] == "updated"
    assert ingest.index_pending_batch(newer["batch"]) == "indexed"
    assert ingest.index_pending_batch(older["batch"]) == "indexed"
    assert sorted(line.message for line in StoredLines().all(index_set)) == ["kept", "v2"]


@pytest.mark.django_db(transaction=True)  # the refusal closes the connection, as in production
@pytest.mark.parametrize("where", ["token lookup", "storing"])
def test_a_database_away_refuses_the_whole_request_and_each_item_retryably(client, app, monkeypatch, where):
    """Wherever the database fails (looking the token up, or storing the batch): a 503 with
    Retry-After in Elasticsearch's shape, and every item refused with it, for rsyslog's
    omelasticsearch, which reads the items and never the status (roles/log_agent retries them).
    The failing statement is a test double: the suite's database stays up
    (molecule/ha/tests/test_7_failover.py loses a real one under rsyslog)."""
    from django.db import OperationalError

    from bklog.logs import auth, ingest

    index_set, token = app

    def unreachable(*args, **kwargs):
        raise OperationalError('connection to server at "10.0.0.5", port 5432 failed: Connection refused')

    monkeypatch.setattr(auth if where == "token lookup" else ingest, "ingest_index_set" if where == "token lookup" else "accept", unreachable)
    client.raise_request_exception = False
    body = ndjson({"index": {}}, {"message": "one"}, {"create": {"_id": "x2"}}, {"message": "two"})
    r = bulk(client, body, token, path="/app/_bulk")
    assert r.status_code == 503 and r["Retry-After"] == "5" and r["X-Elastic-Product"] == "Elasticsearch", r.content
    answer = r.json()
    assert answer["status"] == 503 and "database is unavailable" in answer["error"]["reason"]
    assert answer["errors"] is True
    assert [(action, item["status"], item["_index"]) for entry in answer["items"] for action, item in entry.items()] == [
        ("index", 503, "app"), ("create", 503, "app")]
    assert {entry[next(iter(entry))]["error"]["type"] for entry in answer["items"]} == {"unavailable_shards_exception"}
    assert StoredLines().count(index_set) == 0


@pytest.mark.django_db(transaction=True)
def test_a_refusal_of_a_malformed_request_stays_without_items(client, app, monkeypatch):
    """Nothing to count: the database's 503 as it is, in the engine's shape."""
    from django.db import OperationalError

    from bklog.logs import auth

    _, token = app
    monkeypatch.setattr(auth, "ingest_index_set", lambda *a: (_ for _ in ()).throw(OperationalError("connection refused")))
    client.raise_request_exception = False
    r = bulk(client, "not json\n", token)
    assert r.status_code == 503 and r["Retry-After"] == "5" and "items" not in r.json(), r.content
    assert r.json()["error"]["type"] == "unavailable_shards_exception" and r["X-Elastic-Product"] == "Elasticsearch"
