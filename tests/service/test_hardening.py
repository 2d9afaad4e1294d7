"""Issue 16's classes of defect, one test (or a few) per class: each would have failed before the fix.

Classes: (1) unbounded work from one request, (2) values that reach the database unchecked,
(3) field.NAME read as an ORM lookup path, (4) chunked and compressed bodies (chunked needs a
real server: tests/service/test_e2e_clients.py), (5) line splitting, (6) CSV injection, (7) anonymous
access and existence leaks, (8) refusals that are not JSON, (9) security headers.
"""

from __future__ import annotations

import base64
import gzip
import json
import os
import subprocess
import sys
import zlib
from datetime import datetime, timedelta, timezone

import pytest
from conftest import auth
from stored_lines import StoredLines

from bklog.config import VARIABLES

pytestmark = pytest.mark.django_db


def ndjson(*docs) -> str:
    return "".join(json.dumps(d) + "\n" for d in docs)


def bulk(client, body, token, **headers):
    return client.post("/_bulk", data=body, content_type="application/x-ndjson", **auth(token), **headers)


def assert_json_refusal(response, status, param=None):
    assert response.status_code == status, (response.status_code, response.content[:300])
    assert response["Content-Type"].startswith("application/json"), response["Content-Type"]
    body = response.json()
    assert isinstance(body["error"], (str, dict)) and body["error"]
    if param is not None:
        assert body["param"] == param, body
    return body


# --- 1. unbounded work from one request ----------------------------------------------------

def test_deep_json_is_refused_not_a_recursion_error(make_index_set, ingest, client, admin_token, reader_token):
    _, token = make_index_set("app", parse="json")
    deep = "[" * 100000 + "]" * 100000
    r = client.post("/api/v1/index_sets/app/ingest", data=deep, content_type="application/json", **auth(token))
    assert "nested" in assert_json_refusal(r, 400)["error"]
    line = {"message": "deep", "a": json.loads("[" * 30 + "]" * 30)}
    r = ingest("app", token, [line, {"message": "fine"}])
    body = assert_json_refusal(r, 400)
    assert body["line_errors"] == [{"line": 1, "error": "the line is nested more than 20 levels deep"}]
    r = ingest("app", token, '{"message": "x", "a": ' + "[" * 5000 + "]" * 5000 + "}\n")
    assert "nested" in assert_json_refusal(r, 400)["line_errors"][0]["error"]
    for path, tok in (("/api/v1/index_sets", admin_token), ("/api/v1/index_sets/app/exports", reader_token)):
        r = client.post(path, data='{"q": ' + "[" * 5000 + "]" * 5000 + "}", content_type="application/json", **auth(tok))
        assert "nested" in assert_json_refusal(r, 400)["error"]
    assert StoredLines().count() == 0


def test_deep_bulk_document_is_one_failed_item(client, make_index_set):
    index_set, token = make_index_set("app")
    body = ndjson({"index": {"_index": "app"}}, {"message": "kept"}) + '{"index":{"_index":"app"}}\n' + \
        '{"message": "deep", "a": ' + "[" * 5000 + "]" * 5000 + "}\n"
    r = bulk(client, body, token)
    assert r.status_code == 200
    statuses = [item["index"]["status"] for item in r.json()["items"]]
    assert statuses == [201, 400]
    assert [line.message for line in StoredLines().all(index_set)] == ["kept"]


@pytest.mark.parametrize("q", ["(" * 200 + "a" + ")" * 200, "NOT " * 300 + "a", "-" * 900 + "a"])
def test_deeply_nested_queries_are_refused(make_index_set, search, admin_token, q):
    make_index_set("app")
    body = assert_json_refusal(search("app", admin_token, q=q), 400, param="q")
    assert "levels of parentheses and NOT" in body["error"]


def test_a_backtracking_regex_is_harmless_and_lookaround_is_refused(make_index_set, ingest, client, admin_token):
    # RE2 matches in linear time: with Python's re this line takes longer than the universe.
    index_set, token = make_index_set("app", parse=r"regex:^(?P<word>(a+)+)$")
    r = ingest("app", token, ["a" * 60000 + "b", "aaaa"])
    assert r.status_code == 400 and r.json()["line_errors"] == [{"line": 1, "error": "does not match the index set's regex"}]
    r = client.post("/api/v1/index_sets", data=json.dumps({"name": "look", "parse": r"regex:(?P<a>x)(?=y)"}),
                    content_type="application/json", **auth(admin_token))
    assert "RE2" in assert_json_refusal(r, 400)["error"]


@pytest.fixture
def many_lines(make_index_set, stored):
    index_set, _ = make_index_set("big")
    now = datetime.now(timezone.utc)
    for part in range(4):  # in batches of 5,000: the opensearch store numbers at most 16,384 at once
        stored.add(index_set, [(now - timedelta(seconds=i), f"common word number {i}", {"n": i})
                               for i in range(part * 5000, (part + 1) * 5000)])
    return index_set


@pytest.mark.skipif(os.environ.get("BKLOG_SEARCH_BACKEND") == "opensearch",
                    reason="the database's own statement budget (OpenSearch has its own timeout)")
@pytest.mark.django_db(transaction=True)
def test_a_search_past_its_time_budget_is_a_422_and_frees_the_worker(many_lines, search, admin_token, settings):
    settings.BKLOG_SEARCH_TIMEOUT = 0.0001
    body = assert_json_refusal(search("big", admin_token, q="NOT common"), 422, param="q")
    assert "BKLOG_SEARCH_TIMEOUT" in body["error"]
    settings.BKLOG_SEARCH_TIMEOUT = 10  # the same connection serves the next request normally
    r = search("big", admin_token, q="number", size=1)
    assert r.status_code == 200 and r.json()["total_relation"] == "gte"


@pytest.mark.skipif(not os.environ.get("DATABASE_URL", "").startswith("postgres"), reason="PostgreSQL's statement_timeout")
@pytest.mark.django_db(transaction=True)
def test_a_statement_budget_holds_for_its_own_transaction_only():
    """Behind PgBouncer in transaction mode (scripts/test.sh runs this suite both ways) a server
    connection serves one transaction: a budget set for the session would miss the block's later
    statements and stay on a connection another client gets next. So the block is one transaction
    with the budget set in it (SET LOCAL), gone when it ends, also inside an outer transaction."""
    from django.db import connection, transaction

    from bklog.logs.deadline import database_deadline

    def budget() -> str:
        with connection.cursor() as cursor:
            cursor.execute("SHOW statement_timeout")
            return cursor.fetchone()[0]

    before = budget()
    with database_deadline(2.5):
        assert connection.in_atomic_block
        assert budget() == "2500ms"
        assert budget() == "2500ms"
    assert budget() == before
    with transaction.atomic():
        with database_deadline(1):
            assert budget() == "1s"
        assert budget() == before


@pytest.mark.django_db(transaction=True)
def test_an_inline_export_past_its_budget_fails_saying_why(make_index_set, ingest, client, admin_token, settings):
    _, token = make_index_set("big")
    assert ingest("big", token, "\n".join(f"line {i}" for i in range(100))).status_code == 200
    settings.BKLOG_INLINE_EXPORT_TIMEOUT = 0.0001
    r = client.post("/api/v1/index_sets/big/exports", data="{}", content_type="application/json", **auth(admin_token))
    assert r.status_code == 202
    job = r.json()
    assert job["status"] == "failed" and "BKLOG_INLINE_EXPORT_TIMEOUT" in job["error"]


def test_an_export_whose_process_died_is_failed_not_running_for_ever(make_index_set, client, admin_token):
    from bklog.logs.models import ExportJob
    from bklog.logs.tasks import cleanup_exports

    index_set, _ = make_index_set("app")
    old = datetime.now(timezone.utc) - timedelta(minutes=10)
    lost = ExportJob.objects.create(index_set=index_set, status=ExportJob.RUNNING, worker="gone:1", heartbeat_at=old)
    alive = ExportJob.objects.create(index_set=index_set, status=ExportJob.RUNNING, worker="here:1",
                                     heartbeat_at=datetime.now(timezone.utc))
    r = client.get(f"/api/v1/exports/{lost.id}", **auth(admin_token))
    assert r.json()["status"] == "failed" and "stopped" in r.json()["error"]
    other_lost = ExportJob.objects.create(index_set=index_set, status=ExportJob.RUNNING, heartbeat_at=old)
    cleanup_exports()
    other_lost.refresh_from_db()
    alive.refresh_from_db()
    assert other_lost.status == "failed" and alive.status == "running"


# --- 2. values that reach the database unchecked --------------------------------------------

@pytest.mark.parametrize("params, param", [
    ({"q": "a\x00b"}, "q"),
    ({"start": "9999-12-31T23:00:00-05:00"}, "start"),
    ({"end": "0001-01-01T00:00:00+01:00"}, "end"),
    ({"start": "2026-01-01T00:00:00\x00"}, "start"),
    ({"field.level": "x\x00"}, "field.level"),
    ({"field.a\x00": "x"}, "field.a\x00"),
    ({"cursor": base64.urlsafe_b64encode(b'["0001-01-01T00:00:00", 5]').decode()}, "cursor"),
    ({"cursor": base64.urlsafe_b64encode(b'["2026-01-01T00:00:00+00:00", 99999999999999999999999]').decode()}, "cursor"),
    ({"cursor": base64.urlsafe_b64encode(b'["2026-01-01T00:00:00+00:00", 1.5]').decode()}, "cursor"),
])
def test_unstorable_search_values_are_400_naming_the_parameter(make_index_set, search, admin_token, params, param):
    make_index_set("app")
    assert_json_refusal(search("app", admin_token, **params), 400, param=param)


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", "1e400", "nan", "1_000", "١٢", "9" * 5000])
def test_numbers_in_field_filters_are_json_numbers_or_strings(make_index_set, ingest, search, admin_token, value):
    _, token = make_index_set("app", parse="json")
    assert ingest("app", token, [{"message": "m", "v": value}]).status_code == 200
    r = search("app", admin_token, **{"field.v": value})
    assert r.status_code == 200 and [h["fields"]["v"] for h in r.json()["hits"]] == [value]


@pytest.mark.parametrize("line, why", [
    ('{"message": "x", "v": NaN}', "NaN"),
    ('{"message": "x", "v": Infinity}', "Infinity"),
    ('{"message": "x", "v": 1e400}', "not finite"),
    ('{"message": "x\\ud800"}', "lone surrogate"),
    ('{"message": "x", "\\udfff": 1}', "lone surrogate"),
    ('{"message": "x\\u0000y"}', "NUL"),
    ('{"message": "x", "@timestamp": "9999-12-31T23:59:59-01:00"}', "out of range"),
    ('{"message": "x", "@timestamp": "0001-01-01T00:30:00+01:00"}', "out of range"),
    ('{"message": "x", "@timestamp": 1e300}', "out of range"),
])
def test_unstorable_values_in_lines_are_per_line_errors(make_index_set, client, line, why):
    index_set, token = make_index_set("app", parse="json")
    body = "[" + line + ', {"message": "good"}]'
    r = client.post("/api/v1/index_sets/app/ingest", data=body, content_type="application/json", **auth(token))
    errors = assert_json_refusal(r, 400)["line_errors"]
    assert len(errors) == 1 and errors[0]["line"] == 1 and why in errors[0]["error"], errors
    # The same as newline-delimited JSON lines, and in _bulk: a per-item error, the good stored.
    r = client.post("/api/v1/index_sets/app/ingest", data=line + '\n{"message": "good"}\n', content_type="text/plain",
                    **auth(token))
    assert why in assert_json_refusal(r, 400)["line_errors"][0]["error"]
    r = bulk(client, '{"index":{"_index":"app"}}\n' + line + '\n{"index":{"_index":"app"}}\n{"message":"good"}\n', token)
    assert r.status_code == 200
    assert [item["index"]["status"] for item in r.json()["items"]] == [400, 201]
    assert [line.message for line in StoredLines().all(index_set)] == ["good"]


def test_a_nul_in_a_plain_line_is_a_per_line_error(make_index_set, ingest):
    _, token = make_index_set("app")
    r = ingest("app", token, "fine\nwith \x00 nul\n")
    assert assert_json_refusal(r, 400)["line_errors"] == [{"line": 2, "error": "the line holds a NUL character (\\u0000), which cannot be stored"}]


@pytest.mark.parametrize("body", [
    '{"name": "a\\u0000b"}', '{"name": "x", "parse": "regex:(?P<a>\\ud800)"}', '{"name": "x", "retention_days": NaN}',
    '{"name": "x", "parse": "regex:(?P<a>x)\\u0000"}',
])
def test_index_set_bodies_with_unstorable_values_are_400(client, admin_token, body):
    assert_json_refusal(client.post("/api/v1/index_sets", data=body, content_type="application/json", **auth(admin_token)), 400)


@pytest.mark.parametrize("body, param", [
    ('{"q": "a\\u0000"}', None), ('{"q": "\\ud800"}', None), ('{"fields": {"a": "\\u0000"}}', None),
    ('{"start": "9999-12-31T23:00:00-05:00"}', "start"), ('{"q": 5}', "q"), ('{"fields": {"a": 5}}', "field.a"),
])
def test_export_bodies_with_unstorable_values_are_400(make_index_set, client, admin_token, body, param):
    make_index_set("app")
    r = client.post("/api/v1/index_sets/app/exports", data=body, content_type="application/json", **auth(admin_token))
    assert_json_refusal(r, 400, param=param)


def test_bulk_metadata_that_is_not_a_simple_value_is_refused(client, make_index_set):
    _, token = make_index_set("app")
    for meta in ({"_index": {"a": 1}}, {"_index": "app", "_id": [1]}, {"_index": "a\u0000"}):
        r = bulk(client, ndjson({"index": meta}, {"message": "x"}), token)
        assert r.status_code == 400 and r.json()["error"]["type"] == "illegal_argument_exception"


# --- 3. field.NAME is a field name, never a lookup path -------------------------------------

FIELD_LINES = [
    {"message": "has a", "a": "x"},
    {"message": "has isnull", "isnull": "yes", "a": None},
    {"message": "has 0", "0": "zero", " 1": "one"},
    {"message": "has dotted", "host.name": "web-01", "in": "x"},
    {"message": "numbers", "n": 5, "f": 1.5, "flag": True, "s": "5"},
    {"message": "one", "flag": 1, "n": "5"},
]


@pytest.mark.parametrize("params, expected", [
    ({"field.a": "x"}, ["has a"]),
    ({"field.isnull": "yes"}, ["has isnull"]),
    ({"field.isnull": "true"}, []),
    ({"field.in": "x"}, ["has dotted"]),
    ({"field.regex": ".*"}, []),
    ({"field.contains": "x"}, []),
    ({"field.gt": "0"}, []),
    ({"field.a__isnull": "true"}, []),
    ({"field.0": "zero"}, ["has 0"]),
    ({"field. 1": "one"}, ["has 0"]),
    ({"field.host.name": "web-01"}, ["has dotted"]),
    ({"field.n": "5"}, ["one", "numbers"]),
    ({"field.f": "1.5"}, ["numbers"]),
    ({"field.flag": "true"}, ["numbers"]),
    ({"field.flag": "1"}, ["one"]),
    ({"field.s": "5"}, ["numbers"]),
    ({"field.a": "x", "field.in": "x"}, []),
])
def test_field_filters_mean_only_field_equals_value(make_index_set, ingest, search, admin_token, params, expected):
    _, token = make_index_set("app", parse="json")
    assert ingest("app", token, FIELD_LINES).status_code == 200
    r = search("app", admin_token, **params)
    assert r.status_code == 200, r.json()
    assert [hit["message"] for hit in r.json()["hits"]] == expected


def test_a_number_filter_matches_the_number_in_any_spelling(make_index_set, ingest, search, admin_token):
    # On OpenSearch the string "5" is found too (its terms do not keep JSON types): not asserted.
    _, token = make_index_set("app", parse="json")
    assert ingest("app", token, FIELD_LINES).status_code == 200
    for spelling in ("5.0", "5e0", "5.00"):
        assert "numbers" in [hit["message"] for hit in search("app", admin_token, **{"field.n": spelling}).json()["hits"]]


# --- 4. compressed bodies (chunked ones: test_e2e_clients.py, they need a real server) -------------

def test_gzip_and_deflate_bodies_are_read(make_index_set, client):
    index_set, token = make_index_set("app")
    r = client.post("/api/v1/index_sets/app/ingest", data=gzip.compress(b"zipped one\nzipped two\n"),
                    content_type="text/plain", HTTP_CONTENT_ENCODING="gzip", **auth(token))
    assert r.status_code == 200 and r.json()["accepted"] == 2
    r = bulk(client, zlib.compress(ndjson({"index": {"_index": "app"}}, {"message": "deflated"}).encode()), token,
             HTTP_CONTENT_ENCODING="deflate")
    assert r.status_code == 200 and r.json()["errors"] is False
    assert sorted(line.message for line in StoredLines().all(index_set)) == ["deflated", "zipped one", "zipped two"]


def test_a_gzip_bomb_is_a_413_and_bad_encodings_are_refused(make_index_set, client, settings):
    index_set, token = make_index_set("app")
    settings.BKLOG_INGEST_MAX_BYTES = 100_000
    bomb = gzip.compress(b"a" * 50_000_000)  # 50 MB of 'a' in about 50 KB
    assert len(bomb) < settings.BKLOG_INGEST_MAX_BYTES
    r = client.post("/api/v1/index_sets/app/ingest", data=bomb, content_type="text/plain", HTTP_CONTENT_ENCODING="gzip",
                    **auth(token))
    assert "once decoded" in assert_json_refusal(r, 413)["error"]
    r = bulk(client, bomb, token, HTTP_CONTENT_ENCODING="gzip")
    assert r.status_code == 413 and "once decoded" in r.json()["error"]["reason"]
    r = client.post("/api/v1/index_sets/app/ingest", data=b"not gzip", content_type="text/plain",
                    HTTP_CONTENT_ENCODING="gzip", **auth(token))
    assert_json_refusal(r, 400)
    r = client.post("/api/v1/index_sets/app/ingest", data=gzip.compress(b"x\n")[:-4], content_type="text/plain",
                    HTTP_CONTENT_ENCODING="gzip", **auth(token))
    assert_json_refusal(r, 400)
    r = client.post("/api/v1/index_sets/app/ingest", data=b"x", content_type="text/plain", HTTP_CONTENT_ENCODING="br",
                    **auth(token))
    assert_json_refusal(r, 415)
    assert StoredLines().count() == 0


# --- 5. line splitting ---------------------------------------------------------------------

def test_plain_text_splits_on_newlines_only(make_index_set, ingest):
    index_set, token = make_index_set("app")
    body = "form\x0cfeed\nvertical\x0btab\r\nfile\x1cgroup\x1drecord\x1eunit\nnext\x85line\u2028sep\u2029para\n\n"
    r = ingest("app", token, body)
    assert r.status_code == 200 and r.json()["accepted"] == 4
    assert sorted(line.message for line in StoredLines().all(index_set)) == sorted([
        "form\x0cfeed", "vertical\x0btab", "file\x1cgroup\x1drecord\x1eunit", "next\x85line\u2028sep\u2029para"])


# --- 6. CSV injection ----------------------------------------------------------------------

def test_csv_cells_that_a_spreadsheet_would_run_are_neutralised(make_index_set, ingest, client, admin_token):
    _, token = make_index_set("app", parse="json")
    lines = [{"message": m, "@timestamp": f"2026-01-01T00:00:0{i}Z"}
             for i, m in enumerate(["=1+2", "+cmd", "-2+3", "@SUM(A1)", "\tTAB", "\rCR", "plain"])]
    assert ingest("app", token, lines).status_code == 200
    job = client.post("/api/v1/index_sets/app/exports", data='{"format": "csv"}', content_type="application/json",
                      **auth(admin_token)).json()
    text = b"".join(client.get(job["download_url"], **auth(admin_token)).streaming_content).decode()
    import csv
    import io

    messages = [row[1] for row in list(csv.reader(io.StringIO(text)))[1:]]
    assert messages == ["'=1+2", "'+cmd", "'-2+3", "'@SUM(A1)", "'\tTAB", "'\rCR", "plain"]


# --- 7. anonymous access and existence leaks -----------------------------------------------

def test_without_a_valid_token_nothing_is_told(make_index_set, client):
    make_index_set("app")
    bad = auth("not-a-real-token-at-all")
    for credentials in ({}, bad):
        for method, path in (("get", "/"), ("head", "/"), ("get", "/app"), ("head", "/nope"), ("get", "/_license"),
                             ("put", "/_template/x"), ("put", "/_index_template/x"), ("get", "/_cluster/health")):
            r = getattr(client, method)(path, **credentials)
            assert r.status_code == 401, (method, path, r.status_code)
            if method != "head":
                assert "version" not in r.json() and "acknowledged" not in r.json()
        for name in ("app", "nope"):  # the same answer whether the index set exists or not
            r = client.post(f"/api/v1/index_sets/{name}/ingest", data="x", content_type="text/plain", **credentials)
            assert r.status_code == 401
            r = client.post(f"/{name}/_bulk", data=ndjson({"index": {}}, {"message": "x"}),
                            content_type="application/x-ndjson", **credentials)
            assert r.status_code == 401
            assert client.get(f"/api/v1/index_sets/{name}/search", **credentials).status_code == 401


def test_shippers_still_get_what_they_ask_with_a_token(make_index_set, client):
    _, token = make_index_set("app")
    assert client.get("/_license", **auth(token)).json()["license"]["type"] == "basic"
    assert client.get("/_cluster/health", **auth(token)).json()["status"] == "green"
    r = client.get("/_nodes/http", **auth(token))
    assert r.status_code == 400 and r.json()["error"]["type"] == "illegal_argument_exception"


# --- 8. every refusal is JSON --------------------------------------------------------------

@pytest.mark.parametrize("method, path", [
    ("delete", "/api/v1/index_sets"), ("put", "/api/v1/index_sets/app"), ("get", "/api/v1/index_sets/app/ingest"),
    ("post", "/api/v1/index_sets/app/search"), ("get", "/api/v1/index_sets/app/exports"),
    ("post", "/healthz"), ("delete", "/"), ("delete", "/_bulk"), ("post", "/_license"),
])
def test_wrong_methods_are_json_405s_with_allow(client, method, path):
    r = getattr(client, method)(path)
    assert r.status_code == 405 and r["Content-Type"].startswith("application/json") and r["Allow"]
    assert r.json()["error"]


def test_no_debug_page_even_with_debug_on(client, settings, admin_token, monkeypatch):
    settings.DEBUG = True
    r = client.get("/api/v1/no/such/thing")
    body = assert_json_refusal(r, 404)
    assert "urlpatterns" not in json.dumps(body)

    def boom(*args, **kwargs):
        raise RuntimeError("SECRET internals")

    from bklog.logs import views

    monkeypatch.setattr(views.line_store(), "count", boom)
    client.raise_request_exception = False
    r = client.get("/api/v1/index_sets", **auth(admin_token))
    assert r.status_code == 200
    from bklog.logs.index_sets import create_index_set

    create_index_set("app")
    r = client.get("/api/v1/index_sets/app", **auth(admin_token))
    body = assert_json_refusal(r, 500)
    assert "SECRET" not in r.content.decode() and "Traceback" not in r.content.decode()


def test_a_disallowed_host_is_json(client, settings):
    settings.ALLOWED_HOSTS = ["bklog.example"]
    settings.DEBUG = True
    assert_json_refusal(client.get("/healthz", HTTP_HOST="evil.example"), 400)


def test_what_django_refuses_as_it_parses_a_request_is_a_json_4xx(make_index_set, client, admin_token):
    """More parameters than Django reads (DATA_UPLOAD_MAX_NUMBER_FIELDS), in a query string or a
    form body: Django's SuspiciousOperation, a 400 saying so, not a 500."""
    make_index_set("app")
    many = "&".join(f"a{i}=1" for i in range(1500))
    r = client.get(f"/api/v1/index_sets/app/search?{many}", HTTP_AUTHORIZATION=f"Bearer {admin_token}")
    assert "more than 1000 query or form parameters" in assert_json_refusal(r, 400)["error"]
    r = client.get(f"/api/v1/index_sets/app/histogram?{many}", HTTP_AUTHORIZATION=f"Bearer {admin_token}")
    assert_json_refusal(r, 400)


def test_a_refused_start_in_prod_is_one_line_and_exit_2(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in VARIABLES}
    env.update(BKLOG_ENV="prod", BKLOG_DATA_DIR=str(tmp_path))
    gunicorn = os.path.join(os.path.dirname(sys.executable), "gunicorn")
    proc = subprocess.run([gunicorn, "-c", "python:bklog.gunicorn_config", "bklog.wsgi:application"], env=env,
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "BKLOG_SECRET_KEY" in proc.stderr and "Traceback" not in proc.stderr


# --- 9. security headers -------------------------------------------------------------------

def test_api_answers_carry_no_store_and_a_restrictive_csp(client, settings, make_index_set):
    _, token = make_index_set("app")
    for r in (client.get("/healthz"), client.get("/api/v1/index_sets"), client.get("/", **auth(token))):
        assert r["Cache-Control"] == "no-store"
        assert "default-src 'none'" in r["Content-Security-Policy"]
        assert r["X-Content-Type-Options"] == "nosniff"
    assert "Strict-Transport-Security" not in client.get("/healthz")
    settings.SECURE_HSTS_SECONDS = 31536000
    from django.test import Client

    fresh = Client()  # middleware reads its settings when it is loaded
    assert "Strict-Transport-Security" not in fresh.get("/healthz")  # only over HTTPS
    assert fresh.get("/healthz", secure=True)["Strict-Transport-Security"] == "max-age=31536000"


def test_check_deploy_in_prod_leaves_only_the_documented_warnings(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in VARIABLES}
    env.update(BKLOG_ENV="prod", BKLOG_DATA_DIR=str(tmp_path), BKLOG_SECRET_KEY="k" * 20 + "-Zx9!q" * 10,
               BKLOG_ALLOWED_HOSTS="bklog.example", DATABASE_URL="postgres://u@127.0.0.1:1/db",
               REDIS_URL="redis://127.0.0.1:1/0")
    bklog = os.path.join(os.path.dirname(sys.executable), "bklog")
    proc = subprocess.run([bklog, "check", "--deploy"], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    found = sorted(set(__import__("re").findall(r"\(([a-z_.]+\.W\d+)\)", proc.stderr + proc.stdout)))
    # Justified in docs/security.md: the operator's domain policy (W005, W021).
    assert found == ["security.W005", "security.W021"], proc.stderr


def test_rules_stored_before_re2_still_parse_and_check_names_them(make_index_set, ingest):
    from django.core import checks

    from bklog.logs.models import IndexSet, hash_token

    IndexSet.objects.create(name="old", parse="regex", parse_pattern=r"^(?P<level>\w+)(?= )", ingest_token_hash=hash_token("t" * 30))
    assert ingest("old", "t" * 30, ["INFO started"]).status_code == 200  # Python's re still runs it
    found = checks.run_checks(tags=[checks.Tags.database], databases=["default"])
    assert [m.id for m in found if "'old'" in m.msg] == ["bklog.W001"]


@pytest.mark.django_db(transaction=True)  # as in production: the request's own transaction commits
def test_a_server_lost_at_commit_is_a_503_and_the_batch_not_half_kept(client, ingest, admin_token, make_index_set, stored):
    """The PostgreSQL backend serving an ingest is terminated just before its COMMIT (as a
    demoted or restarted primary's backends are). Directly, psycopg raises AdminShutdown; through
    PgBouncer (the suite's third run) two errors reach it and it raises an InternalError saying
    neither: both are the retryable 503, and the next request is served on a new connection. The
    termination, not the failure, is the test's doing: it runs from the commit hook's place."""
    import psycopg
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("a server backend to lose: PostgreSQL only")
    _, token = make_index_set("app")
    real_commit = connection._commit

    def terminate_then_commit():
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            pid = cursor.fetchone()[0]
        with psycopg.connect(os.environ.get("BKLOG_DATABASE_DIRECT_URL") or os.environ["DATABASE_URL"],
                             autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s, 5000)", [pid])
        return real_commit()

    connection._commit = terminate_then_commit
    client.raise_request_exception = False
    try:
        r = ingest("app", token, ["lost with the server"])
    finally:
        del connection._commit
    assert "database is unavailable" in assert_json_refusal(r, 503)["error"], r.content
    assert r["Retry-After"] == "5"
    assert ingest("app", token, ["kept"]).status_code == 200
    assert [line.message for line in stored.all()] == ["kept"]


def test_import_names_a_record_no_store_takes(make_index_set, tmp_path):
    from django.core.management import CommandError, call_command

    make_index_set("app")
    good = '{"timestamp": "2026-01-01T00:00:00Z", "message": "ok", "fields": {}}\n'
    for bad in ('{"timestamp": "2026-01-01T00:00:00Z", "message": "a\\u0000b"}', '{"timestamp": "2026-01-01T00:00:00Z", "message": "x", "fields": {"v": NaN}}',
                '{"timestamp": "9999-12-31T23:59:59-05:00", "message": "x"}', '["not", "a", "record"]'):
        source = tmp_path / "in.jsonl"
        source.write_text(good + bad + "\n", encoding="utf-8")
        with pytest.raises(CommandError, match=r"in.jsonl:2: not an export record .*1 lines before it were imported"):
            call_command("import_logs", "app", "--input", str(source), "--chunk", "1")


def test_a_database_that_cannot_be_reached_is_a_503_with_retry_after(client, admin_token, monkeypatch, make_index_set):
    from django.db import OperationalError

    from bklog.logs import views

    make_index_set("app")

    def unreachable(*args, **kwargs):
        raise OperationalError('connection to server at "10.0.0.5", port 5432 failed: Connection refused')

    monkeypatch.setattr(views.line_store(), "count", unreachable)
    client.raise_request_exception = False
    r = client.get("/api/v1/index_sets/app", **auth(admin_token))
    assert "database is unavailable" in assert_json_refusal(r, 503)["error"]
    assert r["Retry-After"] == "5"


@pytest.mark.django_db(transaction=True)  # as in production: no test transaction around the request
@pytest.mark.parametrize("database_answers, status", [(False, 503), (True, 500)])
def test_an_unexplained_database_error_is_a_503_only_when_the_database_does_not_answer(
        client, admin_token, monkeypatch, make_index_set, database_answers, status):
    """An error whose code and text say nothing (as a server killed mid-statement can give): the
    middleware asks the database itself. The failing statement and the dead server are test
    doubles: the suite's database stays up (tests/engine/test_failover.py kills real ones)."""
    from django.db import DatabaseError, OperationalError, connection

    from bklog.logs import views

    make_index_set("app")

    def failing(*args, **kwargs):
        raise DatabaseError("something the driver could not name")

    monkeypatch.setattr(views.line_store(), "count", failing)
    if not database_answers:
        def refused(*args, **kwargs):
            raise OperationalError("no server answers")

        monkeypatch.setattr(connection, "ensure_connection", refused)
    client.raise_request_exception = False
    r = client.get("/api/v1/index_sets/app", **auth(admin_token))
    body = assert_json_refusal(r, status)
    assert ("database is unavailable" in body["error"]) == (status == 503), body
