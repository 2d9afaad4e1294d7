"""The per-index-set ingest rate limit (the guide's emergency plan: slow the producers during a
backlog): set through the API or `bklog rate_limit`, counted per window in the database, answered
with 429 and Retry-After on every ingest path (own API, `_bulk`, OTLP), nothing of a refused batch
stored. The window's clock is this module's stand-in for its clock (ratelimit._now), so no test depends on when it
runs."""

from __future__ import annotations

import io
import json

import pytest
from conftest import auth
from django.core.management import CommandError, call_command
from stored_lines import StoredLines
from test_es_bulk import bulk, ndjson
from test_otlp import post as otlp_post
from test_otlp import request_with

from bklog.logs import ratelimit

WINDOW = 10


@pytest.fixture
def clock(monkeypatch, settings):
    """Seconds since the epoch as ratelimit reads them: 3 s into a window."""
    settings.BKLOG_INGEST_RATE_WINDOW_SECONDS = WINDOW
    now = {"t": 1_800_000_003.0}
    monkeypatch.setattr(ratelimit, "_now", lambda: now["t"])
    return now


@pytest.fixture
def limited(make_index_set):
    index_set, token = make_index_set("app")
    index_set.ingest_lines_per_second = 1  # 10 lines per 10 s window
    index_set.save()
    return index_set, token


def test_over_the_limit_is_a_429_with_retry_after_and_nothing_stored(client, ingest, limited, make_index_set, clock):
    index_set, token = limited
    assert ingest("app", token, [f"line {i}" for i in range(8)]).status_code == 200
    # The window had budget left: the whole batch goes in, even past the budget.
    assert ingest("app", token, [f"more {i}" for i in range(8)]).status_code == 200
    refused = ingest("app", token, ["one too many"])
    assert refused.status_code == 429 and refused["Retry-After"] == "7", refused.content
    assert "'app' is limited to 1 lines per second" in refused.json()["error"]
    assert StoredLines().count(index_set) == 16
    # Another index set has its own budget (none here).
    _, other_token = make_index_set("other")
    assert ingest("other", other_token, [f"x {i}" for i in range(50)]).status_code == 200
    clock["t"] += 7  # the next window
    assert ingest("app", token, ["one too many"]).status_code == 200
    assert StoredLines().count(index_set) == 17


def test_bulk_is_refused_whole_as_an_engine_under_pressure(client, limited, clock):
    index_set, token = limited
    docs = [doc for i in range(10) for doc in ({"index": {}}, {"message": f"m{i}"})]
    assert bulk(client, ndjson(*docs), token, path="/app/_bulk").json()["errors"] is False
    refused = bulk(client, ndjson({"index": {}}, {"message": "late"}), token, path="/app/_bulk")
    assert refused.status_code == 429 and refused["Retry-After"] == "7" and refused["X-Elastic-Product"] == "Elasticsearch"
    assert refused.json()["error"]["type"] == "es_rejected_execution_exception" and refused.json()["status"] == 429
    # Each item refused too: rsyslog reads only the items (it retries a 429 item, drops a reply without any).
    assert refused.json()["errors"] is True
    assert [(i["index"]["status"], i["index"]["error"]["type"]) for i in refused.json()["items"]] == [(429, "es_rejected_execution_exception")]
    assert StoredLines().count(index_set) == 10


def test_otlp_is_refused_retryably(client, limited, clock):
    index_set, token = limited
    body = request_with([{"body": f"r{i}"} for i in range(10)]).SerializeToString()
    assert otlp_post(client, token, body).status_code == 200
    refused = otlp_post(client, token, body)
    assert refused.status_code == 429 and refused["Retry-After"] == "7"  # OTLP/HTTP: 429 is retryable
    assert StoredLines().count(index_set) == 10


def test_the_api_sets_it_for_admins_only_and_checks_it(client, make_index_set, admin_token, reader_token):
    make_index_set("app")
    url = "/api/v1/index_sets/app"

    def patch(token, body):
        return client.patch(url, data=json.dumps(body), content_type="application/json", **auth(token))

    r = patch(admin_token, {"ingest_lines_per_second": 500})
    assert r.status_code == 200 and r.json()["ingest_lines_per_second"] == 500, r.content
    assert client.get(url, **auth(reader_token)).json()["ingest_lines_per_second"] == 500
    assert patch(reader_token, {"ingest_lines_per_second": 0}).status_code == 403
    for bad in (-1, "500", 1.5, True, None, 10**12):
        r = patch(admin_token, {"ingest_lines_per_second": bad})
        assert r.status_code == 400 and "ingest_lines_per_second" in r.json()["error"], (bad, r.content)
        assert r.json()["param"] == "ingest_lines_per_second"
    r = patch(admin_token, {"parse": "json", "x" * 5000: 1})
    assert r.status_code == 400 and "parse" in r.json()["error"] and len(r.content) < 2000
    assert r.json()["param"] == "parse"
    # Creating answers unknown fields as briefly, however many and however long.
    r = client.post("/api/v1/index_sets", data=json.dumps({"name": "x", **{f"k{i}" + "y" * 5000: 1 for i in range(50)}}),
                    content_type="application/json", **auth(admin_token))
    assert r.status_code == 400 and "and 40 more" in r.json()["error"] and len(r.content) < 2000
    # Nothing of a refused change was applied; several settings change together.
    r = patch(admin_token, {"retention_days": 30, "ingest_lines_per_second": 0, "message_field": None})
    assert r.status_code == 200 and r.json()["retention_days"] == 30 and r.json()["ingest_lines_per_second"] is None
    r = patch(admin_token, {"retention_days": 0, "ingest_lines_per_second": 9})
    assert r.status_code == 400 and "retention_days" in r.json()["error"] and r.json()["param"] == "retention_days"
    assert client.get(url, **auth(admin_token)).json()["ingest_lines_per_second"] is None


def test_the_command_shows_and_sets_it(make_index_set):
    make_index_set("app")
    make_index_set("web")

    def run(*args) -> str:
        out = io.StringIO()
        call_command("rate_limit", *args, stdout=out)
        return out.getvalue().strip()

    assert run("app", "500") == "app changed 500"
    assert run("app", "500") == "app unchanged 500"
    assert run("app") == "app unchanged 500"
    assert run("--all", "off").splitlines() == ["app changed off", "web unchanged off"]
    for args, message in ((("app", "fast"), "whole number, or off"), (("nope", "5"), "does not exist"),
                          (("app", "99999999999"), "ingest_lines_per_second"), ((), "give --all")):
        with pytest.raises(CommandError, match=message):
            run(*args)
