"""Search: full text, phrases, boolean operators, time range, field filters, cursor pagination."""

import pytest

pytestmark = pytest.mark.django_db

LINES = [
    {"message": "database connection reset by peer", "level": "error", "@timestamp": "2026-01-01T00:00:01Z"},
    {"message": "connection established", "level": "info", "@timestamp": "2026-01-01T00:00:02Z"},
    {"message": "redis connection timeout", "level": "error", "status": 503, "@timestamp": "2026-01-01T00:00:03Z"},
    {"message": "reset password for user", "level": "info", "@timestamp": "2026-01-01T00:00:04Z"},
    {"message": "disk almost full", "level": "warn", "@timestamp": "2026-01-01T00:00:05Z"},
]


@pytest.fixture
def loaded(make_index_set, ingest, admin_token):
    _, token = make_index_set("app")
    assert ingest("app", token, LINES).status_code == 200
    _, other_token = make_index_set("other")
    ingest("other", other_token, ["connection from another index set"])
    return admin_token


def messages(response):
    assert response.status_code == 200, response.json()
    return [hit["message"] for hit in response.json()["hits"]]


@pytest.mark.parametrize("q, expected", [
    ("connection", ["redis connection timeout", "connection established", "database connection reset by peer"]),
    ("connection reset", ["database connection reset by peer"]),
    ('"reset by peer"', ["database connection reset by peer"]),
    ('"peer by reset"', []),
    ("reset OR disk", ["disk almost full", "reset password for user", "database connection reset by peer"]),
    ("connection NOT timeout", ["connection established", "database connection reset by peer"]),
    ("connection -timeout -established", ["database connection reset by peer"]),
    ("NOT connection", ["disk almost full", "reset password for user"]),
    ("(redis OR database) AND connection", ["redis connection timeout", "database connection reset by peer"]),
    ("disk OR NOT connection", ["disk almost full", "reset password for user"]),
    ("CONNECTION Timeout", ["redis connection timeout"]),
    ("", ["disk almost full", "reset password for user", "redis connection timeout", "connection established",
          "database connection reset by peer"]),
])
def test_query_language(loaded, search, q, expected):
    r = search("app", loaded, q=q)
    assert messages(r) == expected
    assert r.json()["total"] == len(expected)


def test_time_range_is_start_inclusive_end_exclusive(loaded, search):
    r = search("app", loaded, start="2026-01-01T00:00:02Z", end="2026-01-01T00:00:04Z")
    assert messages(r) == ["redis connection timeout", "connection established"]
    r = search("app", loaded, start="2026-01-01T08:00:03+08:00")
    assert messages(r) == ["disk almost full", "reset password for user", "redis connection timeout"]


def test_field_filters(loaded, search):
    assert messages(search("app", loaded, **{"field.level": "error", "q": "connection"})) == [
        "redis connection timeout", "database connection reset by peer"]
    assert messages(search("app", loaded, **{"field.status": "503"})) == ["redis connection timeout"]
    assert messages(search("app", loaded, **{"field.level": "none"})) == []


def test_cursor_pagination_walks_every_hit_once(loaded, search):
    seen, cursor, pages = [], None, 0
    while True:
        params = {"size": 2}
        if cursor:
            params["cursor"] = cursor
        body = search("app", loaded, **params).json()
        assert body["total"] == 5
        seen += [h["message"] for h in body["hits"]]
        pages += 1
        cursor = body["next_cursor"]
        if not cursor:
            break
    assert pages == 3 and len(seen) == 5 and len(set(seen)) == 5
    assert seen[0] == "disk almost full"


@pytest.mark.parametrize("params, param, message", [
    ({"q": "(redis OR"}, "q", "malformed query: expected a term after 'OR' at position 10"),
    ({"q": 'say "hi'}, "q", "unterminated phrase"),
    ({"start": "2026-02-01T00:00:00Z", "end": "2026-01-01T00:00:00Z"}, "start", "is after end"),
    ({"start": "yesterday"}, "start", "start='yesterday' is not an ISO 8601 date-time"),
    ({"size": "0"}, "size", "size must be from 1 to 1000"),
    ({"size": "ten"}, "size", "size='ten' is not an integer"),
    ({"cursor": "garbage!"}, "cursor", "cursor is not one this API returned"),
    ({"levle": "error"}, "levle", "unknown parameter 'levle'"),
])
def test_bad_requests_say_what_is_wrong(loaded, search, params, param, message):
    r = search("app", loaded, **params)
    assert r.status_code == 400
    assert message in r.json()["error"] and r.json()["param"] == param


def test_auth_and_unknown_index_set(loaded, search, client, reader_token):
    assert search("app", reader_token, q="disk").status_code == 200
    assert client.get("/api/v1/index_sets/app/search").status_code == 401
    assert search("app", "api_wrong", q="x").json()["error"] == "API token not recognised"
    r = search("missing", loaded)
    assert r.status_code == 404 and "'missing' does not exist" in r.json()["error"]


def test_total_is_a_lower_bound_past_ten_thousand(make_index_set, admin_token, search, settings, stored):
    from bklog.logs import search as search_module

    index_set, _ = make_index_set("big")
    search_module.TOTAL_EXACT_UP_TO, saved = 3, search_module.TOTAL_EXACT_UP_TO
    try:
        from django.utils import timezone
        stored.add(index_set, [(timezone.now(), f"m {i}", {}) for i in range(5)])
        body = search("big", admin_token, q="m").json()
        assert body["total"] == 3 and body["total_relation"] == "gte"
    finally:
        search_module.TOTAL_EXACT_UP_TO = saved


def _all_pages(search, name, token, size=7, **params):
    seen, totals, cursor = [], [], None
    while True:
        body = search(name, token, size=size, **params, **({"cursor": cursor} if cursor else {})).json()
        seen += [h["message"] for h in body["hits"]]
        totals.append((body["total"], body["total_relation"]))
        cursor = body["next_cursor"]
        if not cursor:
            return seen, totals


@pytest.mark.parametrize("q, start, keep", [
    ("even", None, lambda i, t: i % 2 == 0),
    ("-even", None, lambda i, t: i % 2 == 1),
    ("item NOT odd", "2026-01-01T00:00:30Z", lambda i, t: i % 2 == 0 and t >= 30),
    ('"item 1" OR odd', None, lambda i, t: i % 2 == 1 or i == 1),
])
def test_common_term_pages_are_exact_when_time_and_ingest_order_differ(make_index_set, admin_token, search, stored,
                                                                         monkeypatch, q, start, keep):
    """The SQLite plan for common and negated terms walks the time index in windows and asks FTS5
    per rowid range: with timestamps shuffled against ids it must still page newest first, exactly
    once, with the same totals as the plan driven by the match list (and as the other backends)."""
    import random
    from datetime import datetime, timedelta, timezone

    from bklog.logs import search as search_module

    index_set, _ = make_index_set("shuffled")
    rng = random.Random(3)
    offsets = list(range(200))
    rng.shuffle(offsets)
    base = datetime(2026, 1, 1, tzinfo=timezone.utc)
    stored.add(index_set, [(base + timedelta(seconds=offsets[i] // 2), f"item {i} {'even' if i % 2 == 0 else 'odd'}", {})
                           for i in range(200)])
    # Newest first, ties by id: ids grow with i on every store.
    kept = [i for i in range(200) if keep(i, offsets[i] // 2)]
    expected = [f"item {i} {'even' if i % 2 == 0 else 'odd'}" for i in sorted(kept, key=lambda i: (offsets[i] // 2, i), reverse=True)]
    params = {"q": q, **({"start": start} if start else {})}
    monkeypatch.setattr(search_module, "TOTAL_EXACT_UP_TO", 40)  # totals past it are lower bounds
    expected_total = (min(len(expected), 40), "gte" if len(expected) > 40 else "eq")
    monkeypatch.setattr(search_module, "_sqlite_drive_up_to", lambda: 0)  # force the walk, in small windows
    monkeypatch.setattr(search_module, "SQLITE_WINDOW_FIRST", 3)
    monkeypatch.setattr(search_module, "SQLITE_WINDOW_MAX", 16)
    walked, totals = _all_pages(search, "shuffled", admin_token, **params)
    assert walked == expected and set(totals) == {expected_total}
    monkeypatch.setattr(search_module, "_sqlite_drive_up_to", lambda: 10**6)  # the match list drives where it can
    assert _all_pages(search, "shuffled", admin_token, **params) == (expected, totals)
    # PostgreSQL's plans (no-ops elsewhere): walks of 16 lines that fall back to the word's index,
    # and the word's index alone (a probe that found nothing), give the same pages.
    monkeypatch.setattr(search_module, "PG_PROBE_LINES", 3)
    monkeypatch.setattr(search_module, "PG_WALK_LINES", 16)
    assert _all_pages(search, "shuffled", admin_token, **params) == (expected, totals)
    monkeypatch.setattr(search_module, "PG_WALK_LINES", 1000)  # the count walked too
    assert _all_pages(search, "shuffled", admin_token, **params) == (expected, totals)
    monkeypatch.setattr(search_module._PgWalk, "probe", lambda self, lines: (0, lines))
    assert _all_pages(search, "shuffled", admin_token, **params) == (expected, totals)


def test_postgresql_reads_a_word_absent_from_the_newest_day_one_day_at_a_time(make_index_set, stored, monkeypatch):
    """A word common in an older day and absent from the newest (the bench's `_bulk` lines on top
    of a week): the probe of the newest lines cannot tell it from a rare word, so the word's index
    drives, one day's partition at a time, newest first, and the page comes from the day that
    holds it, walked (the whole table's index read and sorted 3,000 matches for a page of 10)."""
    from datetime import datetime, timedelta, timezone

    from django.db import connection, transaction

    from bklog.logs import search as search_module

    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL's partitions")
    index_set, _ = make_index_set("days")
    newest = datetime(2026, 3, 2, tzinfo=timezone.utc)
    stored.add(index_set, [(newest - timedelta(days=1, seconds=i), f"alpha old {i}", {}) for i in range(3000)]
               + [(newest + timedelta(seconds=i), f"beta new {i}", {}) for i in range(3000)])
    monkeypatch.setattr(search_module, "TOTAL_EXACT_UP_TO", 40)  # a count that stops early, as at scale
    monkeypatch.setattr(search_module, "PG_PROBE_LINES", 200)

    def read_so_far(cursor) -> int:
        cursor.execute("SELECT coalesce(sum(coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0)), 0) "
                       "FROM pg_stat_xact_user_tables WHERE relid IN (SELECT relid FROM pg_partition_tree('logs_logline'))")
        return cursor.fetchone()[0]

    with transaction.atomic(), connection.cursor() as cursor:
        before = read_so_far(cursor)
        result = search_module.search(index_set, search_module.SearchRequest(q="alpha"), 10)
        read = read_so_far(cursor) - before
    assert [h["message"] for h in result["hits"]] == [f"alpha old {i}" for i in range(10)]
    assert result["total_relation"] == "gte" and 0 < read < 1500, read


def test_postgresql_counts_the_days_after_a_cursor_only_up_to_the_cap(make_index_set, stored, monkeypatch):
    """A page deep in an older day: the newer days (after the cursor) are only counted, and only
    until the total reaches its cap; the days between are then not read at all (before, each was
    counted up to the whole cap: a week of a common word, up to seven counts of 10,001)."""
    from datetime import datetime, timedelta, timezone

    from django.db import connection, transaction

    from bklog.logs import partitions
    from bklog.logs import search as search_module
    from bklog.logs.models import LogLine

    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL's partitions")
    index_set, _ = make_index_set("week")
    newest = datetime(2026, 3, 5, 12, tzinfo=timezone.utc)
    stored.add(index_set, [(newest - timedelta(days=d, seconds=i), f"word {d} {i}", {}) for d in range(4) for i in range(60)])
    monkeypatch.setattr(search_module, "TOTAL_EXACT_UP_TO", 40)
    between = [partitions.day_name(partitions.day_of(newest - timedelta(days=d))) for d in (1, 2)]
    cursor_line = LogLine.objects.get(index_set=index_set, message="word 3 19")

    def read_so_far(cursor) -> int:  # in this transaction (the test's), of the days between
        cursor.execute("SELECT coalesce(sum(coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0)), 0) "
                       "FROM pg_stat_xact_user_tables WHERE relid IN (to_regclass(%s), to_regclass(%s))", between)
        return cursor.fetchone()[0]

    with transaction.atomic(), connection.cursor() as cursor:
        before = read_so_far(cursor)
        result = search_module.search(index_set, search_module.SearchRequest(q="word"), 10,
                                      cursor=search_module.encode_cursor(cursor_line))
        between_read = read_so_far(cursor) - before
    assert result["total"] == 40 and result["total_relation"] == "gte"
    assert [h["message"] for h in result["hits"]] == [f"word 3 {i}" for i in range(20, 30)]
    assert between_read <= 2  # _pg_days' one-row look into each day


def test_postgresql_plans_do_not_wait_for_statistics(make_index_set, stored, monkeypatch):
    """A table the pipeline filled before autovacuum analyzed it: the planner, left alone, ANDed
    the index set's whole bitmap with the word's and sorted every match (issue 18). The search
    holds its own plan: a page of a common word reads about the lines it shows, whatever the
    statistics say (pg_stat_xact_user_tables: this transaction's reads of the lines' table)."""
    from datetime import datetime, timedelta, timezone

    from django.db import connection, transaction

    from bklog.logs import search as search_module

    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL's planner")
    index_set, _ = make_index_set("unanalyzed")
    base = datetime(2026, 1, 1, tzinfo=timezone.utc)
    stored.add(index_set, [(base + timedelta(seconds=i), f"{'INFO' if i % 10 < 7 else 'WARN'} line {i}", {"n": str(i % 8)})
                           for i in range(5000)])
    with connection.cursor() as cursor:
        # The table's and its day partitions' (bklog/logs/partitions.py).
        cursor.execute("DELETE FROM pg_statistic WHERE starelid IN (SELECT relid FROM pg_partition_tree('logs_logline'))")
    monkeypatch.setattr(search_module, "TOTAL_EXACT_UP_TO", 40)
    monkeypatch.setattr(search_module, "PG_PROBE_LINES", 200)

    def read_so_far(cursor) -> int:  # in this transaction (the test's)
        cursor.execute("SELECT coalesce(sum(coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0)), 0) "
                       "FROM pg_stat_xact_user_tables WHERE relid IN (SELECT relid FROM pg_partition_tree('logs_logline'))")
        return cursor.fetchone()[0]

    def lines_read(request) -> tuple[int, dict]:
        with transaction.atomic(), connection.cursor() as cursor:
            before = read_so_far(cursor)
            result = search_module.search(index_set, request, 10)
            return read_so_far(cursor) - before, result

    for request in (search_module.SearchRequest(q="INFO"), search_module.SearchRequest(q="-INFO"),
                    search_module.SearchRequest(fields={"n": "3"})):
        read, result = lines_read(request)
        assert result["total_relation"] == "gte" and len(result["hits"]) == 10
        assert 0 < read < 1000, (request, read)  # the probe, the count to 41 and the page: not the 3,500 matches
    read, result = lines_read(search_module.SearchRequest(q="2500"))  # one line: the word's index finds it
    assert [h["message"] for h in result["hits"]] == ["INFO line 2500"] and read < 1000
