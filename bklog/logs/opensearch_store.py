"""Log lines on an OpenSearch cluster, through the official opensearch-py client.

Layout: one index per index set and day of the line's timestamp (UTC),
`<prefix>-<index set>.<YYYY.MM.DD>`, created on first write from the composable index template
`<prefix>-lines` (index_patterns `<prefix>-*`): shards and replicas from the configuration, the
message analysed into words the way SQLite FTS5 and PostgreSQL split it (letters and digits,
lower-cased, accents folded), so one query finds the same lines on every backend.

Documents: `line_id` (the API's hit id), `ts_us` (microseconds since the epoch: sorts, ranges and
cursors exact to the microsecond, as the databases do; `@timestamp` beside it for dashboards),
`message`, `fields` (kept, not indexed: any shape per line, never a mapping conflict) and
`field_kv` ("name=value" of each top-level scalar field: the field.NAME filters).

Exactly once: a batch's line ids are reserved in the database when it is accepted, and each
document's `_id` is its line id, so a retried or redelivered bulk overwrites the same documents and
never adds a line twice. Retention deletes whole daily indices past the cut-off and the cut-off
day's older lines by query (ILM-style, without the ISM plugin, which the minimal distribution
does not have).
"""

from __future__ import annotations

import logging
import re
import time
from datetime import datetime, timedelta, timezone
from typing import Iterator

from django.conf import settings
from django.db import transaction
from opensearchpy import OpenSearch, helpers
from opensearchpy.exceptions import ConnectionError as OpenSearchConnectionError
from opensearchpy.exceptions import NotFoundError, TransportError

from bklog.logs import query as querylang
from bklog.logs.models import LineIdBlock
from bklog.logs.lines import Line, StoreUnavailable, chunks, current_versions, from_us, to_us

log = logging.getLogger(__name__)
PAGE = 1000
BLOCK = 16384  # line ids per reserved block: BKLOG_INGEST_MAX_LINES is at most this
DAY_FORMAT = "%Y.%m.%d"
# Request parameters of reads and refreshes over index patterns that may match no index yet.
IGNORE_MISSING = {"ignore_unavailable": "true", "allow_no_indices": "true"}


class IndexingError(RuntimeError):
    """Some documents of a bulk were refused; the batch is retried whole (same ids)."""


def _term_name(name: str) -> str:
    # '=' and '\\' escaped in the name, so "a=b" + "c" and "a" + "b=c" are different terms.
    return name.replace("\\", "\\\\").replace("=", "\\=")


def _term(name: str, value) -> str | None:
    """The "name=value" term of one scalar (None for objects and arrays)."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, int):
        text = str(value)
    elif isinstance(value, float):
        text = str(int(value)) if value.is_integer() else repr(value)
    elif isinstance(value, str):
        text = value
    else:
        return None
    return f"{_term_name(name)}={text}"


def field_terms(fields: dict) -> list[str]:
    """"name=value" for each top-level scalar: what a field.NAME=VALUE filter looks up."""
    return [term for name, value in fields.items() if (term := _term(name, value)) is not None]


def filter_terms(name: str, value: str) -> list[str]:
    """What field.NAME=VALUE matches, as the databases' JSON equality does: the string, and the
    number or boolean it spells (search.field_candidates, shared by every store)."""
    from bklog.logs.search import field_candidates

    return sorted({_term(name, candidate) for candidate in field_candidates(value)})


def to_query(node) -> dict:
    """The query tree as OpenSearch query DSL: a term is a phrase of its words."""
    if isinstance(node, querylang.Term):
        return {"match_phrase": {"message": node.text}}
    if isinstance(node, querylang.Not):
        return {"bool": {"must_not": [to_query(node.child)]}}
    children = [to_query(child) for child in node.children]
    if isinstance(node, querylang.And):
        return {"bool": {"filter": children}}
    return {"bool": {"should": children, "minimum_should_match": 1}}


class OpenSearchStore:
    name = "opensearch"

    def __init__(self, client: OpenSearch, prefix: str, shards: int, replicas: int, refresh: str,
                 refresh_interval: str):
        self.client = client
        self.prefix = prefix
        self.shards = shards
        self.replicas = replicas
        self.refresh = refresh
        self.refresh_interval = refresh_interval
        self._template_ok = False

    @classmethod
    def from_settings(cls) -> "OpenSearchStore":
        auth = None
        if settings.BKLOG_OPENSEARCH_USER:
            auth = (settings.BKLOG_OPENSEARCH_USER, settings.BKLOG_OPENSEARCH_PASSWORD)
        options = {}
        if settings.BKLOG_OPENSEARCH_CA_CERTS:
            options = {"ca_certs": settings.BKLOG_OPENSEARCH_CA_CERTS, "verify_certs": True}
        client = OpenSearch(hosts=settings.BKLOG_OPENSEARCH_URL, http_auth=auth, timeout=settings.BKLOG_OPENSEARCH_TIMEOUT,
                            max_retries=3, retry_on_timeout=True, **options)
        refresh = settings.BKLOG_OPENSEARCH_REFRESH
        if refresh == "auto":
            # A pipeline worker waiting for the refresh indexes about one batch a second: with rsyslog
            # on every host sending a batch a second, the queue grew without end in the cluster
            # scenario. A request indexing inline answers once its lines are searchable, as on SQL.
            refresh = "false" if settings.BKLOG_PIPELINE_ASYNC else "wait_for"
        return cls(client, settings.BKLOG_OPENSEARCH_INDEX_PREFIX, settings.BKLOG_OPENSEARCH_SHARDS,
                   settings.BKLOG_OPENSEARCH_REPLICAS, refresh, settings.BKLOG_OPENSEARCH_REFRESH_INTERVAL)

    # --- names and the template -----------------------------------------------------------

    def index_name(self, index_set: str, ts: datetime) -> str:
        return f"{self.prefix}-{index_set}.{ts.year:04d}.{ts.month:02d}.{ts.day:02d}"

    def write_index(self, index_set, ts: datetime, now: datetime) -> str:
        """The daily index a line goes to. A line already past its index set's retention goes to
        the oldest day still kept (retention removes it from there, by its timestamp, as the
        databases do), so replaying a year of old logs makes one index, not 365."""
        oldest = now - timedelta(days=index_set.retention_days + 1)
        return self.index_name(index_set.name, max(ts, oldest))

    def all_lines(self) -> str:
        """Every daily index of every index set."""
        return f"{self.prefix}-*"

    def pattern(self, index_set: str) -> str:
        # Index set names have no '.', so "app.*" never matches index set "app-2"'s indices.
        return f"{self.prefix}-{index_set}.*"

    def template(self) -> dict:
        return {
            "index_patterns": [self.all_lines()],
            "priority": 100,
            "template": {
                "settings": {
                    "number_of_shards": self.shards,
                    "number_of_replicas": self.replicas,
                    "refresh_interval": self.refresh_interval,
                    "analysis": {
                        "tokenizer": {"bklog_words": {"type": "pattern", "pattern": "[^\\p{L}\\p{N}]+"}},
                        "analyzer": {"bklog_words": {"type": "custom", "tokenizer": "bklog_words",
                                                     "filter": ["lowercase", "asciifolding"]}},
                    },
                },
                "mappings": {
                    "dynamic": "strict",
                    "properties": {
                        "line_id": {"type": "long"},
                        "ts_us": {"type": "long"},
                        "@timestamp": {"type": "date"},
                        "message": {"type": "text", "analyzer": "bklog_words"},
                        "fields": {"type": "object", "enabled": False},
                        "field_kv": {"type": "keyword", "ignore_above": 8000},
                        "batch": {"type": "keyword"},
                        "doc_id": {"type": "keyword"},
                    },
                },
            },
        }

    def ensure_template(self) -> None:
        """Put the index template (idempotent): before the first write of each process."""
        if not self._template_ok:
            self.client.indices.put_index_template(name=f"{self.prefix}-lines", body=self.template())
            # Daily indices made from an older template (strict mappings) learn the fields added since.
            self.client.indices.put_mapping(index=self.all_lines(), body={"properties": {"doc_id": {"type": "keyword"}}},
                                            params=IGNORE_MISSING)
            # and the refresh interval configured now (the template sets it on new days only).
            self.client.indices.put_settings(index=self.all_lines(), body={"index": {"refresh_interval": self.refresh_interval}},
                                             params=IGNORE_MISSING)
            self._template_ok = True

    # --- writing ---------------------------------------------------------------------------

    def reserve_ids(self, count: int) -> int:
        if count > BLOCK:
            raise ValueError(f"a batch of {count} lines is over {BLOCK}, the most the opensearch backend numbers at once")
        with transaction.atomic():
            return LineIdBlock.objects.create().id * BLOCK

    def insert(self, index_set, parsed, batch=None, first_id=None, doc_ids=None) -> None:
        if first_id is None:
            first_id = self.reserve_ids(len(parsed))
        self.ensure_template()
        keep = current_versions(index_set, batch, doc_ids) if doc_ids else [True] * len(parsed)
        actions, now, replaced = [], datetime.now(timezone.utc), {}
        for offset, (ts, message, fields) in enumerate(parsed):
            if not keep[offset]:
                continue
            line_id = first_id + offset
            source = {"line_id": line_id, "ts_us": to_us(ts), "@timestamp": ts.isoformat(),
                      "message": message, "fields": fields, "field_kv": field_terms(fields),
                      "batch": str(batch.id) if batch else ""}
            if doc_ids and doc_ids[offset] is not None:
                source["doc_id"] = doc_ids[offset]
                replaced[doc_ids[offset]] = line_id
            actions.append({"_op_type": "index", "_index": self.write_index(index_set, ts, now), "_id": str(line_id),
                            "_source": source})
        try:
            _, errors = helpers.bulk(self.client, actions, refresh=self.refresh, raise_on_error=False,
                                     raise_on_exception=True, max_retries=3, initial_backoff=1, chunk_size=2000)
        except Exception:
            self._undo(index_set.name, first_id, len(parsed))
            raise
        if errors:
            self._undo(index_set.name, first_id, len(parsed))
            first = next(iter(errors[0].values()))
            raise IndexingError(f"{len(errors)} of {len(actions)} lines refused by OpenSearch "
                                f"(first: {first.get('status')} {first.get('error')})")
        if replaced:  # each id's line before (in any daily index) goes once the new one is written
            for chunk in chunks(sorted(replaced), 1000):
                self._delete_matching(self.pattern(index_set.name), {"bool": {
                    "filter": [{"terms": {"doc_id": chunk}}],
                    "must_not": [{"ids": {"values": [str(replaced[doc_id]) for doc_id in chunk]}}]}})

    def _undo(self, index_set: str, first_id: int, count: int) -> None:
        """Remove what a failed bulk wrote (best effort): a refused batch is not half-searchable.
        If this fails too, the batch's retry overwrites the same ids."""
        try:
            self._delete_matching(self.pattern(index_set), {"range": {"line_id": {"gte": first_id, "lt": first_id + count}}})
        except Exception as exc:
            log.warning("could not remove the partial write of lines %s-%s: %s", first_id, first_id + count - 1, exc)

    # --- reading ---------------------------------------------------------------------------

    def _filters(self, request, tree) -> list[dict]:
        filters = []
        if request.start or request.end:
            bounds = {}
            if request.start:
                bounds["gte"] = to_us(request.start)
            if request.end:
                bounds["lt"] = to_us(request.end)
            filters.append({"range": {"ts_us": bounds}})
        for name, value in request.fields.items():
            filters.append({"terms": {"field_kv": filter_terms(name, value)}})
        if tree is not None:
            filters.append(to_query(tree))
        return filters

    def _read(self, call, empty):
        """A read, retried briefly while shards are unavailable (an index just created by a
        concurrent bulk, a node restarting): then StoreUnavailable, which the API answers 503."""
        for attempt in range(4):
            try:
                return call()
            except NotFoundError:
                return empty
            except (OpenSearchConnectionError, TransportError) as exc:
                status = getattr(exc, "status_code", None)
                if not isinstance(exc, OpenSearchConnectionError) and status not in (429, 503):
                    raise
                if attempt == 3:
                    raise StoreUnavailable(f"OpenSearch is unavailable ({status or exc.__class__.__name__}: {exc.error})") from None
                time.sleep(0.5 * (attempt + 1))

    def _search(self, index_set: str, body: dict) -> dict:
        return self._read(lambda: self.client.search(index=self.pattern(index_set), body=body,
                                                     params=IGNORE_MISSING),
                          {"hits": {"total": {"value": 0, "relation": "eq"}, "hits": []}})

    @staticmethod
    def _line(hit: dict) -> Line:
        source = hit["_source"]
        return Line(id=source["line_id"], timestamp=from_us(source["ts_us"]), message=source["message"],
                    fields=source.get("fields") or {})

    def count(self, index_set) -> int:
        return self._read(lambda: self.client.count(index=self.pattern(index_set.name),
                                                    params=IGNORE_MISSING),
                          {"count": 0})["count"]

    def search(self, index_set, request, size, cursor=None) -> dict:
        from bklog.logs import search as search_module

        tree = search_module.validate(request)
        exact_up_to = search_module.TOTAL_EXACT_UP_TO  # one limit for every store
        body = {"query": {"bool": {"filter": self._filters(request, tree)}},
                "sort": [{"ts_us": "desc"}, {"line_id": "desc"}],
                "size": size + 1, "track_total_hits": exact_up_to + 1}
        if cursor:
            ts, line_id = search_module.decode_cursor(cursor)
            body["search_after"] = [to_us(ts), line_id]
        result = self._search(index_set.name, body)
        total = result["hits"]["total"]["value"]  # of the whole query: search_after does not narrow it
        return search_module.page_result(index_set, total, [self._line(hit) for hit in result["hits"]["hits"]], size)

    def histogram(self, index_set, request, interval) -> dict[int, int]:
        """date_histogram on the microsecond time, buckets aligned on the epoch as the databases'."""
        from bklog.logs.search import validate

        body = {"query": {"bool": {"filter": self._filters(request, validate(request))}}, "size": 0,
                "track_total_hits": False,
                "aggs": {"per": {"histogram": {"field": "ts_us", "interval": interval * 1_000_000, "min_doc_count": 1}}}}
        buckets = self._search(index_set.name, body).get("aggregations", {}).get("per", {}).get("buckets", [])
        return {int(b["key"]) // 1_000_000: int(b["doc_count"]) for b in buckets}

    def iter_lines(self, index_set, request, after=None, limit=None) -> Iterator[Line]:
        """Oldest first, search_after pages: any size with flat memory; `after` resumes."""
        from bklog.logs.search import validate

        tree = validate(request)
        body = {"query": {"bool": {"filter": self._filters(request, tree)}},
                "sort": [{"ts_us": "asc"}, {"line_id": "asc"}], "size": PAGE, "track_total_hits": False}
        written = 0
        position = [to_us(after[0]), after[1]] if after is not None else None
        while True:
            page_body = dict(body, search_after=position) if position else body
            hits = self._search(index_set.name, page_body)["hits"]["hits"]
            if not hits:
                return
            for hit in hits:
                yield self._line(hit)
                written += 1
                if limit is not None and written >= limit:
                    return
            position = hits[-1]["sort"]

    # --- retention and deletion ------------------------------------------------------------

    def _delete_matching(self, index: str, query: dict) -> int:
        """Delete the documents a query matches: pages of ids, deleted in bulk (what
        _delete_by_query does inside; that API is in the reindex module, which the minimal
        distribution lacks)."""
        self.client.indices.refresh(index=index, params=IGNORE_MISSING)
        body = {"query": query, "_source": False, "sort": [{"line_id": "asc"}], "size": 5000, "track_total_hits": False}
        deleted, position = 0, None
        while True:
            page = self.client.search(index=index, body=dict(body, search_after=position) if position else body,
                                      params=IGNORE_MISSING)["hits"]["hits"]
            if not page:
                break
            actions = [{"_op_type": "delete", "_index": hit["_index"], "_id": hit["_id"]} for hit in page]
            done, _ = helpers.bulk(self.client, actions, raise_on_error=False, max_retries=3, initial_backoff=1)
            deleted += done
            position = page[-1]["sort"]
        self.client.indices.refresh(index=index, params=IGNORE_MISSING)
        return deleted

    def _indices(self, index_set: str) -> dict[str, int]:
        """Daily index name -> its documents."""
        try:
            rows = self.client.cat.indices(index=self.pattern(index_set), format="json", params={"h": "index,docs.count"})
        except NotFoundError:
            return {}
        return {row["index"]: int(row.get("docs.count") or 0) for row in rows}

    def delete_older_than(self, index_set, cutoff) -> int:
        """Whole days before the cut-off's day: their indices deleted; that day: by query."""
        self.client.indices.refresh(index=self.pattern(index_set.name), params=IGNORE_MISSING)
        day_of = re.compile(re.escape(f"{self.prefix}-{index_set.name}.") + r"(\d{4,})\.(\d\d)\.(\d\d)$")
        deleted = 0
        for name, docs in sorted(self._indices(index_set.name).items()):
            match = day_of.match(name)
            if match and tuple(int(g) for g in match.groups()) < (cutoff.year, cutoff.month, cutoff.day):
                self.client.indices.delete(index=name)
                deleted += docs
        cutoff_day = self.index_name(index_set.name, cutoff)
        if cutoff_day in self._indices(index_set.name):
            deleted += self._delete_matching(cutoff_day, {"range": {"ts_us": {"lt": to_us(cutoff)}}})
        return deleted

    def rotate_days(self, cutoff) -> dict[int, int]:
        """Daily indices are each index set's own: delete_older_than drops them."""
        return {}

    def drop_index_set(self, name: str) -> None:
        for index in self._indices(name):
            self.client.indices.delete(index=index, params={"ignore_unavailable": "true"})

    def after_bulk_load(self) -> None:
        """Searchable now, not at the next refresh interval."""
        self.client.indices.refresh(index=self.all_lines(), params=IGNORE_MISSING)

    def check(self) -> str:
        health = self.client.cluster.health(request_timeout=5)
        if health["status"] == "red":
            raise RuntimeError(f"OpenSearch cluster {health['cluster_name']} is red")
        self.ensure_template()
        return f"ok (opensearch {health['status']}, {health['number_of_nodes']} node(s))"
