"""Where log lines live: the line store, chosen by BKLOG_SEARCH_BACKEND.

    database    LogLine rows in the metadata database, searched with SQLite FTS5 or PostgreSQL's
                GIN index (bklog/logs/search.py): the embedded default.
    opensearch  one OpenSearch index per index set and day (bklog/logs/opensearch_store.py);
                index sets, tokens, batches and export jobs stay in the database.

Every caller (ingest, search, exports, retention, the commands) goes through `line_store()`, so
the API behaves the same on each; the service tests run against all three.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from functools import cache
from typing import Iterator, Protocol

from django.conf import settings
from django.db import transaction
from django.db.models import Q

from bklog.logs.models import DocumentId, IndexSet, IngestBatch, LogLine

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
RETENTION_CHUNK = 5000
IN_CHUNK = 500  # values per `IN (...)`: SQLite binds a bounded number of parameters


def chunks(items: list, size: int = IN_CHUNK):
    """Consecutive slices of at most `size` items (itertools.batched, from Python 3.12 only)."""
    for start in range(0, len(items), size):
        yield items[start:start + size]


def to_us(ts: datetime) -> int:
    """Microseconds since the epoch, exact (a float would round)."""
    return (ts - EPOCH) // timedelta(microseconds=1)


def from_us(us: int) -> datetime:
    return EPOCH + timedelta(microseconds=us)


class StoreUnavailable(RuntimeError):
    """The line store cannot answer now (OpenSearch down or recovering): the API says 503."""


@dataclass
class Line:
    """A stored line as the API shows it (a LogLine row has the same attributes)."""

    id: int
    timestamp: datetime
    message: str
    fields: dict

    def as_hit(self) -> dict:
        return {"id": self.id, "timestamp": self.timestamp.isoformat().replace("+00:00", "Z"),
                "message": self.message, "fields": self.fields}


class LineStore(Protocol):
    name: str

    def reserve_ids(self, count: int) -> int | None:
        """First of `count` line ids for a batch about to be accepted, stored with it so that a
        retried indexing writes the same ids (None: the store numbers lines itself)."""

    def insert(self, index_set: IndexSet, parsed: list[tuple], batch: IngestBatch | None = None,
               first_id: int | None = None, doc_ids: list | None = None) -> None:
        """Store (timestamp, message, fields) lines, all or none; idempotent for the same ids.
        doc_ids (the batch's): a line with an id is stored only while it is that id's current
        version (current_versions), and replaces the id's line stored before."""

    def count(self, index_set: IndexSet) -> int: ...

    def search(self, index_set: IndexSet, request, size: int, cursor: str | None = None) -> dict: ...

    def histogram(self, index_set: IndexSet, request, interval: int) -> dict[int, int]:
        """Matching lines per bucket: {bucket start in epoch seconds (a multiple of interval): count};
        the request has start and end."""

    def iter_lines(self, index_set: IndexSet, request, after=None, limit: int | None = None) -> Iterator: ...

    def delete_older_than(self, index_set: IndexSet, cutoff: datetime) -> int: ...

    def drop_index_set(self, name: str) -> None: ...

    def check(self) -> str:
        """For /readyz: raises naming what is wrong."""


def current_versions(index_set: IndexSet, batch: IngestBatch | None, doc_ids: list | None) -> list[bool]:
    """Per line of a batch: whether to store it. A line without an id, yes; one with an id only
    while the id's DocumentId still names this batch and place (a later `index` of the id, in this
    batch or one accepted after it, supersedes it, whichever is indexed first)."""
    wanted = sorted({doc_id for doc_id in doc_ids if doc_id is not None})
    current = {}
    for chunk in chunks(wanted):
        current.update({doc_id: (str(batch_id), seq) for doc_id, batch_id, seq in DocumentId.objects.filter(
            index_set=index_set, doc_id__in=chunk).values_list("doc_id", "batch_id", "seq")})
    batch_id = str(batch.id) if batch else None
    return [doc_id is None or current.get(doc_id) == (batch_id, seq) for seq, doc_id in enumerate(doc_ids)]


class DatabaseStore:
    """LogLine rows; the full-text index is the database's own (migration 0002)."""

    name = "database"

    def reserve_ids(self, count: int) -> None:
        return None

    def insert(self, index_set, parsed, batch=None, first_id=None, doc_ids=None) -> None:
        if not doc_ids:
            LogLine.objects.bulk_create(
                [LogLine(index_set=index_set, timestamp=ts, message=msg, fields=fields, batch=batch) for ts, msg, fields in parsed],
                batch_size=500,
            )
            return
        keep = current_versions(index_set, batch, doc_ids)
        rows = [LogLine(index_set=index_set, timestamp=ts, message=msg, fields=fields, batch=batch, doc_id=doc_id)
                for (ts, msg, fields), doc_id, kept in zip(parsed, doc_ids, keep) if kept]
        replaced = sorted({row.doc_id for row in rows if row.doc_id is not None})
        with transaction.atomic():  # the id's line before is gone when the new one is there
            for chunk in chunks(replaced):
                LogLine.objects.filter(index_set=index_set, doc_id__in=chunk).delete()
            LogLine.objects.bulk_create(rows, batch_size=500)

    def count(self, index_set) -> int:
        return LogLine.objects.filter(index_set=index_set).count()

    def search(self, index_set, request, size, cursor=None) -> dict:
        from bklog.logs import search

        return search.search(index_set, request, size, cursor)

    def histogram(self, index_set, request, interval) -> dict[int, int]:
        from bklog.logs import search

        return search.histogram(index_set, request, interval)

    def iter_lines(self, index_set, request, after=None, limit=None) -> Iterator[LogLine]:
        """Oldest first, keyset-paginated so it streams any size with flat memory.
        `after` is (timestamp, id) of the last line already written, for resuming."""
        from bklog.logs.search import filtered

        qs = filtered(index_set, request, plan="probe").order_by("timestamp", "id")  # linear, streams any size
        written = 0
        while True:
            page_qs = qs
            if after is not None:
                ts, line_id = after
                page_qs = qs.filter(Q(timestamp__gt=ts) | Q(timestamp=ts, id__gt=line_id))
            page = list(page_qs[:1000])
            if not page:
                return
            for line in page:
                yield line
                written += 1
                if limit is not None and written >= limit:
                    return
            after = (page[-1].timestamp, page[-1].id)

    def delete_older_than(self, index_set, cutoff) -> int:
        """In chunks, to keep transactions short."""
        total = 0
        while True:
            ids = list(LogLine.objects.filter(index_set=index_set, timestamp__lt=cutoff).values_list("id", flat=True)[:RETENTION_CHUNK])
            if not ids:
                return total
            with transaction.atomic():
                total += LogLine.objects.filter(id__in=ids).delete()[0]

    def drop_index_set(self, name: str) -> None:
        pass  # its LogLine rows go with it (ON DELETE CASCADE)

    def check(self) -> str:
        from bklog.observability import check_database_index

        return check_database_index()


@cache
def _store(backend: str) -> LineStore:
    if backend == "opensearch":
        from bklog.logs.opensearch_store import OpenSearchStore

        return OpenSearchStore.from_settings()
    return DatabaseStore()


def line_store() -> LineStore:
    return _store(settings.BKLOG_SEARCH_BACKEND)
