"""Ingest: every accepted shape, every refusal, and nothing half-written."""


import pytest

from bklog.logs.models import IngestBatch

pytestmark = pytest.mark.django_db


def test_newline_text_and_json_arrays(make_index_set, ingest, stored):
    _, token = make_index_set("app")
    r = ingest("app", token, "first line\n\nsecond line\n")
    assert r.status_code == 200 and r.json()["accepted"] == 2
    r = ingest("app", token, ["third", {"message": "fourth", "level": "info", "@timestamp": "2026-01-02T03:04:05Z"}])
    assert r.status_code == 200 and r.json()["accepted"] == 2
    fourth = stored.one(message="fourth")
    assert fourth.fields == {"level": "info"} and fourth.timestamp.isoformat() == "2026-01-02T03:04:05+00:00"
    assert stored.count() == 4


def test_json_parse_rule(make_index_set, ingest, stored):
    _, token = make_index_set("svc", parse="json")
    r = ingest("svc", token, '{"msg": "hello", "status": 500, "time": 1700000000}\n{"event": "login"}\n')
    assert r.status_code == 200, r.json()
    line = stored.one(message="hello")
    assert line.fields == {"status": 500} and line.timestamp.year == 2023
    assert stored.matching(message='{"event": "login"}')


def test_regex_parse_rule_named_groups_become_fields(make_index_set, ingest, stored):
    _, token = make_index_set("nginx", parse=r"regex:^(?P<timestamp>\S+) (?P<level>[A-Z]+) (?P<message>.*)$")
    r = ingest("nginx", token, "2026-03-01T10:00:00+08:00 ERROR upstream timed out\n")
    assert r.status_code == 200
    line = stored.one()
    assert line.message == "upstream timed out" and line.fields == {"level": "ERROR"}
    assert line.timestamp.isoformat() == "2026-03-01T02:00:00+00:00"


def test_unparseable_lines_reject_the_whole_batch_with_per_line_errors(make_index_set, ingest, stored):
    _, token = make_index_set("svc", parse="json")
    r = ingest("svc", token, '{"msg": "ok"}\nnot json\n[1, 2]\n{"msg": "x", "time": "yesterday"}\n')
    assert r.status_code == 400
    body = r.json()
    assert "3 of 4 lines failed the parse rule 'json'" in body["error"]
    assert [e["line"] for e in body["line_errors"]] == [2, 3, 4]
    assert "not valid JSON" in body["line_errors"][0]["error"]
    assert "must be an object" in body["line_errors"][1]["error"]
    assert "'yesterday' is not ISO 8601" in body["line_errors"][2]["error"]
    assert stored.count() == 0 and IngestBatch.objects.count() == 0


def test_regex_mismatch_and_wrong_types(make_index_set, ingest, stored):
    _, token = make_index_set("re", parse=r"regex:^(?P<level>[A-Z]+) ")
    r = ingest("re", token, ["INFO fine", "lowercase bad", 42, ""])
    assert r.status_code == 400
    errors = {e["line"]: e["error"] for e in r.json()["line_errors"]}
    assert errors == {2: "does not match the index set's regex",
                      3: "a line must be a string or an object, not int", 4: "empty line"}
    assert stored.count() == 0


@pytest.mark.parametrize("body, content_type, status, message", [
    ("[1, 2", "application/json", 400, "body is not valid JSON"),
    ('{"a": 1}', "application/json", 400, "JSON body must be an array"),
    ("[]", "application/json", 400, "batch is empty"),
    ("\n\n", "text/plain", 400, "batch is empty"),
])
def test_malformed_bodies(make_index_set, client, body, content_type, status, message, stored):
    _, token = make_index_set("app")
    r = client.post("/api/v1/index_sets/app/ingest", data=body, content_type=content_type,
                    HTTP_AUTHORIZATION=f"Bearer {token}")
    assert r.status_code == status and message in r.json()["error"]
    assert stored.count() == 0


def test_invalid_utf8(make_index_set, client):
    _, token = make_index_set("app")
    r = client.post("/api/v1/index_sets/app/ingest", data=b"ok\n\xff\xfe bad\n", content_type="text/plain",
                    HTTP_AUTHORIZATION=f"Bearer {token}")
    assert r.status_code == 400 and "not UTF-8" in r.json()["error"]


def test_oversize_body_is_413(make_index_set, ingest, settings, stored):
    settings.BKLOG_INGEST_MAX_BYTES = 1000
    _, token = make_index_set("app")
    r = ingest("app", token, "x" * 600 + "\n" + "y" * 600 + "\n")
    assert r.status_code == 413 and "exceeds the ingest limit of 1000 bytes" in r.json()["error"]
    assert stored.count() == 0


def test_too_many_lines_is_413(make_index_set, ingest, settings):
    settings.BKLOG_INGEST_MAX_LINES = 3
    _, token = make_index_set("app")
    r = ingest("app", token, ["a", "b", "c", "d"])
    assert r.status_code == 413 and "the limit is 3" in r.json()["error"]


def test_tokens(make_index_set, ingest, client, admin_token, stored):
    _, token = make_index_set("app")
    _, other = make_index_set("other")
    assert ingest("app", other, ["x"]).status_code == 403
    assert ingest("app", admin_token, ["x"]).status_code == 403  # API tokens cannot ingest
    r = client.post("/api/v1/index_sets/app/ingest", data="x", content_type="text/plain")
    assert r.status_code == 401 and "missing ingest token" in r.json()["error"]
    # A token says nothing about index sets that are not its own: missing or not, 403.
    assert ingest("nope", token, ["x"]).status_code == 403
    assert ingest("other", token, ["x"]).status_code == 403
    # Without a valid token, 401 whether the index set exists or not.
    assert ingest("nope", "not-a-token-at-all-0123", ["x"]).status_code == 401
    assert ingest("app", "not-a-token-at-all-0123", ["x"]).status_code == 401
    assert stored.count() == 0


def test_basic_auth_password_is_accepted_as_ingest_token(make_index_set, client):
    import base64

    _, token = make_index_set("app")
    basic = base64.b64encode(f"shipper:{token}".encode()).decode()
    r = client.post("/api/v1/index_sets/app/ingest", data="via basic", content_type="text/plain",
                    HTTP_AUTHORIZATION=f"Basic {basic}")
    assert r.status_code == 200


def test_wrong_method_and_unknown_path(client):
    assert client.get("/api/v1/index_sets/app/ingest").status_code == 405
    r = client.get("/api/v1/nothing")
    assert r.status_code == 404 and r.json()["error"] == "no such endpoint: /api/v1/nothing"


@pytest.mark.django_db(transaction=True)
def test_a_batch_being_indexed_does_not_hold_up_new_batches_of_its_index_set(make_index_set, settings, monkeypatch):
    """While a worker indexes a batch (a second with OpenSearch's refresh wait), the API keeps
    accepting batches for the same index set. Seen in the cluster scenario: every rsyslog `_bulk`
    took 1-2 s, waiting on the index set's row the worker had locked. PostgreSQL only (SQLite has
    no row locks). The broker is replaced by a no-op and the store's insert is held open by the
    test: what is checked is the database's locking, which needs the insert to stay in flight."""
    import threading

    from django.db import OperationalError, connection

    from bklog.logs import ingest

    if connection.vendor != "postgresql":
        pytest.skip("row locks: PostgreSQL only")
    settings.BKLOG_PIPELINE_ASYNC = True
    monkeypatch.setattr(ingest.celery, "send_task", lambda *args, **kwargs: None)
    index_set, _ = make_index_set("app")
    first = ingest.accept(index_set, ["queued first"])

    store, inserting, release = ingest.line_store(), threading.Event(), threading.Event()

    class HeldInsert:
        def __getattr__(self, name):
            return getattr(store, name)

        def insert(self, *args, **kwargs):
            inserting.set()
            assert release.wait(60), "the test never released the insert"
            return store.insert(*args, **kwargs)

    monkeypatch.setattr(ingest, "line_store", HeldInsert)
    outcome = []

    def work():
        try:
            outcome.append(ingest.index_pending_batch(first["batch"]))
        finally:
            connection.close()

    worker = threading.Thread(target=work)
    worker.start()
    try:
        assert inserting.wait(30), "the worker never reached the insert"
        with connection.cursor() as cursor:
            # A lock wait fails this accept instead of blocking until the worker commits.
            cursor.execute("SET lock_timeout = '3s'")
        try:
            second = ingest.accept(index_set, ["accepted while the first is indexed"])
        except OperationalError as exc:
            pytest.fail(f"a new batch waited for the batch being indexed: {exc}")
        finally:
            with connection.cursor() as cursor:
                cursor.execute("RESET lock_timeout")
    finally:
        release.set()
        worker.join(60)
    assert outcome == ["indexed"]
    assert IngestBatch.objects.get(pk=second["batch"]).status == IngestBatch.PENDING
