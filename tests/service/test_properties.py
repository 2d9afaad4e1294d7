"""Property-based tests (Hypothesis) of everything a client controls: the query language, the
ingest decoder, the `_bulk` parser and the field filters. For any input the API answers a 2xx
or a JSON 4xx, never a 5xx, and what is stored is exactly what was accepted.

The inputs mix ordinary text with what has broken services before: NUL, lone surrogates,
NaN/Infinity/1e400, deep nesting, dates at the ends of the calendar, lookup words (isnull, in,
regex), separators str.splitlines treats as line ends. Runs on each backend of the service suite.
"""

from __future__ import annotations

import json
import os

import pytest
from conftest import auth
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from stored_lines import StoredLines
from test_otlp import refusal

pytestmark = pytest.mark.django_db

# 60 per test in CI (15 on OpenSearch, where each accepted batch waits for a refresh, up to 1 s);
# BKLOG_HYPOTHESIS_EXAMPLES=5000 for a long hunt.
_DEFAULT_EXAMPLES = 15 if os.environ.get("BKLOG_SEARCH_BACKEND") == "opensearch" else 60
EXAMPLES = settings(max_examples=int(os.environ.get("BKLOG_HYPOTHESIS_EXAMPLES", _DEFAULT_EXAMPLES)), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                             HealthCheck.too_slow])
NASTY = ["\x00", "\ud800", "\udfff", "\x0c", "\x1c", "\u2028", "\x85", "\r", "\n", "\\", '"', "'", "%", "_", "*",
         "(", ")", "-", "NOT", "AND", "OR", "__", "isnull", "in", "regex", "0", " ", ".", "=", "é", "日本", "😀"]
nasty_text = st.lists(st.one_of(st.sampled_from(NASTY), st.text(max_size=8)), max_size=12).map("".join)
# A URL cannot carry a lone surrogate (its UTF-8 does not exist): as a client's bytes would be decoded.
url_text = nasty_text.map(lambda s: s.encode("utf-8", "surrogatepass").decode("utf-8", "replace"))
dates = st.sampled_from(["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "2026-01-01T00:00:00Z",
                         "2026-13-01", "1e400", "", "0001-01-01", "9999-12-31T23:59:59.999999+00:00"])
scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
                    st.floats(allow_nan=True, allow_infinity=True), nasty_text, dates)
json_values = st.recursive(scalars, lambda children: st.one_of(
    st.lists(children, max_size=4), st.dictionaries(nasty_text, children, max_size=4)), max_leaves=12)
documents = st.dictionaries(st.one_of(st.sampled_from(["message", "msg", "@timestamp", "time", "host", "level"]), nasty_text),
                            json_values, max_size=5)


def assert_client_outcome(response):
    """A 2xx, or a 4xx whose body is JSON with an error: never a 5xx, never HTML."""
    assert response.status_code < 500, (response.status_code, response.content[:500])
    if response.status_code >= 400:
        assert response["Content-Type"].startswith("application/json"), response.content[:200]
        assert response.json()["error"]


def deep(depth: int) -> str:
    return '{"message": "deep", "a": ' + "[" * depth + "]" * depth + "}"


@pytest.fixture
def app(make_index_set, admin_token):
    index_set, token = make_index_set("app", parse="json")
    _, plain_token = make_index_set("plain")
    return index_set, token, plain_token, admin_token


@EXAMPLES
@given(q=st.one_of(url_text, st.text(max_size=300)), start=st.one_of(st.none(), dates, url_text),
       cursor=st.one_of(st.none(), url_text))
def test_any_query_is_answered_or_refused_cleanly(client, app, q, start, cursor):
    _, _, _, admin = app
    params = {"q": q}
    if start is not None:
        params["start"] = start
    if cursor is not None:
        params["cursor"] = cursor
    assert_client_outcome(client.get("/api/v1/index_sets/app/search", params, **auth(admin)))


@EXAMPLES
@given(body=st.one_of(st.binary(max_size=300), nasty_text.map(lambda s: s.encode("utf-8", "surrogatepass")),
                      st.lists(st.one_of(nasty_text, documents, st.integers()), max_size=6).map(
                          lambda lines: json.dumps(lines).encode()),
                      st.integers(min_value=1, max_value=3000).map(lambda n: ("[" + deep(n) + "]").encode())),
       as_json=st.booleans())
def test_any_ingest_body_is_stored_exactly_as_accepted_or_refused(client, app, body, as_json):
    index_set, token, plain_token, _ = app
    name, tok = ("app", token) if as_json else ("plain", plain_token)
    before = StoredLines().all()
    r = client.post(f"/api/v1/index_sets/{name}/ingest", data=body,
                    content_type="application/json" if as_json else "text/plain", **auth(tok))
    assert_client_outcome(r)
    after = StoredLines().all()
    if r.status_code >= 400:
        assert len(after) == len(before)  # a refused batch stores nothing
        return
    assert len(after) - len(before) == r.json()["accepted"]
    if not as_json:  # newline-delimited text: each non-blank line, whole
        text = body.decode()
        expected = [line[:-1] if line.endswith("\r") else line for line in text.split("\n")]
        expected = [line for line in expected if line.strip()]
        new = [line.message for line in after if line.id not in {b.id for b in before}]
        assert sorted(new) == sorted(expected)


actions = st.one_of(st.sampled_from(["index", "create", "delete", "update"]), nasty_text)
metas = st.dictionaries(st.sampled_from(["_index", "_id", "routing"]),
                        st.one_of(st.sampled_from(["app", "plain", "missing"]), json_values), max_size=3)


@EXAMPLES
@given(pairs=st.lists(st.tuples(actions, metas, st.one_of(documents, json_values, st.just(None))), min_size=1, max_size=6),
       garbage=st.one_of(st.none(), nasty_text, st.integers(min_value=1, max_value=3000).map(deep)))
def test_any_bulk_body_stores_exactly_the_created_items(client, app, pairs, garbage):
    _, token, _, _ = app
    lines = []
    for action, meta, doc in pairs:
        lines.append(json.dumps({action: meta}))
        if doc is not None:
            lines.append(json.dumps(doc))
    if garbage is not None:
        lines.append('{"index":{"_index":"app"}}')
        lines.append(garbage)
    before = StoredLines().count()
    body = ("\n".join(lines) + "\n").encode("utf-8", "surrogatepass")  # a lone surrogate as a client's bad bytes
    r = client.post("/app/_bulk", data=body, content_type="application/x-ndjson", **auth(token))
    assert r.status_code < 500, r.content[:500]
    assert r["Content-Type"].startswith("application/json")
    created = 0
    if r.status_code == 200:
        items = r.json()["items"]
        created = sum(1 for item in items if next(iter(item.values()))["status"] == 201)
    else:
        assert r.json()["error"]
    assert StoredLines().count() - before == created


CONSUMED = {"message", "msg", "log", "@timestamp", "timestamp", "time"}


@EXAMPLES
@given(name=url_text.filter(lambda n: n not in CONSUMED), value=url_text)
def test_any_field_filter_finds_the_line_that_carries_it(client, app, name, value):
    _, token, _, admin = app
    line = {"message": "carrier", name: value}
    r = client.post("/api/v1/index_sets/app/ingest", data=json.dumps([line]), content_type="application/json",
                    **auth(token))
    assert_client_outcome(r)
    search = client.get("/api/v1/index_sets/app/search", {f"field.{name}": value, "size": 1000}, **auth(admin))
    assert_client_outcome(search)
    if r.status_code == 200 and search.status_code == 200:
        # The filter means "this field equals this value": the line that carries it is found,
        # and every hit carries it (as the value, or the number or boolean it spells).
        hits = search.json()["hits"]
        assert any(hit["fields"].get(name) == value for hit in hits), (name, value, hits[:3])
        assert all(name in hit["fields"] for hit in hits)


otlp_scalars = st.one_of(
    st.builds(lambda v: {"stringValue": v}, nasty_text),
    st.builds(lambda v: {"intValue": v}, st.one_of(st.integers(), nasty_text)),
    st.builds(lambda v: {"doubleValue": v}, st.one_of(st.floats(), nasty_text)),
    st.just({}), json_values)


def _otlp_containers(children):
    arrays = st.builds(lambda vs: {"arrayValue": {"values": vs}}, st.lists(children, max_size=3))
    kvlists = st.builds(lambda kv: {"kvlistValue": {"values": [{"key": k, "value": v} for k, v in kv.items()]}},
                        st.dictionaries(nasty_text, children, max_size=3))
    return st.one_of(arrays, kvlists)


otlp_any_value = st.recursive(otlp_scalars, _otlp_containers, max_leaves=8)
otlp_records = st.fixed_dictionaries({}, optional={
    "body": otlp_any_value, "timeUnixNano": st.one_of(st.integers(min_value=-1, max_value=2**64), nasty_text),
    "severityNumber": st.one_of(st.integers(min_value=-5, max_value=40), nasty_text), "severityText": nasty_text,
    "attributes": st.lists(st.fixed_dictionaries({"key": st.one_of(nasty_text, st.integers())}, optional={"value": otlp_any_value}), max_size=3),
    "traceId": nasty_text})


@EXAMPLES
@given(records=st.lists(st.one_of(otlp_records, json_values), max_size=5), raw=st.one_of(st.none(), st.binary(max_size=200)),
       skeleton=st.one_of(st.none(), json_values, st.lists(st.dictionaries(st.sampled_from(["resource", "scopeLogs"]), json_values))))
def test_any_otlp_request_is_stored_as_answered_or_refused(client, app, records, raw, skeleton):
    _, token, _, _ = app
    before = StoredLines().count()
    if raw is not None:  # arbitrary bytes as protobuf
        r = client.post("/v1/logs", data=raw, content_type="application/x-protobuf", **auth(token))
    elif skeleton is not None:  # any shape where OTLP has resourceLogs[].scopeLogs[]
        r = client.post("/v1/logs", data=json.dumps({"resourceLogs": skeleton}).encode("utf-8", "surrogatepass"),
                        content_type="application/json", **auth(token))
    else:
        body = {"resourceLogs": [{"resource": {"attributes": []}, "scopeLogs": [{"logRecords": records}]}]}
        r = client.post("/v1/logs", data=json.dumps(body).encode("utf-8", "surrogatepass"),
                        content_type="application/json", **auth(token))
    assert r.status_code < 500, (r.status_code, r.content[:500])
    if r.status_code >= 400:  # OTLP's refusal: a google.rpc.Status naming what is wrong
        assert refusal(r)[1]
    stored = StoredLines().count() - before
    if r.status_code == 200 and raw is None and skeleton is None:
        rejected = int(r.json().get("partialSuccess", {}).get("rejectedLogRecords", 0))
        assert stored + rejected == len(records)
    elif r.status_code >= 400:
        assert stored == 0
