"""What every line store shares: the Line the API shows, the LineStore protocol the backends
implement (bklog/logs/database_store.py, bklog/logs/opensearch_store.py), and the helpers both use."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Iterator, Protocol

from bklog.logs.models import DocumentId, IndexSet, IngestBatch

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
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

    def rotate_days(self, cutoff: datetime | None) -> dict[int, int]:
        """Whole days of lines older than `cutoff` (every index set's retention has passed them)
        dropped at once where the store keeps days apart, and the next days made ready; the lines
        dropped per index set id. Retention runs it before delete_older_than."""

    def drop_index_set(self, name: str) -> None: ...

    def check(self) -> str:
        """For /readyz: raises naming what is wrong."""

    def after_bulk_load(self) -> None:
        """After a command loaded many lines at once (import_logs, a restore): leave the store ready
        to search, so that no plan depends on statistics a background job refreshes later."""


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
