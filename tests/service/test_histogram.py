"""GET /api/v1/index_sets/<name>/histogram: matching lines per time bucket, on every backend."""

import json

import pytest
from conftest import auth

pytestmark = pytest.mark.django_db

LINES = [
    {"message": "error disk full", "@timestamp": "2026-03-01T10:00:05Z", "host": "a"},
    {"message": "ok", "@timestamp": "2026-03-01T10:00:20.500Z", "host": "b"},
    {"message": "error timeout", "@timestamp": "2026-03-01T10:01:10Z", "host": "a"},
    {"message": "error again", "@timestamp": "2026-03-01T10:03:00Z", "host": "b"},
    {"message": "error outside", "@timestamp": "2026-03-01T11:30:00Z", "host": "a"},
]


@pytest.fixture
def loaded(make_index_set, ingest, admin_token):
    _, token = make_index_set("app", parse="json")
    _, other = make_index_set("other", parse="json")
    # Another index set's matching lines between these, by id and by time (three batches: on
    # OpenSearch each waits for a refresh).
    assert ingest("app", token, LINES[:3]).status_code == 200
    assert ingest("other", other, LINES).status_code == 200
    assert ingest("app", token, LINES[3:]).status_code == 200
    return admin_token


def histogram(client, token, **params):
    return client.get("/api/v1/index_sets/app/histogram", params, **auth(token))


@pytest.mark.parametrize("params, counts", [
    ({}, [2, 1, 0, 1, 0, 0]),
    ({"q": "error"}, [1, 1, 0, 1, 0, 0]),
    ({"q": "error", "field.host": "a"}, [1, 1, 0, 0, 0, 0]),
    ({"q": "NOT error"}, [1, 0, 0, 0, 0, 0]),
    ({"q": "error OR ok"}, [2, 1, 0, 1, 0, 0]),
    ({"q": "-again -disk", "field.host": "b"}, [1, 0, 0, 0, 0, 0]),
])
def test_counts_per_bucket_with_the_search_filters(client, loaded, params, counts):
    r = histogram(client, loaded, start="2026-03-01T10:00:00Z", end="2026-03-01T10:05:00Z", interval="1m", **params)
    assert r.status_code == 200, r.json()
    body = r.json()
    assert body["interval_seconds"] == 60
    assert [b["start"] for b in body["buckets"]] == [f"2026-03-01T10:0{i}:00Z" for i in range(6)]
    assert [b["count"] for b in body["buckets"]] == counts and body["total"] == sum(counts)


def test_auto_interval_and_the_default_range(client, loaded):
    r = histogram(client, loaded, start="2026-03-01T10:00:00Z", end="2026-03-01T12:00:00Z")
    body = r.json()
    assert body["interval_seconds"] == 300 and len(body["buckets"]) == 25 and body["total"] == 5
    r = histogram(client, loaded)  # the last 24 hours: nothing of 2026-03-01
    assert r.status_code == 200 and r.json()["total"] == 0 and len(r.json()["buckets"]) <= 100


@pytest.mark.parametrize("params, param", [
    ({"interval": "0s"}, "interval"), ({"interval": "5 minutes"}, "interval"), ({"interval": "1s"}, "interval"),
    ({"q": "(error"}, "q"), ({"start": "2026-03-02T00:00:00Z"}, "start"), ({"bogus": "1"}, "bogus"),
])
def test_bad_histograms_say_what_is_wrong(client, loaded, params, param):
    query = {"start": "2026-03-01T00:00:00Z", "end": "2026-03-01T23:00:00Z", **params}
    r = histogram(client, loaded, **query)
    assert r.status_code == 400 and r.json()["param"] == param, r.json()


database_only = pytest.mark.skipif(__import__("django.conf").conf.settings.BKLOG_SEARCH_BACKEND != "database",
                                   reason="the databases' line counts (OpenSearch aggregates its own documents)")


def _truth(index_set) -> dict[int, int]:
    """Lines per minute, counted from the lines themselves."""
    from bklog.logs.models import LogLine

    per_minute: dict[int, int] = {}
    for ts in LogLine.objects.filter(index_set=index_set).values_list("timestamp", flat=True):
        minute = int(ts.timestamp()) // 60 * 60
        per_minute[minute] = per_minute.get(minute, 0) + 1
    return per_minute


def _counted(index_set) -> dict[int, int]:
    from bklog.logs import line_counts
    from bklog.logs.models import LineCount

    line_counts.compact()
    return {minute: n for minute, n in LineCount.objects.filter(index_set=index_set).values_list("minute", "lines")}


@database_only
def test_the_minute_counts_follow_every_write(client, make_index_set, stored):
    """The triggers count every line written and deleted, whoever writes: a batch, a `_bulk` `_id`
    written again (its old line deleted in the same transaction), retention cutting inside a
    minute, an index set deleted. Compacted, the counts are the lines' own, minute by minute."""
    from datetime import datetime, timedelta, timezone

    from bklog.logs import line_counts
    from bklog.logs.models import LineCount
    from bklog.logs.store import line_store

    app, token = make_index_set("app")
    other, _ = make_index_set("other")
    base = datetime(2026, 3, 1, 10, 0, tzinfo=timezone.utc)
    rows = [(base + timedelta(seconds=7 * i), f"line {i}", {}) for i in range(60)]  # 7 minutes
    stored.add(app, rows)
    stored.add(other, rows[::3])
    assert _counted(app) == _truth(app) and sum(_truth(app).values()) == 60
    assert _counted(other) == _truth(other)

    for stamp in ("10:00:01", "10:05:01"):  # an `_id` written twice, the second time a later minute
        body = json.dumps({"index": {"_id": "a"}}) + "\n" + json.dumps({"message": "v", "@timestamp": f"2026-03-01T{stamp}Z"}) + "\n"
        r = client.post("/app/_bulk", data=body, content_type="application/x-ndjson", **auth(token))
        assert r.status_code == 200 and not r.json()["errors"], r.json()
    assert _counted(app) == _truth(app) and sum(_truth(app).values()) == 61

    line_store().delete_older_than(app, base + timedelta(minutes=2, seconds=30))  # inside a minute
    assert _counted(app) == _truth(app)
    assert min(_counted(app)) == int((base + timedelta(minutes=2)).timestamp())  # whole minutes before: gone

    other.delete()
    line_counts.compact()
    assert not LineCount.objects.filter(index_set_id=other.pk).exists()
    assert _counted(app) == _truth(app)


@database_only
def test_the_compaction_reads_only_the_rows_it_changes():
    """Each minute the compaction reads the transactions' rows and the minutes counted down to 0:
    through partial indexes holding just those, not a scan of every minute of every index set.
    (Planned with sequential scans off: on a table this small a scan would be cheaper anyway.)"""
    from django.db import connection

    from bklog.logs.line_counts import TABLE

    reads = {"linecount_empty": f"SELECT 1 FROM {TABLE} WHERE writer = 0 AND lines = 0"}
    postgresql = connection.vendor == "postgresql"
    if postgresql:  # SQLite's triggers add to writer 0 at once
        reads["linecount_unfolded"] = f"SELECT 1 FROM {TABLE} WHERE writer <> 0"
    with connection.cursor() as cursor:
        if postgresql:
            cursor.execute("SET LOCAL enable_seqscan = off")
        for index, query in reads.items():
            cursor.execute(f"{'EXPLAIN' if postgresql else 'EXPLAIN QUERY PLAN'} {query}")
            plan = " ".join(str(column) for row in cursor.fetchall() for column in row)
            assert index in plan, (query, plan)


@database_only
def test_the_histogram_of_every_line_reads_the_minute_counts(client, make_index_set, stored, admin_token):
    """No query, no field filter: whole minutes come from the counts (a row a minute, not a line
    each), the part-minutes at either end of the range from the lines. The same buckets as the
    lines give, for ranges that do and do not start on a minute; a query still counts lines."""
    from datetime import datetime, timedelta, timezone

    from bklog.logs import line_counts
    from bklog.logs.models import LineCount

    app, _ = make_index_set("app")
    base = datetime(2026, 3, 1, 10, 0, tzinfo=timezone.utc)
    stored.add(app, [(base + timedelta(seconds=13 * i), "error" if i % 4 == 0 else "ok", {}) for i in range(100)])
    truth = _truth(app)

    def expected(start, end, interval):
        lines = [ts for ts in (base + timedelta(seconds=13 * i) for i in range(100)) if start <= ts < end]
        buckets = {}
        for ts in lines:
            bucket = int(ts.timestamp()) // interval * interval
            buckets[bucket] = buckets.get(bucket, 0) + 1
        return buckets

    for start, end, interval in [(base, base + timedelta(minutes=30), "5m"),
                                 (base + timedelta(seconds=50), base + timedelta(minutes=19, seconds=30), "1m"),
                                 (base + timedelta(seconds=10), base + timedelta(seconds=40), "30s")]:
        r = histogram(client, admin_token, start=start.isoformat(), end=end.isoformat(), interval=interval)
        assert r.status_code == 200, r.json()
        got = {int(datetime.fromisoformat(b["start"].replace("Z", "+00:00")).timestamp()): b["count"]
               for b in r.json()["buckets"] if b["count"]}
        assert got == expected(start, end, r.json()["interval_seconds"]), (start, end, interval)

    # What it reads: a minute's count changed behind the triggers' back shows in it; a query's does not.
    minute = min(truth)
    line_counts.compact()
    LineCount.objects.filter(index_set=app, minute=minute, writer=0).update(lines=1000)
    window = {"start": base.isoformat(), "end": (base + timedelta(minutes=5)).isoformat(), "interval": "5m"}
    assert histogram(client, admin_token, **window).json()["total"] == 1000 + sum(truth.values()) - truth[minute] - sum(
        n for m, n in truth.items() if m >= int((base + timedelta(minutes=5)).timestamp()))
    assert histogram(client, admin_token, q="error OR ok", **window).json()["total"] == sum(
        n for m, n in truth.items() if m < int((base + timedelta(minutes=5)).timestamp()))
