"""The line store's guarantees, on whichever backend runs the suite (BKLOG_SEARCH_BACKEND), and
what only the OpenSearch store has: daily indices from the template, deleted with the index set."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import pytest
from django.conf import settings
from django.utils import timezone as djtz

from bklog.logs import ingest
from bklog.logs.models import IngestBatch

pytestmark = pytest.mark.django_db
opensearch_only = pytest.mark.skipif(settings.BKLOG_SEARCH_BACKEND != "opensearch",
                                     reason="the OpenSearch store's layout (BKLOG_SEARCH_BACKEND=opensearch)")


def _queued_batch(index_set, lines):
    """A batch accepted in async mode (its task not run): what a pipeline worker picks up."""
    from bklog.logs.store import line_store

    parsed = ingest.parse_batch(index_set, lines, djtz.now())
    return IngestBatch.objects.create(index_set=index_set, received_at=djtz.now(), lines=lines, line_count=len(parsed),
                                      first_line_id=line_store().reserve_ids(len(parsed)))


def test_a_batch_indexed_again_adds_no_line(make_index_set, stored):
    """A worker that wrote a batch and died before marking it indexed: the redelivered task writes
    it again. The database store redoes it in one transaction (the first never committed); the
    OpenSearch store writes the same ids, so the same documents."""
    from bklog.logs.store import line_store

    index_set, _ = make_index_set("app")
    batch = _queued_batch(index_set, ["one", "two", "three"])
    parsed = ingest.parse_batch(index_set, batch.lines, batch.received_at)
    if line_store().name == "opensearch":
        line_store().insert(index_set, parsed, batch=batch, first_id=batch.first_line_id)  # the first, lost attempt
    assert ingest.index_pending_batch(str(batch.id)) == "indexed"
    assert ingest.index_pending_batch(str(batch.id)) == "already-indexed"
    assert sorted(line.message for line in stored.all()) == ["one", "three", "two"]


def test_a_bulk_that_fails_midway_leaves_nothing_searchable(make_index_set, stored, monkeypatch):
    """The store raises after part of a batch was written (OpenSearch: the connection dropped after
    the cluster took the request): nothing of it is left, and the task's retry stores it whole."""
    from bklog.logs.store import line_store

    index_set, _ = make_index_set("app")
    batch = _queued_batch(index_set, ["alpha", "beta"])
    store = line_store()
    real_insert = type(store).insert
    if store.name == "opensearch":
        from opensearchpy import helpers
        from opensearchpy.exceptions import ConnectionError as OpenSearchConnectionError

        real_bulk, calls = helpers.bulk, []

        def bulk_then_drop(*args, **kwargs):
            calls.append(1)
            result = real_bulk(*args, **kwargs)  # written on the cluster ...
            if len(calls) == 1:  # ... but the answer to the batch's bulk is lost (not the clean-up's)
                raise OpenSearchConnectionError("N/A", "connection reset (test)", None)
            return result

        monkeypatch.setattr("bklog.logs.opensearch_store.helpers.bulk", bulk_then_drop)
    else:
        def insert_then_fail(self, *args, **kwargs):
            real_insert(self, *args, **kwargs)
            raise RuntimeError("the worker died (test)")

        monkeypatch.setattr(type(store), "insert", insert_then_fail)
    with pytest.raises(Exception, match="test"):
        ingest.index_pending_batch(str(batch.id))
    assert stored.count() == 0
    IngestBatch.objects.get(pk=batch.id, status=IngestBatch.PENDING)
    monkeypatch.undo()
    assert ingest.index_pending_batch(str(batch.id)) == "indexed"
    assert sorted(line.message for line in stored.all()) == ["alpha", "beta"]


def test_retention_on_the_cut_off_day_deletes_by_the_minute(make_index_set, stored):
    """Older days go whole (an index each, with OpenSearch); the cut-off's own day only up to it."""
    from bklog.logs.tasks import apply_retention

    index_set, _ = make_index_set("app", retention_days=3)
    cutoff = djtz.now() - timedelta(days=3)
    stored.add(index_set, [(cutoff - timedelta(days=1), "a day before", {}),
                           (cutoff - timedelta(seconds=60), "a minute before", {}),
                           (cutoff + timedelta(seconds=120), "two minutes after", {}),
                           (djtz.now(), "now", {})])
    assert apply_retention() == {"app": 2}
    assert sorted(line.message for line in stored.all()) == ["now", "two minutes after"]


def test_microsecond_timestamps_sort_and_filter_exactly(make_index_set, stored, search, reader_token):
    index_set, _ = make_index_set("app")
    base = datetime(2026, 5, 1, 12, 0, 0, tzinfo=timezone.utc)
    stored.add(index_set, [(base + timedelta(microseconds=us), f"tick {us}", {}) for us in (1, 3, 2, 999, 1000)])
    body = search("app", reader_token, q="tick", start=(base + timedelta(microseconds=2)).isoformat(),
                  end=(base + timedelta(microseconds=1000)).isoformat()).json()
    assert [hit["message"] for hit in body["hits"]] == ["tick 999", "tick 3", "tick 2"]
    assert body["hits"][0]["timestamp"] == "2026-05-01T12:00:00.000999Z"


@pytest.mark.skipif(settings.BKLOG_SEARCH_BACKEND == "opensearch", reason="the database store's INSERTs")
def test_a_batch_over_several_inserts_is_stored_exactly(make_index_set, stored):
    """More lines than one INSERT holds (the database store writes 500 at most, SQLite's 999
    parameters only 166): every line once, its timestamp to the microsecond, its message and
    fields (nested, non-ASCII, quotes) as given; with document ids (a `_bulk`'s), each its own."""
    from bklog.logs.store import line_store

    index_set, _ = make_index_set("app")
    base = datetime(2026, 5, 1, 12, 0, 0, tzinfo=timezone.utc)
    rows = [(base + timedelta(microseconds=7 * i), f"line {i} «ünï» 'q' \"dq\" %s ?", {"n": str(i), "deep": {"k": [i, "é"]}})
            for i in range(1203)]
    batch = _queued_batch(index_set, [message for _, message, _ in rows])
    line_store().insert(index_set, rows, batch=batch, first_id=batch.first_line_id)
    assert sorted(((line.timestamp, line.message, line.fields) for line in stored.all(index_set)), key=lambda r: r[0]) == rows

    with_ids, _ = make_index_set("with-ids")
    answer = ingest.accept(with_ids, [f"doc {i}" for i in range(700)], [("create", f"id-{i}") for i in range(700)])
    assert answer["accepted"] == 700
    assert sorted(line.message for line in stored.all(with_ids)) == sorted(f"doc {i}" for i in range(700))
    from bklog.logs.models import LogLine

    assert dict(LogLine.objects.filter(index_set=with_ids).values_list("message", "doc_id")) \
        == {f"doc {i}": f"id-{i}" for i in range(700)}
    assert set(LogLine.objects.filter(index_set=index_set).values_list("batch_id", flat=True)) == {batch.id}


@opensearch_only
def test_one_index_per_index_set_and_day_from_the_template(make_index_set, stored):
    from bklog.logs.store import line_store

    store = line_store()
    index_set, _ = make_index_set("web")
    today = djtz.now().replace(hour=0, minute=1, second=0, microsecond=0)
    yesterday = today - timedelta(minutes=2)  # 23:59 the day before
    stored.add(index_set, [(yesterday, "late", {"status": 200}), (today, "early", {"status": "ok"})])
    indices = store.client.indices.get(index=store.pattern("web"))
    assert sorted(indices) == [f"{store.prefix}-web.{yesterday:%Y.%m.%d}", f"{store.prefix}-web.{today:%Y.%m.%d}"]
    index = indices[f"{store.prefix}-web.{yesterday:%Y.%m.%d}"]
    assert index["mappings"]["dynamic"] == "strict"
    assert index["settings"]["index"]["number_of_shards"] == str(settings.BKLOG_OPENSEARCH_SHARDS)
    assert index["settings"]["index"]["refresh_interval"] == settings.BKLOG_OPENSEARCH_REFRESH_INTERVAL
    # The same field as a number in one line and a word in the next: no mapping conflict.
    assert sorted((line.fields["status"] for line in stored.all(index_set)), key=str) == [200, "ok"]


@opensearch_only
def test_a_changed_refresh_interval_reaches_the_days_already_written(make_index_set, stored, settings):
    from bklog.logs.opensearch_store import OpenSearchStore
    from bklog.logs.store import line_store

    index_set, _ = make_index_set("web")
    stored.add(index_set, [(djtz.now(), "before", {})])
    configured = settings.BKLOG_OPENSEARCH_REFRESH_INTERVAL
    settings.BKLOG_OPENSEARCH_REFRESH_INTERVAL = "7s"
    try:
        store = OpenSearchStore.from_settings()  # a process started with the new setting
        store.ensure_template()
        indices = store.client.indices.get_settings(index=store.pattern("web"))
        assert [index["settings"]["index"]["refresh_interval"] for index in indices.values()] == ["7s"]
    finally:  # the template back as the other tests' store put it (it puts it once per process)
        settings.BKLOG_OPENSEARCH_REFRESH_INTERVAL = configured
        OpenSearchStore.from_settings().ensure_template()
    assert line_store().template()["template"]["settings"]["refresh_interval"] == configured


@opensearch_only
def test_deleting_an_index_set_deletes_its_indices_only(make_index_set, stored):
    from bklog.logs.store import line_store

    store = line_store()
    app, _ = make_index_set("app")
    app2, _ = make_index_set("app-2")
    now = djtz.now()
    stored.add(app, [(now, "mine", {})])
    stored.add(app2, [(now, "theirs", {})])
    app.delete()
    assert store.client.indices.get(index=f"{store.prefix}-*").keys() == {store.index_name("app-2", now)}
    assert [line.message for line in stored.all(app2)] == ["theirs"]


@opensearch_only
def test_lines_past_retention_go_to_the_oldest_kept_day_and_retention_removes_them(make_index_set, stored):
    from bklog.logs.store import line_store
    from bklog.logs.tasks import apply_retention

    store = line_store()
    index_set, _ = make_index_set("replay", retention_days=7)
    now = djtz.now()
    stored.add(index_set, [(now - timedelta(days=400 + i), f"old {i}", {}) for i in range(30)] + [(now, "new", {})])
    oldest_kept = store.index_name("replay", now - timedelta(days=8))
    assert sorted(store.client.indices.get(index=store.pattern("replay"))) == sorted({oldest_kept, store.index_name("replay", now)})
    assert apply_retention()["replay"] == 30
    assert [line.message for line in stored.all(index_set)] == ["new"]


@opensearch_only
def test_searches_while_opensearch_is_unreachable_are_503_naming_it(make_index_set, search, reader_token, settings):
    from bklog.logs.store import _store

    make_index_set("app")
    settings.BKLOG_OPENSEARCH_URL, saved = ["http://127.0.0.1:1"], settings.BKLOG_OPENSEARCH_URL
    _store.cache_clear()
    try:
        r = search("app", reader_token, q="anything")
        assert r.status_code == 503 and r.json()["error"].startswith("OpenSearch is unavailable"), r.json()
    finally:
        settings.BKLOG_OPENSEARCH_URL = saved
        _store.cache_clear()


@pytest.mark.django_db(transaction=True)  # DETACH PARTITION ... CONCURRENTLY runs outside any transaction
def test_retention_drops_a_whole_day_while_ingest_and_search_go_on(make_index_set, stored, search, reader_token):
    """PostgreSQL: a day every index set's retention has passed goes whole (its partition detached
    CONCURRENTLY, then dropped), not line by line. A search that still reads the table holds the
    drop back, not the other way round: meanwhile lines are stored and searched."""
    import threading

    import psycopg
    from django.db import connection

    from bklog.logs import partitions
    from bklog.logs.tasks import apply_retention

    if settings.BKLOG_SEARCH_BACKEND != "database" or connection.vendor != "postgresql":
        pytest.skip("PostgreSQL's partitions (SQLite keeps one table, OpenSearch its own daily indices)")
    index_set, _ = make_index_set("app", retention_days=3)
    now = djtz.now()
    old_day = partitions.day_of(now - timedelta(days=10))
    stored.add(index_set, [(now - timedelta(days=10, seconds=i), f"old {i}", {}) for i in range(40)] + [(now, "new", {})])
    with connection.cursor() as cursor:
        assert old_day in partitions.partitions(cursor)[0]

    db = connection.settings_dict
    reader = psycopg.connect(host=db["HOST"], port=db["PORT"], dbname=db["NAME"], user=db["USER"], password=db["PASSWORD"])
    reader.execute("SELECT count(*) FROM logs_logline").fetchone()  # a long search's transaction, still open
    result = {}

    def retention():
        try:
            result["deleted"] = apply_retention()
        finally:
            from django.db import connection as own

            own.close()

    worker = threading.Thread(target=retention)
    worker.start()
    try:
        time.sleep(1)
        assert worker.is_alive()  # the drop waits for the open search
        stored.add(index_set, [(now, "stored meanwhile", {})])
        assert search("app", reader_token, q="meanwhile").json()["total"] == 1
    finally:
        reader.rollback()
        reader.close()
        worker.join(timeout=60)
    assert result["deleted"] == {"app": 40}
    with connection.cursor() as cursor:
        assert old_day not in partitions.partitions(cursor)[0]
        cursor.execute("SELECT to_regclass(%s)", [partitions.day_name(old_day)])
        assert cursor.fetchone()[0] is None
    assert sorted(line.message for line in stored.all()) == ["new", "stored meanwhile"]
    from bklog.logs import line_counts
    from bklog.logs.models import LineCount

    line_counts.compact()  # no trigger saw the day go: retention dropped its minutes' counts
    assert sorted(LineCount.objects.filter(index_set=index_set).values_list("lines", flat=True)) in ([2], [1, 1])


def test_a_day_dropped_behind_the_stores_back_is_made_again(make_index_set, stored):
    """PostgreSQL: the store remembers which days have a partition; one gone since (a restore of an
    older backup) is made again on the insert that finds it missing, and nothing is lost."""
    from django.db import connection

    from bklog.logs import partitions

    if settings.BKLOG_SEARCH_BACKEND != "database" or connection.vendor != "postgresql":
        pytest.skip("PostgreSQL's partitions")
    index_set, _ = make_index_set("app")
    now = djtz.now()
    stored.add(index_set, [(now, "first", {})])
    with connection.cursor() as cursor:
        cursor.execute(f"ALTER TABLE logs_logline DETACH PARTITION {partitions.day_name(partitions.day_of(now))}")
        cursor.execute(f"DROP TABLE {partitions.day_name(partitions.day_of(now))}")
    # As a process that stored a line of that day remembers it (inside this test's transaction
    # the memory would only be kept at its commit).
    partitions._known_days.setdefault(connection.settings_dict["NAME"], set()).add(partitions.day_of(now))
    stored.add(index_set, [(now, "second", {})])
    assert [line.message for line in stored.all()] == ["second"]


def test_a_day_detached_but_not_dropped_goes_at_the_next_retention(make_index_set, stored):
    """PostgreSQL: a retention stopped between DETACH and DROP leaves the day's table outside the
    partitioned one; the next retention drops it (and counts its lines as deleted) instead of
    leaving it on disk for a late line of that day to attach again, expired lines and all."""
    from django.db import connection

    from bklog.logs import partitions
    from bklog.logs.tasks import apply_retention

    if settings.BKLOG_SEARCH_BACKEND != "database" or connection.vendor != "postgresql":
        pytest.skip("PostgreSQL's partitions")
    index_set, _ = make_index_set("app", retention_days=3)
    now = djtz.now()
    old_day = partitions.day_of(now - timedelta(days=10))
    stored.add(index_set, [(now - timedelta(days=10, seconds=i), f"old {i}", {}) for i in range(5)] + [(now, "new", {})])
    with connection.cursor() as cursor:
        cursor.execute(f"ALTER TABLE logs_logline DETACH PARTITION {partitions.day_name(old_day)}")
    assert apply_retention() == {"app": 5}
    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass(%s)", [partitions.day_name(old_day)])
        assert cursor.fetchone()[0] is None
    assert [line.message for line in stored.all()] == ["new"]
