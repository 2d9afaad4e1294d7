"""GET /api/v1/index_sets/<name>/histogram: matching lines per time bucket, on every backend."""

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
    for line in LINES:  # another index set's matching lines between these, by id and by time
        assert ingest("app", token, [line]).status_code == 200
        assert ingest("other", other, [line]).status_code == 200
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
